"""The commits that waited in SyncRep on primary 0 (the host of its mirror, sdw2,
stopped; FTS paused) returned, and the catalog is left to FTS."""
from gphosts import BASE_DIR, COORDINATOR_HOST, node, read_text, sql

testinfra_hosts = [COORDINATOR_HOST]
COMMITS = (1000, 1002)


def test_waiting_commits_returned(host):
    for key in COMMITS:
        assert host.file("%s/commit%d.rc" % (BASE_DIR, key)).exists, "commit %d still waits" % key
        assert read_text(host, "commit%d.rc" % key).strip() == "0", read_text(host, "commit%d.out" % key)
    primary0 = node(host, 0)
    assert sql(host, "SELECT id FROM gpsb_commits WHERE val = -1 ORDER BY id",
               port=primary0["port"], utility=True) == [[str(k)] for k in COMMITS]
    assert sql(host, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
               port=primary0["port"], utility=True) == [["0"]]


def test_catalog_left_to_fts(host):
    # FTS is paused: it has not marked mirror 0 (nor primary 1) down, and the
    # collection never writes the catalog.
    assert sql(host, "SELECT dbid, role, mode, status FROM gp_segment_configuration "
                     "WHERE content >= 0 ORDER BY dbid") == [
        ["2", "p", "s", "u"], ["3", "p", "s", "u"], ["4", "m", "s", "u"], ["5", "m", "s", "u"]]
    assert sql(host, "SELECT count(*) FROM gp_configuration_history") == [["0"]]
