"""Typed records: construction from catalog rows of every shape the snapshot sees."""
import dataclasses
import datetime
import gc
import json

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    Backend, LockRecord, PreparedXact, WaitEdge, gc_paused)

GP7_LOCK = {"locktype": "transactionid", "database": None, "relation": None, "page": None, "tuple": None,
            "virtualxid": None, "transactionid": "576", "classid": None, "objid": None, "objsubid": None,
            "virtualtransaction": "8/2", "pid": 19892, "mode": "ShareLock", "granted": False,
            "fastpath": False, "mppsessionid": 11, "mppiswriter": True, "gp_segment_id": 0}


def test_lock_from_a_full_gp7_row():
    r = LockRecord.from_row(GP7_LOCK)
    assert (r.content, r.pid, r.mppsessionid, r.locktype, r.mode, r.granted, r.transactionid, r.waitstart) == (
        0, 19892, 11, "transactionid", "ShareLock", False, "576", None)
    assert r.locktag() == (0, "transactionid", None, None, None, None, None, "576", None, None, None)


def test_lock_from_a_partial_text_row_with_gp6_spellings():
    r = LockRecord.from_row({"locktype": "relation", "mode": "AccessShareLock", "granted": "t", "pid": "0",
                             "relation": "16384", "mppSessionId": "7", "mppIsWriter": "f",
                             "waitstart": "2026-11-21T05:00:00Z"}, content=2, relation_name="public.t")
    assert (r.content, r.pid, r.relation, r.mppsessionid, r.mppiswriter, r.granted, r.relation_name) == (
        2, None, 16384, 7, False, True, "public.t")
    assert r.is_prepared_xact and r.waitstart == datetime.datetime(2026, 11, 21, 5, tzinfo=datetime.timezone.utc)


def test_backend_from_gp7_and_gp6_rows():
    gp7 = Backend.from_row({"pid": 1, "sess_id": 3, "gp_segment_id": 1, "state": "active",
                            "wait_event": "SyncRep", "backend_type": "client backend", "blocking_pids": "{4,5}",
                            "query_start": "2026-11-21T05:41:20.692622+00:00"})
    assert (gp7.content, gp7.wait_event, gp7.blocking_pids, gp7.is_client_backend) == (1, "SyncRep", (4, 5), True)
    assert gp7.query_start.tzinfo is not None
    gp6 = Backend.from_row({"pid": 2, "sess_id": 9, "datname": "db", "waiting": "t", "waiting_reason": "replication"})
    assert (gp6.content, gp6.waiting, gp6.waiting_reason, gp6.backend_type, gp6.is_client_backend) == (
        -1, True, "replication", None, True)


def test_records_are_hashable_comparable_and_serializable():
    a, b = LockRecord.from_row(GP7_LOCK), LockRecord.from_row(dict(GP7_LOCK))
    assert a == b and len({a, b}) == 1
    assert dataclasses.replace(a, relation_name="x").relation_name == "x"
    edge = WaitEdge.from_row({"segid": 0, "waiter_dxid": 18, "holder_dxid": 17, "holdTillEndXact": True,
                              "waiter_lpid": 1, "holder_lpid": 0, "waiter_sessiondid": 11})
    assert edge.waiter_sessionid == 11 and edge.solid
    json.dumps([a.as_dict(), edge.as_dict()])


@pytest.mark.parametrize("gid,gxid", [("36", 36), ("1690000000-0000012345", 12345), ("manual-fix", None)])
def test_prepared_xact_gxid_from_gid(gid, gxid):
    assert PreparedXact(0, "593", gid, None, None, None).gxid == gxid


def test_from_rows_restores_the_collector_state():
    rows = [GP7_LOCK] * 3
    assert gc.isenabled()
    assert LockRecord.from_rows(rows) == [LockRecord.from_row(GP7_LOCK)] * 3
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
