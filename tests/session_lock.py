"""One test session at a time per cluster: a flock on ``<base_dir>.lock``, shared by the
sandbox tests (tests/integration) and the real Greenplum 7 tests (tests/gp7), whose tests
stop nodes, inject faults and change FTS settings under each other otherwise."""
import contextlib
import fcntl
import time

import pytest


@contextlib.contextmanager
def exclusive(base_dir, wait, what, override):
    """Hold the lock of ``base_dir`` while the block runs; wait up to ``wait`` seconds for
    another session, then fail the test run naming ``what`` and the ``override``
    variables that choose another cluster."""
    path = base_dir.rstrip("/") + ".lock"
    with open(path, "a+") as f:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("%s %s is used by another test session (lock %s); set %s for your own"
                                % (what, base_dir, path, override), pytrace=False)
                if not told:
                    print("\nwaiting for another test session on %s" % base_dir)
                    told = True
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
