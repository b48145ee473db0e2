"""The facts the triage reads beside the snapshot: FTS presence from a procfs (a fake
one here, laid out as proc(5) says), and the walsender state per content."""
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_diagnosis


def _proc(tmp_path, processes):
    """A fake procfs: ``processes`` maps pid -> command line (argv joined by spaces)."""
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_text("cpu  1 2 3\nbtime 1700000000\n")
    for pid, cmdline in processes.items():
        d = root / str(pid)
        d.mkdir()
        comm = cmdline.split()[0]
        (d / "stat").write_text("%d (%s) S 1 %s\n" % (pid, comm, " ".join(["0"] * 19)))
        (d / "status").write_text("Name:\t%s\nUid:\t1000\t1000\t1000\t1000\n" % comm)
        (d / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + b"\0")
    return str(root)


def _datadir(tmp_path, postmaster_pid, name="coordinator"):
    datadir = tmp_path / name
    datadir.mkdir()
    if postmaster_pid is not None:
        (datadir / "postmaster.pid").write_text("%d\n/data/coordinator\n" % postmaster_pid)
    return str(datadir)


def test_fts_title_with_the_coordinator_port_means_running(tmp_path):
    proc = _proc(tmp_path, {100: "postgres -D /data/coordinator",
                            101: "postgres:  5432, ftsprobe process"})
    assert hang_diagnosis.fts_process_running(5432, _datadir(tmp_path, 100), proc) is True


def test_fts_of_another_cluster_does_not_count(tmp_path):
    proc = _proc(tmp_path, {100: "postgres -D /data/coordinator",
                            101: "postgres:  6432, ftsprobe process"})
    assert hang_diagnosis.fts_process_running(5432, _datadir(tmp_path, 100), proc) is False


def test_no_fts_on_the_coordinator_host_means_not_running(tmp_path):
    proc = _proc(tmp_path, {100: "postgres -D /data/coordinator", 102: "postgres:  5432, checkpointer"})
    assert hang_diagnosis.fts_process_running(5432, _datadir(tmp_path, 100), proc) is False


def test_unknown_when_the_coordinator_is_not_on_this_host(tmp_path):
    proc = _proc(tmp_path, {200: "sshd: gpadmin"})
    assert hang_diagnosis.fts_process_running(5432, _datadir(tmp_path, None), proc) is None
    stale = _datadir(tmp_path, 4242, name="stale")  # its postmaster is gone
    assert hang_diagnosis.fts_process_running(5432, stale, proc) is None


def test_unknown_when_procfs_is_unreadable(tmp_path):
    assert hang_diagnosis.fts_process_running(5432, str(tmp_path), str(tmp_path / "missing")) is None


def test_walsender_state_per_content_prefers_streaming():
    rows = [{"gp_segment_id": -1, "application_name": "gp_walreceiver", "state": "streaming"},
            {"gp_segment_id": 0, "application_name": None, "state": None},
            {"gp_segment_id": 1, "application_name": "gp_walreceiver", "state": "catchup"},
            {"gp_segment_id": 1, "application_name": "gp_walreceiver", "state": "streaming"},
            {"gp_segment_id": 2, "application_name": "pg_basebackup", "state": "backup"}]
    assert hang_diagnosis._replication_states(rows) == {-1: "streaming", 0: None, 1: "streaming", 2: None}
