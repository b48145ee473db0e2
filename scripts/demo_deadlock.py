"""Make a real global deadlock on the real Greenplum 7 demo cluster and report how it
ended (scripts/demo.sh). Two sessions update two rows on two different segments in
opposite order (Greenplum's isolation2 gdd/dist-deadlock-01): each waits for the other
on another segment, so no single node sees a cycle.

    python scripts/demo_deadlock.py READY_FILE

Writes READY_FILE with the two sessions' coordinator pids once both wait, then waits
(at most 300 s) for both statements to end and prints each session's outcome. Exits 0
when exactly one session was cancelled and the other committed, 1 otherwise.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "gp7"))
from gpcluster import GP7Cluster  # noqa: E402  (needs the path above)


def main(ready_file):
    gp = GP7Cluster.from_env()
    gp.ensure_running()
    gp.query("DROP TABLE IF EXISTS demo_accounts; "
             "CREATE TABLE demo_accounts (id int, balance int) DISTRIBUTED BY (id); "
             "INSERT INTO demo_accounts SELECT i, 100 FROM generate_series(1, 100) i")
    by_segment = {}
    for seg, ident in gp.query("SELECT gp_segment_id, id FROM demo_accounts ORDER BY id"):
        by_segment.setdefault(seg, ident)
    row0, row1 = by_segment[0], by_segment[1]
    a, b = gp.session("demo_A"), gp.session("demo_B")
    a.sql("BEGIN")
    b.sql("BEGIN")
    a.sql("UPDATE demo_accounts SET balance = balance - 10 WHERE id = %s", (row0,))
    b.sql("UPDATE demo_accounts SET balance = balance - 10 WHERE id = %s", (row1,))
    b.send("UPDATE demo_accounts SET balance = balance + 10 WHERE id = %s", (row0,))
    a.send("UPDATE demo_accounts SET balance = balance + 10 WHERE id = %s", (row1,))
    if not (a.waiting(1) and b.waiting(0.1)):
        print("demo: the two sessions did not deadlock")
        return 1
    with open(ready_file, "w") as f:
        f.write("demo_A pid %d, demo_B pid %d\n" % (a.pid, b.pid))
    deadline = time.monotonic() + 300
    outcomes = {}
    while len(outcomes) < 2 and time.monotonic() < deadline:
        for s in (a, b):
            if s.label not in outcomes:
                kind, value = s.result(0.5)
                if kind != "waiting":
                    outcomes[s.label] = (kind, value)
                    if kind == "ok":
                        s.sql("COMMIT")
    for label in ("demo_A", "demo_B"):
        kind, value = outcomes.get(label, ("waiting", None))
        text = {"ok": "its UPDATE completed and it committed",
                "error": "its statement failed: %s" % str(value).strip().splitlines()[0] if value else "",
                "waiting": "still waiting after 300 s"}[kind]
        print("demo: session %s: %s" % (label, text))
    a.close()
    b.close()
    kinds = sorted(k for k, _ in outcomes.values())
    return 0 if kinds == ["error", "ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
