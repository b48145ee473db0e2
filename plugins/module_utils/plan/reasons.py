# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reason codes: why a step is planned, why it is refused, why its guard failed.

Every decision of the collection that could lead to (or withhold) a destructive step
carries a ``Reason``; the English sentence is made from ``MESSAGES`` only for people.
Reports, AWX and tests match on ``reason.value`` (a stable snake_case string) and never
on the sentence. Adding a code: add the member and its message template (the unit test
``tests/unit/test_reasons.py`` checks that every member has one).

``message(reason, **facts) -> str``: the sentence, with the facts filled in (a missing
fact shows as ``?``, so a message never raises).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import enum
import string


class Reason(enum.Enum):
    # Why a step is planned.
    DEADLOCK_VICTIM = "deadlock_victim"
    STILL_DEADLOCKED_AFTER_CANCEL = "still_deadlocked_after_cancel"
    ORPHANED_PREPARED_XACT = "orphaned_prepared_xact"
    COMMITTED_ELSEWHERE = "committed_elsewhere"
    STALE_NODELOCK_ROW = "stale_nodelock_row"
    STALE_PID_FILE = "stale_pid_file"
    MIRROR_LOST_COMMITS_WAIT = "mirror_lost_commits_wait"
    MIRROR_STREAMING_AGAIN = "mirror_streaming_again"
    FTS_CAN_ACT = "fts_can_act"
    STANDBY_WALSENDER_STALLED = "standby_walsender_stalled"

    # Why nothing is planned for something that was looked at (a refusal).
    PROTECTED_NEVER_CHOOSE = "protected_never_choose"
    PROTECTED_SYNCREP_WAIT = "protected_syncrep_wait"
    PROTECTED_TWO_PHASE_COMMIT = "protected_two_phase_commit"
    PROTECTED_NOT_CLIENT_BACKEND = "protected_not_client_backend"
    PROTECTED_ALL_MEMBERS = "protected_all_members"
    LIVENESS_UNKNOWN = "liveness_unknown"
    PREPARED_XACTS_UNKNOWN = "prepared_xacts_unknown"
    COMMIT_LOG_UNKNOWN = "commit_log_unknown"
    SNAPSHOT_INCOMPLETE = "snapshot_incomplete"
    IDENTITY_UNKNOWN = "identity_unknown"
    PRIVILEGE_MISSING = "privilege_missing"
    NOT_ALLOWED = "not_allowed"
    MIRROR_STATE_UNKNOWN = "mirror_state_unknown"
    LOCAL_DEADLOCK_LEFT_TO_NODE = "local_deadlock_left_to_node"
    TOO_YOUNG = "too_young"
    NOT_STALE = "not_stale"

    # Why a planned step was not carried out (its guard failed at the moment of acting).
    GUARD_BACKEND_GONE = "guard_backend_gone"
    GUARD_BACKEND_REPLACED = "guard_backend_replaced"
    GUARD_TRANSACTION_ENDED = "guard_transaction_ended"
    GUARD_CYCLE_GONE = "guard_cycle_gone"
    GUARD_PREPARED_XACT_GONE = "guard_prepared_xact_gone"
    GUARD_ROW_CHANGED = "guard_row_changed"
    GUARD_FILE_CHANGED = "guard_file_changed"
    GUARD_SETTING_CHANGED = "guard_setting_changed"
    GUARD_MIRROR_CHANGED = "guard_mirror_changed"
    GUARD_CYCLE_UNKNOWN = "guard_cycle_unknown"
    PROTECTED_PREPARED_XACT = "protected_prepared_xact"
    PROTECTED_NO_COORDINATOR_BACKEND = "protected_no_coordinator_backend"

    # Prepared transactions, Slony-I node locks, pid files (docs/safety.md).
    COORDINATOR_HAS_GXID = "coordinator_has_gxid"
    FOREIGN_GID = "foreign_gid"
    PREPARED_ON_COORDINATOR = "prepared_on_coordinator"
    COMPANION_NOT_STALE = "companion_not_stale"
    GUARD_PREPARED_XACT_REPLACED = "guard_prepared_xact_replaced"
    GUARD_COORDINATOR_HAS_GXID = "guard_coordinator_has_gxid"
    GUARD_COMMIT_STATE_CHANGED = "guard_commit_state_changed"
    GUARD_NODELOCK_BACKEND_CHANGED = "guard_nodelock_backend_changed"
    GUARD_NO_LONGER_STALE = "guard_no_longer_stale"
    # Synchronous replication (plan/sync_replication.py).
    SYNC_ALREADY_AS_WANTED = "sync_already_as_wanted"
    MIRROR_STREAMING = "mirror_streaming"
    MIRROR_NOT_CAUGHT_UP = "mirror_not_caught_up"
    NO_SYNCREP_WAITERS = "no_syncrep_waiters"
    DOUBLE_FAULT = "double_fault"
    NOT_APPLICABLE = "not_applicable"
    NO_MIRROR_SYNC_ON = "no_mirror_sync_on"
    FORCED_BY_OPERATOR = "forced_by_operator"


