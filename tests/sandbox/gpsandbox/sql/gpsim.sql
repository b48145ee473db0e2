-- Greenplum 7 catalog surface of the sandbox, installed on every node (the
-- coordinator fills gp_segment_configuration). @MODULE@ is the path of gpsim.so.
-- Names and columns follow Greenplum 7 (docs/greenplum-internals.md and the
-- captures in tests/fixtures/gp7).
--
-- Greenplum's objects live under their pg_catalog names, as on a real cluster
-- (pg_locks with Greenplum's 18 columns, pg_stat_activity with sess_id,
-- gp_dist_wait_status(), ...: see the last section), so that schema-qualified
-- SQL runs unchanged and no search_path is needed. The implementation lives in
-- schema gpsim; PostgreSQL's own pg_locks, pg_stat_activity and version() are
-- moved there first (as gpsim.postgres_*), which needs a superuser with
-- allow_system_table_mods.
SET allow_system_table_mods = on;
CREATE SCHEMA gpsim;
GRANT USAGE ON SCHEMA gpsim TO PUBLIC;
ALTER VIEW pg_catalog.pg_locks RENAME TO postgres_locks;
ALTER VIEW pg_catalog.postgres_locks SET SCHEMA gpsim;
ALTER VIEW pg_catalog.pg_stat_activity RENAME TO postgres_stat_activity;
ALTER VIEW pg_catalog.postgres_stat_activity SET SCHEMA gpsim;
ALTER FUNCTION pg_catalog.version() RENAME TO postgres_version;
ALTER FUNCTION pg_catalog.postgres_version() SET SCHEMA gpsim;

-- C functions -------------------------------------------------------------
CREATE FUNCTION gpsim.backend_sessions(OUT pid int4, OUT sess_id int4, OUT gxid int8, OUT is_writer bool)
    RETURNS SETOF record AS '@MODULE@', 'gpsim_backend_sessions' LANGUAGE C VOLATILE;
CREATE FUNCTION gpsim.prepared_sessions(OUT xid xid, OUT sess_id int4)
    RETURNS SETOF record AS '@MODULE@', 'gpsim_prepared_sessions' LANGUAGE C VOLATILE;
CREATE FUNCTION gpsim.gather(sql text)
    RETURNS SETOF text AS '@MODULE@', 'gpsim_gather' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION gpsim.gp_distributed_xid()
    RETURNS xid AS '@MODULE@', 'gpsim_distributed_xid' LANGUAGE C VOLATILE;
CREATE FUNCTION gpsim.fault_resume(gxid int8)
    RETURNS void AS '@MODULE@', 'gpsim_fault_resume' LANGUAGE C VOLATILE STRICT;
-- GP7's forms with a message (pg_proc.dat oids 7155, 7154), as GDD uses
CREATE FUNCTION pg_catalog.pg_cancel_backend(int4, text)
    RETURNS bool AS '@MODULE@', 'gpsim_cancel_backend_msg' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION pg_catalog.pg_terminate_backend(int4, text)
    RETURNS bool AS '@MODULE@', 'gpsim_terminate_backend_msg' LANGUAGE C VOLATILE STRICT;

-- catalog tables (GP7 gp_segment_configuration.h, gp_configuration_history) --
CREATE TABLE gpsim.gp_segment_configuration (
    dbid int2 PRIMARY KEY,
    content int2 NOT NULL,
    role "char" NOT NULL,
    preferred_role "char" NOT NULL,
    mode "char" NOT NULL,
    status "char" NOT NULL,
    port int4 NOT NULL,
    hostname text,
    address text,
    datadir text
);
CREATE TABLE gpsim.gp_configuration_history (
    "time" timestamptz NOT NULL,
    dbid int2 NOT NULL,
    description text
);
-- distributed tables: same name on the coordinator (catalog only) and segments
CREATE TABLE gpsim.gp_distribution_policy (
    localoid oid PRIMARY KEY,
    distkey text NOT NULL,
    numsegments int4 NOT NULL
);
-- on a segment: the coordinator's oid of each distributed table (a Greenplum
-- table has one oid on every node; pg_locks shows the coordinator's)
CREATE TABLE gpsim.relation_map (
    localoid oid PRIMARY KEY,
    coordinator_oid oid NOT NULL
);
-- FTS handshake for gp_request_fts_probe_scan(): sequences change outside
-- transactions, so the FTS process sees a request at once
CREATE SEQUENCE gpsim.fts_probe_request MINVALUE 0 START 1;
CREATE SEQUENCE gpsim.fts_probe_done MINVALUE 0 START 0;

