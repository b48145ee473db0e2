"""On sdw1, after gp_stale_locks: mirror 1 runs again (its postmaster.pid names its
own postmaster) and streams, slon runs and holds its node lock, and the process
that had reused the PID was left alone."""
from gphosts import node, postmaster_pid, read_text, sql, state

testinfra_hosts = ["gp-sdw1"]
SLON_LOCK = ("SELECT a.application_name FROM _gpops.sl_nodelock l JOIN pg_stat_activity a "
             "ON a.pid = l.nl_backendpid WHERE l.nl_nodeid = 1 AND l.nl_conncnt = 0")


def test_the_stale_locks_had_blocked_the_start(host):
    assert "lock file \"postmaster.pid\" already exists" in read_text(host, "stale/mirror1-start.log")


def test_mirror_runs_and_streams_again(host):
    mirror1 = node(host, 1, "m")
    pid = postmaster_pid(host, mirror1["datadir"])
    assert pid and str(pid) != read_text(host, "stale/sleeper.pid").strip()
    assert any("walreceiver" in p.args for p in host.process.filter(user="gpadmin"))


def test_slon_runs_with_its_node_lock(host):
    assert host.process.filter(user="gpadmin", comm="slon")
    slony_port = state(host)["base_port"] + 10  # gp_slony_port of molecule.yml
    assert [row[0][:4] for row in sql(host, SLON_LOCK, port=slony_port, dbname="db1")] == ["slon"]


def test_pid_reuser_left_alone(host):
    sleeper = read_text(host, "stale/sleeper.pid").strip()
    assert "sleep" in host.file("/proc/%s/cmdline" % sleeper).content_string
