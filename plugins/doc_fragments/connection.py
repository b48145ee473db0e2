# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection options of every gpops.greenplum module; the matching
argument spec is ``module_utils.connection.connection_argument_spec()``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host of the coordinator (name, address, or a Unix socket directory).
      - Segments are reached at the C(address) and C(port) that C(gp_segment_configuration) gives them.
      - Defaults to the C(PGHOST) environment variable of the managed node, then to libpq's default.
    type: str
  login_port:
    description:
      - Port of the coordinator.
      - Defaults to C(PGPORT), then to libpq's default (5432).
    type: int
  login_user:
    description:
      - Role to connect as, on the coordinator and, in utility mode, on the segments.
      - Defaults to C(PGUSER), then to libpq's default (the OS user name).
      - Reading other sessions' queries and cancelling or terminating them needs a superuser
        or a member of C(pg_signal_backend) and C(pg_read_all_stats).
      - A failed login, a missing database, a setting the server refuses or a missing
        privilege fails the task with a message naming the cause; it is never reported as a
        finding about the cluster.
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - When not given, libpq reads C(PGPASSWORD), then C(~/.pgpass).
    type: str
  login_db:
    description:
      - Database to connect to, on every node.
      - Defaults to C(PGDATABASE), then to libpq's default (the user name).
    type: str
  connect_timeout:
    description:
      - Seconds to wait for a connection to any node, coordinator or segment, from 1 to 3600.
    type: int
    default: 5
  statement_timeout:
    description:
      - Seconds any statement may run on the server (C(statement_timeout) of every session
        the collection opens), and the time budget of one cluster-wide snapshot.
      - A node that does not answer within it (for example a stopped segment) is abandoned
        and named in the result; it never makes a task hang.
      - Every session also sets a short C(lock_timeout), so that collection never queues
        behind a lock itself.
      - A finite number of seconds, more than 0 and at most 86400 (C(inf) and C(nan) are refused).
    type: float
    default: 30
  max_workers:
    description:
      - How many nodes the per-node (utility-mode) reads talk to at once, from 1 to 1024; each
        is one connection. The others wait their turn within the same O(statement_timeout).
      - A node that does not answer in time costs its timeout; its statement is cancelled and
        its connection closed, so none is left behind.
    type: int
    default: 16
  ssl_mode:
    description:
      - libpq C(sslmode) for every connection.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
requirements:
  - psycopg >= 3.1 on the managed node
notes:
  - Every catalog object is named with its schema (C(pg_catalog.pg_locks),
    C(pg_catalog.pg_cancel_backend(...)), C(gp_toolkit.*)), so the login role's C(search_path)
    plays no part in what is read or signalled.
  - Segments are reached in utility mode (C(-c gp_role=utility) on Greenplum 7 and Cloudberry,
    C(-c gp_session_role=utility) on Greenplum 6).
'''