MESSAGES = {
    Reason.DEADLOCK_VICTIM: "victim of deadlock {deadlock}: gxid {gxid}, coordinator pid {pid} ({why})",
    Reason.STILL_DEADLOCKED_AFTER_CANCEL: "gxid {gxid} still in a deadlock {grace_s} s after its cancel",
    Reason.ORPHANED_PREPARED_XACT: "prepared transaction {gid} on content {content}: the coordinator no longer knows gxid {gxid} "
                                   "and no segment's commit log records its commit",
    Reason.COMMITTED_ELSEWHERE: "prepared transaction {gid} on content {content}: gxid {gxid} committed elsewhere",
    Reason.STALE_NODELOCK_ROW: "sl_nodelock row {key} names backend pid {pid}, which is not the slon that wrote it",
    Reason.STALE_PID_FILE: "{path} names pid {pid}, which is not the process that wrote it",
    Reason.MIRROR_LOST_COMMITS_WAIT: "content {content}: mirror {mirror} is not streaming and {waiters} commits wait in SyncRep",
    Reason.MIRROR_STREAMING_AGAIN: "content {content}: mirror {mirror} streams again",
    Reason.FTS_CAN_ACT: "content {content}: FTS is running and can mark the mirror down itself",
    Reason.STANDBY_WALSENDER_STALLED: "the standby coordinator's walsender (pid {pid}) sent nothing for {seconds} s",
    Reason.PROTECTED_NEVER_CHOOSE: "gxid {gxid} matches never_choose",
    Reason.PROTECTED_SYNCREP_WAIT: "gxid {gxid} waits in SyncRep: cancelling it does not release its locks",
    Reason.PROTECTED_TWO_PHASE_COMMIT: "gxid {gxid} is in two-phase commit (prepared on content {contents}): "
                                       "signalling its coordinator backend would force a coordinator PANIC",
    Reason.PROTECTED_NOT_CLIENT_BACKEND: "pid {pid} is not a client backend ({backend_type})",
    Reason.PROTECTED_ALL_MEMBERS: "every member of deadlock {deadlock} is protected",
    Reason.LIVENESS_UNKNOWN: "the live distributed transactions could not be read after the wait edges ({detail})",
    Reason.PREPARED_XACTS_UNKNOWN: "pg_prepared_xacts of content {content} could not be read ({detail})",
    Reason.COMMIT_LOG_UNKNOWN: "the segments' commit log (gp_distributed_log) could not be read ({detail})",
    Reason.SNAPSHOT_INCOMPLETE: "the snapshot is incomplete: {detail}",
    Reason.IDENTITY_UNKNOWN: "the identity of pid {pid} (backend_start, sess_id) is not visible to this role",
    Reason.PRIVILEGE_MISSING: "the login role lacks {privilege}",
    Reason.NOT_ALLOWED: "{what} is not allowed here ({option} is false)",
    Reason.MIRROR_STATE_UNKNOWN: "content {content}: whether mirror {mirror} streams is unknown ({detail})",
    Reason.LOCAL_DEADLOCK_LEFT_TO_NODE: "deadlock {deadlock} lies on content {content} alone: its own deadlock check ends it",
    Reason.TOO_YOUNG: "{what} is younger than {min_age_s} s",
    Reason.NOT_STALE: "{what} is not proven stale ({detail})",
    Reason.GUARD_BACKEND_GONE: "pid {pid} no longer exists",
    Reason.GUARD_BACKEND_REPLACED: "pid {pid} now belongs to another backend or session",
    Reason.GUARD_TRANSACTION_ENDED: "pid {pid} no longer runs gxid {gxid} (its transaction ended)",
    Reason.GUARD_CYCLE_GONE: "gxid {gxid} is no longer in a deadlock",
    Reason.GUARD_PREPARED_XACT_GONE: "prepared transaction {gid} is no longer on content {content}",
    Reason.GUARD_ROW_CHANGED: "the row {key} no longer holds the values judged",
    Reason.GUARD_FILE_CHANGED: "{path} changed since it was judged (inode or content)",
    Reason.GUARD_SETTING_CHANGED: "{setting} on content {content} is no longer {expected!r}",
    Reason.GUARD_MIRROR_CHANGED: "content {content}: the mirror's state changed since the decision ({detail})",
    Reason.COORDINATOR_HAS_GXID: "prepared transaction {gid} on content {content}: the coordinator still has gxid {gxid} "
                                 "({detail}); it is finished by its coordinator backend, never here",
    Reason.FOREIGN_GID: "prepared transaction {gid} on content {content}: Greenplum did not form this gid (no gxid); "
                        "whoever prepared it must finish it",
    Reason.PREPARED_ON_COORDINATOR: "prepared transaction {gid} on the coordinator, which Greenplum never does itself",
    Reason.COMPANION_NOT_STALE: "{path} is stale, but {companion} of the same server is {verdict}: "
                                "they are one decision, so neither is removed",
    Reason.GUARD_PREPARED_XACT_REPLACED: "prepared transaction {gid} on content {content} is another one now "
                                         "(prepared {now}, judged {prepared})",
    Reason.GUARD_COORDINATOR_HAS_GXID: "the coordinator has gxid {gxid} again ({detail})",
    Reason.GUARD_COMMIT_STATE_CHANGED: "the segments' commit log now says gxid {gxid} is {now}; "
                                       "the step was planned for {planned}",
    Reason.GUARD_NODELOCK_BACKEND_CHANGED: "the backend with pid {pid} named by row {key} is no longer the one judged",
    Reason.GUARD_NO_LONGER_STALE: "{path} is no longer proven stale (verdict now {verdict})",
    Reason.SYNC_ALREADY_AS_WANTED: "content {content}: {detail}",
    Reason.MIRROR_STREAMING: "content {content}: mirror {mirror} streams: {detail}",
    Reason.MIRROR_NOT_CAUGHT_UP: "content {content}: mirror {mirror} has not caught up: {detail}",
    Reason.NO_SYNCREP_WAITERS: "content {content}: no backend waits in SyncRep (only_waiting): {detail}",
    Reason.DOUBLE_FAULT: "content {content}: {detail}",
    Reason.NOT_APPLICABLE: "content {content}: {detail}",
    Reason.NO_MIRROR_SYNC_ON: "content {content} has no mirror but synchronous replication is on: every commit waits",
    Reason.FORCED_BY_OPERATOR: "content {content}: switched off by the operator (force) while mirror {mirror} streams",
    Reason.GUARD_CYCLE_UNKNOWN: "whether gxid {gxid} is still in a deadlock could not be proven ({detail})",
    Reason.PROTECTED_PREPARED_XACT: "gxid {gxid} is a prepared transaction: it holds its locks with no backend to signal",
    Reason.PROTECTED_NO_COORDINATOR_BACKEND: "gxid {gxid}: its coordinator backend is not in the snapshot",
}


class _Lenient(dict):
    def __missing__(self, key):
        return "?"


def message(reason, **facts):
    """The sentence for ``reason`` with ``facts`` filled in; unknown fields show ``?``."""
    template = MESSAGES[reason]
    fields = _Lenient(facts)
    out = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            value = fields[field]
            if conversion == "r" and value != "?":
                value = repr(value)
            out.append(format(value, spec) if spec else str(value))
    return "".join(out)