-- helpers -----------------------------------------------------------------
CREATE FUNCTION gpsim.segment_for(value int8, numsegments int4) RETURNS int4
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (((value % numsegments) + numsegments) % numsegments)::int4
$$;

-- PostgreSQL's lock conflict table (lock.c LockConflicts)
CREATE FUNCTION gpsim.lock_conflicts(wanted text, held text) RETURNS bool
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE wanted
        WHEN 'AccessShareLock' THEN held = 'AccessExclusiveLock'
        WHEN 'RowShareLock' THEN held IN ('ExclusiveLock', 'AccessExclusiveLock')
        WHEN 'RowExclusiveLock' THEN held IN ('ShareLock', 'ShareRowExclusiveLock',
            'ExclusiveLock', 'AccessExclusiveLock')
        WHEN 'ShareUpdateExclusiveLock' THEN held IN ('ShareUpdateExclusiveLock', 'ShareLock',
            'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
        WHEN 'ShareLock' THEN held IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock',
            'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
        WHEN 'ShareRowExclusiveLock' THEN held IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock',
            'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
        WHEN 'ExclusiveLock' THEN held <> 'AccessShareLock'
        WHEN 'AccessExclusiveLock' THEN true
        ELSE false
    END
$$;

-- Where the coordinator dispatches a statement on distributed tables: one
-- segment for "... WHERE <distkey> = <int>" and a one-row "INSERT ... VALUES
-- (<distkey first>, ...)" (GP's direct dispatch), else every primary.
-- relids = {0}: every primary. No distributed table among relids: no rows.
CREATE FUNCTION gpsim.dispatch_targets(relids oid[], query text)
RETURNS TABLE (content int4, address text, port int4)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pol gpsim.gp_distribution_policy;
    v text;
BEGIN
    IF NOT 0::oid = ANY (relids) THEN
        IF NOT EXISTS (SELECT 1 FROM gpsim.gp_distribution_policy p WHERE p.localoid = ANY (relids)) THEN
            RETURN;
        END IF;
        IF cardinality(relids) = 1 THEN
            SELECT * INTO pol FROM gpsim.gp_distribution_policy p WHERE p.localoid = relids[1];
            v := substring(query FROM '(?i)\mwhere\s+"?' || pol.distkey || '"?\s*=\s*(-?\d+)\s*;?\s*$');
            IF v IS NULL AND (SELECT a.attnum FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = pol.localoid AND a.attname = pol.distkey) = 1 THEN
                v := substring(query FROM '(?i)^\s*insert\s+into\s+\S+\s+values\s*\(\s*(-?\d+)\s*,[^()]*\)\s*;?\s*$');
            END IF;
            IF v IS NOT NULL THEN
                RETURN QUERY SELECT c.content::int4, c.address, c.port
                    FROM gpsim.gp_segment_configuration c
                    WHERE c.role = 'p' AND c.content = gpsim.segment_for(v::int8, pol.numsegments);
                RETURN;
            END IF;
        END IF;
    END IF;
    RETURN QUERY SELECT c.content::int4, c.address, c.port
        FROM gpsim.gp_segment_configuration c
        WHERE c.role = 'p' AND c.content >= 0 ORDER BY c.content;
END
$$;

-- On a segment, a row inserted by a QE that another segment owns is dropped
-- (statements without direct dispatch go to every segment).
CREATE FUNCTION gpsim.keep_local_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('gp_role') = 'execute' AND gpsim.segment_for(
            (to_jsonb(NEW) ->> TG_ARGV[0])::int8, TG_ARGV[1]::int4)
            <> current_setting('gp_contentid')::int4 THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

-- local views (this node only) ---------------------------------------------
CREATE VIEW gpsim.local_locks AS
WITH l AS (
    SELECT lk.*, (lk.locktype = 'advisory' AND lk.classid = 1196442712 AND lk.objsubid = 2) AS dx
    FROM gpsim.postgres_locks lk
), prepared AS (  -- the lock rows of a prepared transaction share its vxid
    SELECT l.virtualtransaction, ps.sess_id
    FROM l JOIN gpsim.prepared_sessions() ps ON ps.xid = l.transactionid
    WHERE l.pid IS NULL AND l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock'
)
SELECT CASE WHEN l.dx THEN 'distributed xid' ELSE l.locktype END AS locktype,
       CASE WHEN l.dx THEN NULL ELSE l.database END AS database,
       COALESCE(m.coordinator_oid, l.relation) AS relation, l.page, l.tuple, l.virtualxid,
       CASE WHEN l.dx THEN l.objid::text::xid ELSE l.transactionid END AS transactionid,
       CASE WHEN l.dx THEN NULL ELSE l.classid END AS classid,
       CASE WHEN l.dx THEN NULL ELSE l.objid END AS objid,
       CASE WHEN l.dx THEN NULL ELSE l.objsubid END AS objsubid,
       l.virtualtransaction, l.pid, l.mode, l.granted, l.fastpath,
       COALESCE(s.sess_id, p.sess_id, -1) AS mppsessionid,
       COALESCE(s.is_writer, false) AS mppiswriter,
       current_setting('gp_contentid')::int4 AS gp_segment_id
FROM l
LEFT JOIN gpsim.backend_sessions() s ON s.pid = l.pid
LEFT JOIN prepared p ON l.pid IS NULL AND p.virtualtransaction = l.virtualtransaction
LEFT JOIN gpsim.relation_map m ON m.localoid = l.relation;

CREATE VIEW gpsim.pg_stat_activity AS
SELECT a.datid, a.datname, a.pid, COALESCE(s.sess_id, -1) AS sess_id, a.usesysid, a.usename,
       a.application_name, a.client_addr, a.client_hostname, a.client_port,
       a.backend_start, a.xact_start, a.query_start, a.state_change,
       a.wait_event_type,
       CASE WHEN a.wait_event_type = 'IPC' AND a.wait_event = 'unknown wait event'
            THEN 'Dispatch/Result' ELSE a.wait_event END AS wait_event,
       a.state, a.backend_xid, a.backend_xmin, a.query, a.backend_type,
       0::oid AS rsgid, 'unknown'::text AS rsgname
FROM gpsim.postgres_stat_activity a
LEFT JOIN gpsim.backend_sessions() s ON s.pid = a.pid
WHERE a.application_name IS DISTINCT FROM 'gpsandbox_fts';  -- FTS, a GP background process

CREATE VIEW gpsim.local_stat_activity AS
SELECT current_setting('gp_contentid')::int4 AS gp_segment_id, a.*
FROM gpsim.pg_stat_activity a;

CREATE VIEW gpsim.local_stat_replication AS
SELECT current_setting('gp_contentid')::int4 AS gp_segment_id,
       r.pid, r.usesysid, r.usename, r.application_name, r.client_addr, r.client_hostname,
       r.client_port, r.backend_start, r.backend_xmin, r.state, r.sent_lsn, r.write_lsn,
       r.flush_lsn, r.replay_lsn, r.write_lag, r.flush_lag, r.replay_lag, r.sync_priority,
       r.sync_state, r.reply_time, 'none'::text AS sync_error
FROM (SELECT 1) one  -- a segment without walsender still has its row, as on GP
LEFT JOIN pg_catalog.pg_stat_replication r ON true
WHERE r.pid IS NOT NULL OR current_setting('gp_contentid')::int4 >= 0;

-- GDD's edges (gddfuncs.c): a waiter and a holder of the same lock tag whose
-- modes conflict; solid ("holdTillEndXact") unless a tuple lock; a prepared
-- transaction holds with local pid 0 and its gid as gxid.
CREATE VIEW gpsim.local_wait_status AS
WITH l AS (SELECT * FROM gpsim.postgres_locks),
sess AS (SELECT * FROM gpsim.backend_sessions()),
prepared AS (
    SELECT l.virtualtransaction, px.gid, ps.sess_id
    FROM l JOIN pg_catalog.pg_prepared_xacts px ON px.transaction = l.transactionid
    LEFT JOIN gpsim.prepared_sessions() ps ON ps.xid = px.transaction
    WHERE l.pid IS NULL AND l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock'
)
SELECT DISTINCT
       current_setting('gp_contentid')::int4 AS segid,
       COALESCE(ws.gxid, 0)::int8 AS waiter_dxid,
       COALESCE(hs.gxid, CASE WHEN hp.gid ~ '^\d+$' THEN hp.gid::int8 END, 0)::int8 AS holder_dxid,
       (w.locktype <> 'tuple') AS "holdTillEndXact",
       w.pid AS waiter_lpid,
       COALESCE(h.pid, 0) AS holder_lpid,
       w.mode AS waiter_lockmode,
       w.locktype AS waiter_locktype,
       COALESCE(ws.sess_id, -1) AS waiter_sessionid,
       COALESCE(hs.sess_id, hp.sess_id, -1) AS holder_sessionid
FROM l w
JOIN l h ON NOT w.granted AND h.granted
    AND w.locktype = h.locktype
    AND w.database IS NOT DISTINCT FROM h.database
    AND w.relation IS NOT DISTINCT FROM h.relation
    AND w.page IS NOT DISTINCT FROM h.page
    AND w.tuple IS NOT DISTINCT FROM h.tuple
    AND w.virtualxid IS NOT DISTINCT FROM h.virtualxid
    AND w.transactionid IS NOT DISTINCT FROM h.transactionid
    AND w.classid IS NOT DISTINCT FROM h.classid
    AND w.objid IS NOT DISTINCT FROM h.objid
    AND w.objsubid IS NOT DISTINCT FROM h.objsubid
    AND w.pid IS DISTINCT FROM h.pid
    AND gpsim.lock_conflicts(w.mode, h.mode)
LEFT JOIN sess ws ON ws.pid = w.pid
LEFT JOIN sess hs ON hs.pid = h.pid
LEFT JOIN prepared hp ON h.pid IS NULL AND hp.virtualtransaction = h.virtualtransaction;

-- Greenplum's names: on the coordinator in dispatch mode every primary's rows
-- are added (gpsim.gather fails when a primary does not answer) -------------
CREATE VIEW gpsim.pg_locks AS
SELECT * FROM gpsim.local_locks
UNION ALL
SELECT r.* FROM gpsim.gather('SELECT row_to_json(x)::text FROM gpsim.local_locks x') g(j),
    LATERAL json_populate_record(NULL::gpsim.local_locks, g.j::json) r;

CREATE VIEW gpsim.gp_stat_activity AS
SELECT * FROM gpsim.local_stat_activity
UNION ALL
SELECT r.* FROM gpsim.gather('SELECT row_to_json(x)::text FROM gpsim.local_stat_activity x') g(j),
    LATERAL json_populate_record(NULL::gpsim.local_stat_activity, g.j::json) r;

CREATE VIEW gpsim.gp_stat_replication AS
SELECT * FROM gpsim.local_stat_replication
UNION ALL
SELECT r.* FROM gpsim.gather('SELECT row_to_json(x)::text FROM gpsim.local_stat_replication x') g(j),
    LATERAL json_populate_record(NULL::gpsim.local_stat_replication, g.j::json) r;

CREATE FUNCTION gpsim.gp_dist_wait_status()
RETURNS TABLE (segid int4, waiter_dxid int8, holder_dxid int8, "holdTillEndXact" bool,
               waiter_lpid int4, holder_lpid int4, waiter_lockmode text, waiter_locktype text,
               waiter_sessionid int4, holder_sessionid int4)
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM gpsim.local_wait_status
    UNION ALL
    SELECT r.* FROM gpsim.gather('SELECT row_to_json(x)::text FROM gpsim.local_wait_status x') g(j),
        LATERAL json_populate_record(NULL::gpsim.local_wait_status, g.j::json) r
$$;

-- one row per coordinator session (GP shows gxid 0 / session 0 for idle ones)
CREATE VIEW gpsim.gp_distributed_xacts AS
WITH s AS (SELECT * FROM gpsim.backend_sessions() WHERE sess_id > 0)
SELECT s.gxid::text::xid AS distributed_xid,
       'None'::text AS state,
       CASE WHEN s.gxid <> 0 THEN s.sess_id ELSE 0 END AS gp_session_id,
       COALESCE((SELECT min(o.gxid) FROM s o WHERE o.gxid <> 0), 0)::text::xid AS xmin_distributed_snapshot
FROM s
WHERE current_setting('gp_contentid')::int4 = -1;

CREATE FUNCTION gpsim.version() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT regexp_replace(gpsim.postgres_version(), '^PostgreSQL (\S+)( \([^)]*\))?',
        'PostgreSQL \1 (Greenplum Database ' || current_setting('gp_server_version') || ')')
$$;

-- Returns only after a whole FTS probe cycle that started after the call has
-- finished (cdbfts.c FtsNotifyProber); waits (interruptibly) while FTS is paused.
CREATE FUNCTION gpsim.gp_request_fts_probe_scan() RETURNS SETOF bool
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    request int8;
BEGIN
    IF current_setting('gp_role') <> 'dispatch' OR current_setting('gp_contentid')::int4 <> -1 THEN
        RAISE EXCEPTION 'this function can only be called by coordinator (without utility mode)';
    END IF;
    request := nextval('gpsim.fts_probe_request');
    WHILE (SELECT last_value FROM gpsim.fts_probe_done) < request LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN NEXT true;
END
$$;

GRANT SELECT ON ALL TABLES IN SCHEMA gpsim TO PUBLIC;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA gpsim TO PUBLIC;

-- Greenplum's names in pg_catalog --------------------------------------------
-- What a real Greenplum 7 has in pg_catalog, over the implementation above.
-- (pg_stat_replication, pg_prepared_xacts and pg_settings are PostgreSQL's own
-- on Greenplum 7 too.)
CREATE VIEW pg_catalog.pg_locks AS SELECT * FROM gpsim.pg_locks;
CREATE VIEW pg_catalog.pg_stat_activity AS SELECT * FROM gpsim.pg_stat_activity;
CREATE VIEW pg_catalog.gp_stat_activity AS SELECT * FROM gpsim.gp_stat_activity;
CREATE VIEW pg_catalog.gp_stat_replication AS SELECT * FROM gpsim.gp_stat_replication;
CREATE VIEW pg_catalog.gp_distributed_xacts AS SELECT * FROM gpsim.gp_distributed_xacts;
CREATE VIEW pg_catalog.gp_segment_configuration AS SELECT * FROM gpsim.gp_segment_configuration;
CREATE VIEW pg_catalog.gp_configuration_history AS SELECT * FROM gpsim.gp_configuration_history;
GRANT SELECT ON pg_catalog.pg_locks, pg_catalog.pg_stat_activity, pg_catalog.gp_stat_activity,
    pg_catalog.gp_stat_replication, pg_catalog.gp_distributed_xacts,
    pg_catalog.gp_segment_configuration, pg_catalog.gp_configuration_history TO PUBLIC;

CREATE FUNCTION pg_catalog.gp_dist_wait_status()
RETURNS TABLE (segid int4, waiter_dxid int8, holder_dxid int8, "holdTillEndXact" bool,
               waiter_lpid int4, holder_lpid int4, waiter_lockmode text, waiter_locktype text,
               waiter_sessionid int4, holder_sessionid int4)
LANGUAGE sql VOLATILE AS $$ SELECT * FROM gpsim.gp_dist_wait_status() $$;
-- Greenplum's gp_dist_random('rel') is parser syntax; here a function of the one relation
-- the collection reads through it. The sandbox keeps no distributed commit log: empty.
CREATE FUNCTION pg_catalog.gp_dist_random(text)
RETURNS TABLE (segment_id int2, dbid int2, distributed_xid xid, status text, local_transaction xid)
LANGUAGE sql STABLE AS $$
  SELECT NULL::int2, NULL::int2, NULL::xid, NULL::text, NULL::xid WHERE $1 = 'pg_catalog.gp_distributed_log'
    AND false $$;
CREATE FUNCTION pg_catalog.gp_request_fts_probe_scan() RETURNS SETOF bool
LANGUAGE sql VOLATILE AS $$ SELECT * FROM gpsim.gp_request_fts_probe_scan() $$;
CREATE FUNCTION pg_catalog.gp_distributed_xid() RETURNS xid
LANGUAGE sql VOLATILE AS $$ SELECT gpsim.gp_distributed_xid() $$;
CREATE FUNCTION pg_catalog.version() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT gpsim.version() $$;
RESET allow_system_table_mods;
