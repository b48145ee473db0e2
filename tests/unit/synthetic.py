"""Small hand-made snapshots for unit tests: the records a cluster would show for a
given wait-for graph or lock queue, built from row dicts like the snapshot layer does."""
import datetime

from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    Backend, ClusterSnapshot, DistributedXact, LockRecord, PreparedXact, WaitEdge)

TAKEN_AT = datetime.datetime(2026, 11, 21, 6, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds_before):
    """A timestamp ``seconds_before`` the snapshot."""
    return TAKEN_AT - datetime.timedelta(seconds=seconds_before)


def qd_pid(gxid):
    return 10000 + gxid


def session_of(gxid):
    return 100 + gxid


def backend(content, pid, sess_id, **extra):
    row = {"pid": pid, "sess_id": sess_id, "gp_segment_id": content, "state": "active",
           "backend_type": "client backend", "usename": "gpadmin", "application_name": "app",
           "datname": "postgres", "xact_start": at(60), "query_start": at(30), "state_change": at(30)}
    row.update(extra)
    return Backend.from_row(row)


def lock(content, pid, sess_id, locktype, mode, granted=True, **extra):
    row = {"gp_segment_id": content, "pid": pid, "mppsessionid": sess_id, "mppiswriter": True,
           "locktype": locktype, "mode": mode, "granted": granted}
    row.update(extra)
    return LockRecord.from_row(row)


def distributed_session(gxid, qd_extra=None, dist_xact=True):
    """Records of one distributed transaction on the coordinator: its QD backend, its
    ``distributed xid`` lock and its ``gp_distributed_xacts`` row."""
    sess = session_of(gxid)
    records = {
        "backends": [backend(-1, qd_pid(gxid), sess, **(qd_extra or {}))],
        "locks": [lock(-1, qd_pid(gxid), sess, "distributed xid", "ExclusiveLock", transactionid=str(gxid))],
        "dist_xacts": [DistributedXact.from_row({"distributed_xid": gxid, "gp_session_id": sess})]
        if dist_xact else []}
    return records


def snapshot_from_graph(edges, qd_extra=None, **snapshot_fields):
    """A snapshot whose ``gp_dist_wait_status()`` shows ``edges`` ``(content, waiter
    gxid, holder gxid, solid)``; every gxid is a live distributed transaction with
    a QD backend (``qd_extra``: gxid -> extra columns of its QD row)."""
    snap = ClusterSnapshot(taken_at=TAKEN_AT, **snapshot_fields)
    for gxid in sorted({v for e in edges for v in e[1:3]}):
        for name, records in distributed_session(gxid, (qd_extra or {}).get(gxid)).items():
            getattr(snap, name).extend(records)
    for content, waiter, holder, solid in edges:
        snap.edges.append(WaitEdge.from_row({
            "segid": content, "waiter_dxid": waiter, "holder_dxid": holder, "holdTillEndXact": solid,
            "waiter_lpid": 20000 + waiter, "holder_lpid": 20000 + holder,
            "waiter_lockmode": "ShareLock" if solid else "ExclusiveLock",
            "waiter_locktype": "transactionid" if solid else "tuple",
            "waiter_sessionid": session_of(waiter), "holder_sessionid": session_of(holder)}))
    return snap


def prepared_xact(content, gxid, transaction, sess_id, seconds=10.0):
    """A prepared transaction on ``content``: its ``pg_prepared_xacts`` row and its
    lock rows (pid NULL): its own xid lock and a relation lock."""
    vxact = "-1/%s" % transaction
    return (PreparedXact.from_row({"transaction": transaction, "gid": str(gxid), "prepared": at(seconds),
                                   "owner": "gpadmin", "database": "postgres"}, content),
            [LockRecord.from_row({"gp_segment_id": content, "pid": None, "mppsessionid": sess_id,
                                  "locktype": "transactionid", "mode": "ExclusiveLock", "granted": True,
                                  "transactionid": transaction, "virtualtransaction": vxact}),
             LockRecord.from_row({"gp_segment_id": content, "pid": None, "mppsessionid": sess_id,
                                  "locktype": "relation", "mode": "RowExclusiveLock", "granted": True,
                                  "relation": 16384, "virtualtransaction": vxact})])
