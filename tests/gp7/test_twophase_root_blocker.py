"""A root blocker in the middle of a two-phase commit on real Greenplum 7: the
coordinator is suspended between PREPARE and COMMIT PREPARED (fault
``dtm_broadcast_commit_prepared`` of src/backend/cdb/cdbtm.c), a second session waits
for its locks on the coordinator. No remedy offers to terminate its coordinator backend (that forces a
coordinator PANIC); the blocking chain says to wait / let dtx recovery finish."""
import pytest

from gpcluster import wait_for
from playbook import run_task

pytestmark = pytest.mark.gp7


def test_a_root_blocker_in_two_phase_commit_is_never_offered_to_terminate(gp):
    gp.query("DROP TABLE IF EXISTS tpc; CREATE TABLE tpc (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO tpc SELECT i, i FROM generate_series(1, 30) i")
    committer, waiter = gp.session("tpc_committer"), gp.session("tpc_waiter")
    gp.inject_fault("dtm_broadcast_commit_prepared", "suspend", -1)
    try:
        committer.sql("BEGIN")
        committer.sql("UPDATE tpc SET val = val + 1")
        gxid = committer.gxid()
        committer.send("COMMIT")
        gp.wait_fault_triggered("dtm_broadcast_commit_prepared", -1)
        assert wait_for(lambda: gp.query("SELECT count(*) FROM pg_catalog.pg_prepared_xacts", content=0)[0][0] == 1)
        # LOCK TABLE waits on the coordinator, for the committer's own backend (its coordinator
        # locks are held until COMMIT PREPARED is delivered): the root is a session, not the
        # segments' prepared transactions.
        waiter.send("BEGIN; LOCK TABLE tpc IN ACCESS EXCLUSIVE MODE; COMMIT")
        assert waiter.waiting(1.0)

        result = run_task("gp_hang_info", {}, env=gp.env())
        assert not result.get("failed"), result.get("msg")
        findings = result["findings"]
        remedies = " ".join(str((f.get("remedy") or {}).get("text")) for f in findings)
        assert "pg_terminate_backend(%s)" % committer.pid not in remedies, findings
        chains = [f for f in findings if f["class"] == "blocking_chain"
                  and f["evidence"]["root"].get("coordinator_pid") == committer.pid]
        assert chains, [(f["class"], f["summary"]) for f in findings]
        text = chains[0]["remedy"]["text"]
        assert "two-phase commit" in text and "Do not cancel or terminate" in text and str(gxid) in text
    finally:
        gp.inject_fault("dtm_broadcast_commit_prepared", "resume", -1)
        gp.inject_fault("dtm_broadcast_commit_prepared", "reset", -1)
    assert committer.result(30)[0] == "ok"
    assert waiter.result(30)[0] == "ok"
