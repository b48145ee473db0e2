"""decide_sync over every combination of observed state (Patroni-style: the
invariants are checked for each combination, not a few examples)."""
import itertools

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.plan import sync_replication
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import SegmentConfig
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.sync_replication import (
    KEEP, NEEDS_PERSON, REFUSE, SWITCH_OFF, SWITCH_ON, PairState, Replication, decide_sync)

ROLES = ("p", "m")
STATUSES = ("u", "d")
MODES = ("s", "n")
REP_STATES = (None,) + sync_replication.WALSENDER_STATES
LAGS = (0, 4096, None)
SETTINGS = ("*", "", "gp_walreceiver")
WANTED = sync_replication.WANTED_STATES
MAX_LAG = 1024


def seg(dbid, content, role, status, mode):
    return SegmentConfig(dbid=dbid, content=content, role=role, preferred_role=role, mode=mode,
                         status=status, port=7000 + dbid, hostname="h", address="h", datadir="/d")


def pair(p_role="p", p_status="u", m_role="m", m_status="u", mode="s", rep_state="streaming",
         lag=0, setting="*", reachable=True, mirror=True, content=0, mirror_alive=None):
    primary = seg(2, content, p_role, p_status, mode)
    mir = seg(5, content, m_role, m_status, mode) if mirror else None
    rep = Replication(state=rep_state, flush_lag_bytes=lag, replay_lag_bytes=lag) if rep_state else Replication()
    return PairState(primary=primary, mirror=mir, primary_reachable=reachable, replication=rep,
                     setting=setting, mirror_alive=mirror_alive)


ALL = list(itertools.product(ROLES, STATUSES, ROLES, STATUSES, MODES, REP_STATES, LAGS, SETTINGS,
                             (True, False), (True, False), WANTED, (False, True), (None, True, False)))


def test_every_combination_keeps_the_invariants():
    assert len(ALL) > 10000
    for (p_role, p_status, m_role, m_status, mode, rep_state, lag, setting, reachable, has_mirror,
         wanted, force, alive) in ALL:
        st = pair(p_role, p_status, m_role, m_status, mode, rep_state, lag, setting, reachable,
                  has_mirror, mirror_alive=alive)
        d = decide_sync(st, wanted, force=force, max_lag_bytes=MAX_LAG)
        ctx = (p_role, p_status, m_role, m_status, mode, rep_state, lag, setting, reachable,
               has_mirror, wanted, force, alive, d)
        currently_on = sync_replication.is_sync_on(setting)
        primary_ok = p_role == "p" and p_status == "u" and reachable and not (
            has_mirror and m_role == "p")
        mirror_healthy = has_mirror and m_status == "u" and mode == "s" and alive is not False
        # Never act on a node that is not a reachable, unambiguous acting primary.
        if not primary_ok:
            assert not d.acts, ctx
            assert d.verdict in (REFUSE, NEEDS_PERSON), ctx
        # A double fault is for a person, never acted on.
        if p_role == "p" and (p_status != "u" or not reachable) and not mirror_healthy and not (
                has_mirror and m_role == "p"):
            assert d.verdict == NEEDS_PERSON, ctx
        # Off only when the mirror is proven not streaming, or forced, or there is none.
        if d.verdict == SWITCH_OFF:
            assert d.value == "" and currently_on, ctx
            assert (not has_mirror) or rep_state != "streaming" or force, ctx
            assert wanted in ("off", "auto"), ctx
            if wanted == "auto":
                assert (not has_mirror) or rep_state != "streaming", ctx
        # On only when the mirror streams and has caught up; force never relaxes that.
        if d.verdict == SWITCH_ON:
            assert d.value == "*" and not currently_on, ctx
            assert has_mirror and rep_state == "streaming" and lag is not None and lag <= MAX_LAG, ctx
            assert wanted in ("on", "auto"), ctx
        # Only the two values FTS writes, and only when it changes something (idempotence).
        if d.acts:
            assert d.value in ("", "*"), ctx
        else:
            assert d.value is None, ctx
        # A mirror that streams is never switched off without force.
        if has_mirror and rep_state == "streaming" and not force:
            assert d.verdict != SWITCH_OFF, ctx
        # durability_risk: after the decision, a mirrored primary whose commits are not replicated.
        after_on = (d.value == "*") if d.acts else currently_on
        assert d.durability_risk == (has_mirror and not after_on), ctx
        # The reason always says why.
        assert d.reason, ctx


def test_applying_a_decision_then_deciding_again_is_keep():
    """Second run: changed false. Apply each acting decision and decide again."""
    for (p_role, p_status, m_role, m_status, mode, rep_state, lag, setting, reachable, has_mirror,
         wanted, force, alive) in ALL:
        st = pair(p_role, p_status, m_role, m_status, mode, rep_state, lag, setting, reachable,
                  has_mirror, mirror_alive=alive)
        d = decide_sync(st, wanted, force=force, max_lag_bytes=MAX_LAG)
        if not d.acts:
            continue
        again = decide_sync(pair(p_role, p_status, m_role, m_status, mode, rep_state, lag, d.value,
                                 reachable, has_mirror, mirror_alive=alive), wanted, force=force,
                            max_lag_bytes=MAX_LAG)
        assert again.verdict == KEEP, (st, wanted, force, again)


@pytest.mark.parametrize("wanted", WANTED)
def test_coordinator_is_refused(wanted):
    d = decide_sync(pair(content=-1, rep_state=None), wanted, force=True)
    assert d.verdict == REFUSE and "coordinator" in d.reason


