#!/usr/bin/env python3
"""A parent that holds a flock(2) and forks a child that takes the same lock through its own
open of the file, for the lock-file tests.

usage: flock_fork.py PATH

The parent takes LOCK_EX on PATH and forks; the child keeps the inherited descriptor (so it
shares the parent's open file description, and with it the lock), opens PATH itself and blocks
in flock(LOCK_EX): it waits for its parent, not for itself. Prints "child <pid>" once forked and
"child locked" when the child gets the lock. SIGUSR1 to the parent: it releases the lock (LOCK_UN)
and the child gets it. SIGUSR2 to the parent: it exits without releasing; the lock then lives on
through the child's inherited descriptor alone, and the child really waits for itself.
"""
import fcntl
import os
import signal
import sys
import time


def main():
    path = sys.argv[1]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = os.fork()
    if child == 0:
        own = os.open(path, os.O_RDWR)
        fcntl.flock(own, fcntl.LOCK_EX)
        print("child locked", flush=True)
        while True:
            time.sleep(60)
    print("child %d" % child, flush=True)
    signal.signal(signal.SIGUSR1, lambda signum, frame: fcntl.flock(fd, fcntl.LOCK_UN))
    signal.signal(signal.SIGUSR2, lambda signum, frame: os._exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
