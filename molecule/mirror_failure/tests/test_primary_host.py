"""On sdw1, the host of primary 0: its sync replication is off, set as FTS sets it."""
from gphosts import node, postmaster_pid, sql

testinfra_hosts = ["gp-sdw1"]


def test_primary_sync_replication_off(host):
    primary0 = node(host, 0)
    assert postmaster_pid(host, primary0["datadir"])
    # GP7's way, as FTS writes it: ALTER SYSTEM, in the primary's own
    # postgresql.auto.conf on its host; never RESET (the setting stays, empty).
    auto = host.file(primary0["datadir"] + "/postgresql.auto.conf").content_string
    assert "synchronous_standby_names = ''" in auto
    assert sql(host, "SELECT quote_literal(current_setting('synchronous_standby_names'))",
               port=primary0["port"], utility=True) == [["''"]]
