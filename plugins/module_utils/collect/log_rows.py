# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SQL of ``gp_log_info``: the log records of a time window from
``gp_toolkit.gp_log_system`` (every primary's and the coordinator's CSV logs, read by
external web tables that ``cat $GP_SEG_DATADIR/log/*.csv``; superuser only).

- ``sql.LOG_WINDOW_SQL``: the 30 CSV columns in file order (the time as UTC text, as the
  CSV files write it), for ``since <= logtime < until``, only records worth classifying
  (PANIC or FATAL, or a message matching ``pattern``, a POSIX regular expression), at
  most ``max_rows``. Every value is bound.
- ``log_window_rows(conn, since, until, pattern, max_rows) -> list of tuples``.
- ``sql.CONFIG_HISTORY_SQL`` / ``config_history_rows(conn, since, until, max_rows)``: FTS's
  changes of ``gp_segment_configuration`` in the window, from
  ``pg_catalog.gp_configuration_history`` (``src/backend/fts/fts.c`` writes its "FTS: update
  role, status, and mode ..." text there, not to the log).

The statements themselves live in ``sql.py`` with the rest of the product's SQL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql


def log_window_rows(conn, since, until, pattern, max_rows):
    """The matching records of ``gp_toolkit.gp_log_system`` in [since, until) (epoch
    seconds), oldest first, at most ``max_rows``, as tuples in CSV column order."""
    with conn.cursor() as cur:
        cur.execute(sql.LOG_WINDOW_SQL, {"since": float(since), "until": float(until),
                                         "pattern": pattern, "max_rows": int(max_rows)})
        return cur.fetchall()


def config_history_rows(conn, since, until, max_rows):
    """``gp_configuration_history`` rows of [since, until): (time as UTC text, dbid,
    description), oldest first (``logevents.history_record`` makes them log records)."""
    with conn.cursor() as cur:
        cur.execute(sql.CONFIG_HISTORY_SQL, {"since": float(since), "until": float(until), "max_rows": int(max_rows)})
        return cur.fetchall()
