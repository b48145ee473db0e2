#!/usr/bin/env python3
"""The filelock 3.x self-deadlock, as in the incident: a daemon writes its status under a
``filelock.FileLock``; SIGUSR1 asks for a status write, and the handler takes the lock again
through a new ``FileLock`` while the interrupted code still holds it.

usage: PYTHONPATH=.venv-filelock3 filelock_signal.py PATH hold|reenter

Prints "locked <version>" once it holds the lock. filelock 3.x's acquire opens the file again and
polls ``flock(fd, LOCK_EX|LOCK_NB)`` -> EAGAIN -> ``time.sleep(poll_interval)`` for ever: no kernel
wait, nothing in /proc/locks but the lock it holds. A second ``hold`` on the same file polls too,
behind the first (a normal waiter). filelock 4.x raises instead of hanging.
"""
import signal
import sys

import filelock

HELD = []


def write_status(path):
    lock = filelock.FileLock(path)
    lock.acquire()  # polls: open, flock LOCK_NB, close, sleep 0.05 s
    HELD.append(lock)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "reenter":
        signal.signal(signal.SIGUSR1, lambda signum, frame: write_status(path))
    write_status(path)
    print("locked", filelock.__version__, flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
