#!/usr/bin/env python3
"""A small daemon-like program for the lock-file tests.

usage: flock_reenter.py PATH hold|reenter

Both modes take an exclusive flock(2) on PATH through ``write_status()`` and print
"locked" once they hold it; a second ``hold`` on the same file therefore waits.
``reenter`` also installs a SIGUSR1 handler that calls ``write_status()`` again, as
a status-on-signal feature would: a signal that arrives while the lock is held
makes the handler open the file anew (a second open file description) and wait for
the lock its own process holds - a self-deadlock that never ends.
"""
import fcntl
import os
import signal
import sys


def write_status(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"%d\n" % os.getpid())
    return fd


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "reenter":
        signal.signal(signal.SIGUSR1, lambda signum, frame: write_status(path))
    write_status(path)
    print("locked", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