def test_the_hang_case_mirror_gone_fts_not_acted():
    """Catalog still u/s (FTS has not acted), no walsender, '*': off is proven safe."""
    d = decide_sync(pair(rep_state=None, lag=None), "off")
    assert d.verdict == SWITCH_OFF and d.value == "" and d.durability_risk
    assert "proven not streaming" in d.reason and "absent" in d.reason
    assert decide_sync(pair(rep_state=None, lag=None), "auto").verdict == SWITCH_OFF


def test_streaming_mirror_refused_without_force_and_allowed_with():
    assert decide_sync(pair(), "off").verdict == REFUSE
    forced = decide_sync(pair(), "off", force=True)
    assert forced.verdict == SWITCH_OFF and forced.durability_risk and "forced" in forced.reason


def test_on_needs_caught_up_mirror():
    assert decide_sync(pair(setting="", lag=10 ** 6), "on", max_lag_bytes=MAX_LAG).verdict == REFUSE
    assert decide_sync(pair(setting="", rep_state="catchup"), "on").verdict == REFUSE
    ok = decide_sync(pair(setting="", lag=100), "on", max_lag_bytes=MAX_LAG)
    assert ok.verdict == SWITCH_ON and ok.value == "*" and not ok.durability_risk
    # Streaming but lagging, sync off: auto leaves it off (FTS turns it on when ready).
    lag = decide_sync(pair(setting="", lag=10 ** 6), "auto", max_lag_bytes=MAX_LAG)
    assert lag.verdict == KEEP and lag.durability_risk


def test_double_fault_needs_a_person():
    d = decide_sync(pair(reachable=False, m_status="d", mode="n", rep_state=None), "off", force=True)
    assert d.verdict == NEEDS_PERSON and "double fault" in d.reason
    # Primary gone, mirror in sync: FTS fails over; not ours.
    assert decide_sync(pair(reachable=False, rep_state=None), "off", force=True).verdict == REFUSE
    assert decide_sync(pair(reachable=False, rep_state=None, mirror_alive=True), "off").verdict == REFUSE
    # FTS has not acted (catalog u/s) but the mirror does not run either: a double fault.
    dead = decide_sync(pair(reachable=False, rep_state=None, mirror_alive=False), "off", force=True)
    assert dead.verdict == NEEDS_PERSON and "not running either" in dead.reason


def test_bad_state_raises():
    with pytest.raises(ValueError):
        decide_sync(pair(), "reset")


def test_replication_from_rows_picks_the_mirror_walsender():
    rows = [{"application_name": "pg_basebackup", "state": "backup", "pid": 1},
            {"application_name": "gp_walreceiver", "state": "catchup", "pid": 2,
             "flush_lag_bytes": 10, "replay_lag_bytes": 30},
            {"application_name": "gp_walreceiver", "state": "streaming", "pid": 3,
             "flush_lag_bytes": 0, "replay_lag_bytes": 5}]
    rep = Replication.from_rows(rows)
    assert (rep.pid, rep.state, rep.lag_bytes, rep.replay_lag_bytes) == (3, "streaming", 0, 5)
    assert Replication.from_rows(rows[:1]).state is None
    assert Replication.from_rows([]).as_dict()["lag_bytes"] is None


def test_gp_replication_conf_text():
    text = "# managed by FTS\nsynchronous_standby_names = '*'\nother = 'x'\n"
    new = sync_replication.gp_replication_conf_text(text, "")
    assert new == "# managed by FTS\nother = 'x'\nsynchronous_standby_names = ''\n"
    assert sync_replication.gp_replication_conf_text(new, "") == new
    assert sync_replication.gp_replication_conf_text("", "*") == "synchronous_standby_names = '*'\n"
    with pytest.raises(ValueError):
        sync_replication.gp_replication_conf_text(text, "mirror1")


def _sample(pid, flush, replay, current):
    return {"pid": pid, "flush_lsn_bytes": flush, "replay_lsn_bytes": replay,
            "current_lsn_bytes": current}


@pytest.mark.parametrize("first,second,elapsed,waiters,stalled,why", [
    (None, None, 10, [1], False, "no walsender"),
    (_sample(1, 100, 100, 200), _sample(2, 100, 100, 200), 10, [1], False, "changed"),
    (_sample(1, 100, 100, 200), _sample(1, 100, 100, 200), 2, [1], False, "less than"),
    (_sample(1, 100, 100, 200), _sample(1, 150, 100, 200), 10, [1], False, "progress"),
    (_sample(1, 100, 90, 200), _sample(1, 100, 95, 200), 10, [1], False, "progress"),
    (_sample(1, 200, 200, 200), _sample(1, 200, 200, 200), 10, [1], False, "idle"),
    (_sample(1, 100, 100, 200), _sample(1, 100, 100, 300), 10, [], False, "no commit waits"),
    (_sample(1, 100, 100, 200), _sample(1, 100, 100, 300), 10, [1], True, "commit(s) wait"),
])
def test_standby_walsender_stalled(first, second, elapsed, waiters, stalled, why):
    got = sync_replication.standby_walsender_stalled(first, second, elapsed, 5, waiters)
    assert got["stalled"] is stalled and why in got["reason"]
    if stalled:
        assert got["pid"] == 1 and got["pending_bytes"] == 200


def test_require_waiters_keeps_sync_on_where_nothing_waits():
    d = decide_sync(pair(rep_state=None, lag=None), "off")
    kept = sync_replication.require_waiters(d, [])
    assert kept.verdict == KEEP and kept.value is None and not kept.durability_risk
    assert "only_waiting" in kept.reason
    assert sync_replication.require_waiters(d, [{"pid": 1}]) is d
    refused = decide_sync(pair(), "off")
    assert sync_replication.require_waiters(refused, []) is refused
