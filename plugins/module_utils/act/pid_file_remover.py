# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Removing a stale pid or lock file: the runner of the ``remove_file`` steps that
``plan/pid_files.py`` plans (docs/safety.md#pid-and-lock-files).

- ``FileRemover(rejudge)``: ``runners()`` gives ``{"remove_file": run}`` for
  ``act/executor.execute``. ``rejudge(path) -> verdict`` observes and judges the file
  again (``pid_files.observe`` + ``judge``).

A step's guard is the file it was planned for: ``st_dev``, ``st_ino`` and the ``sha256``
of the content judged. ``run(step)``:

1. opens the path (never following a symbolic link), ``fstat``\\ s and reads it: another
   inode or content is ``GUARD_FILE_CHANGED``, no file is ``GUARD_FILE_CHANGED`` too
   (someone else removed it); nothing was touched;
2. judges the file again: not ``stale`` any more (the PID is now the daemon's) is
   ``GUARD_NO_LONGER_STALE``;
3. renames the path to a private name in the same directory (``rename(2)`` is atomic:
   from here no one can open or rewrite the file by its path), then checks the inode and
   content of what it renamed; the same: ``unlink`` of the private name, ``done``; else
   (a daemon replaced or rewrote it between 1 and 3) puts it back with ``link(2)``, which
   never overwrites a file made at the path meanwhile, and the step is
   ``GUARD_FILE_CHANGED``. If a new file is at the path already, the renamed one is left
   under its private name and the step ``failed`` says where it is.

The window that remains: while the file is under its private name (between 3's rename
and its ``unlink`` or ``link``, microseconds), a daemon looking for it by its path finds
none; a daemon that rewrote it in that moment has its new file put back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import secrets

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

STALE = "stale"
# A pid file is a few lines (plan/pid_files.py MAX_PIDFILE_BYTES); read one byte more.
READ_LIMIT = 4097


def identity(path):
    """``(st_dev, st_ino, sha256)`` of the file at ``path`` read through one open file
    (``O_NOFOLLOW``). Raises ``OSError`` (``FileNotFoundError`` when there is none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        data = os.read(fd, READ_LIMIT)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino, hashlib.sha256(data).hexdigest()


def _judged(guard):
    return guard.facts["st_dev"], guard.facts["st_ino"], guard.facts["sha256"]


class FileRemover:
    """Runs ``remove_file`` steps. ``rejudge(path) -> verdict`` (module docstring)."""

    def __init__(self, rejudge):
        self.rejudge = rejudge

    def runners(self):
        return {"remove_file": self.run}

    def _move_aside(self, path, private):
        """``rename(2)``; a method so tests can act between the rename and the check."""
        os.rename(path, private)

    def run(self, step):
        path = step.guard.facts["path"]
        try:
            before = identity(path)
        except FileNotFoundError:
            return Outcome.skipped(step, Reason.GUARD_FILE_CHANGED, path=path + " (gone)")
        if before != _judged(step.guard):
            return Outcome.skipped(step, Reason.GUARD_FILE_CHANGED, path=path)
        verdict = self.rejudge(path)
        if verdict != STALE:
            return Outcome.skipped(step, Reason.GUARD_NO_LONGER_STALE, path=path, verdict=verdict)
        directory, name = os.path.split(path)
        private = os.path.join(directory, ".%s.gpops-removing-%d-%s" % (name, os.getpid(), secrets.token_hex(4)))
        self._move_aside(path, private)
        try:
            moved = identity(private)
        except OSError:
            moved = None
        if moved == _judged(step.guard):
            os.unlink(private)
            return Outcome.done(step, "removed %s" % path,
                                statement="rename(%s, %s); unlink(%s)" % (path, private, private))
        try:
            os.link(private, path)
        except FileExistsError:
            return Outcome.failed(step, "%s changed while it was being removed and a new file is at its path: "
                                  "the changed one is kept as %s" % (path, private))
        os.unlink(private)
        return Outcome.skipped(step, Reason.GUARD_FILE_CHANGED, path=path,
                               statement="rename(%s, %s); link back" % (path, private))
