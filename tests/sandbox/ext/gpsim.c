/*
 * gpsim: makes a PostgreSQL 15 server look like a Greenplum 7 node where the
 * gpops.greenplum collection looks (test sandbox only, never shipped).
 *
 * - GUCs: gp_role / gp_session_role (dispatch, utility, execute; PGC_BACKEND),
 *   gp_session_id, gp_contentid, gp_dbid, gp_server_version(_num).
 * - A primary segment refuses connections that are neither utility nor execute
 *   ("connections to primary segments are not allowed", GP postinit.c).
 * - A per-backend registry in shared memory (pid -> session id, gxid, writer)
 *   that the gpsim SQL views turn into sess_id / mppsessionid / dxids.
 * - The dispatcher (coordinator, gp_role=dispatch): a statement that reads or
 *   writes a distributed table (gpsim.gp_distribution_policy) is sent, with
 *   its own text, to the target primaries over one libpq connection per
 *   session and segment (a "writer QE", gp_role=execute, same gp_session_id),
 *   inside a remote transaction that ends with the coordinator's: one-phase
 *   COMMIT for one segment, PREPARE TRANSACTION '<gxid>' + COMMIT PREPARED for
 *   several (GP7 gid format), ROLLBACK on abort.  The wait for segment results
 *   is interruptible and reported as wait event IPC (shown as
 *   'Dispatch/Result' by gpsim.pg_stat_activity).
 * - gpsim.gather(sql): runs sql on every primary (bounded, interruptible) for
 *   the dispatched views (pg_locks, gp_stat_activity, gp_dist_wait_status ...).
 * - GP7's pg_cancel_backend(pid, msg) / pg_terminate_backend(pid, msg); QE
 *   commits ignore cancel (GP's syncrep wait); fault injection for in-doubt
 *   and orphaned prepared transactions (gpsim.fault_*).
 * See docs/sandbox.md.
 */
#include "postgres.h"

#include <math.h>

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_MODULE_MAGIC;

#define GP_ROLE_DISPATCH 0
#define GP_ROLE_UTILITY 1
#define GP_ROLE_EXECUTE 2

/* Shown as IPC / 'Dispatch/Result' by gpsim.pg_stat_activity. */
#define WAIT_EVENT_GPSIM_DISPATCH (PG_WAIT_IPC | 0xFFF0)
/* Advisory-lock key space of the coordinator's 'distributed xid' lock ("GPDX"). */
#define GPSIM_DXID_LOCK_KEY 0x47504458
#define MAX_SEGS 64
#define PREPARED_RING 256

void		_PG_init(void);

/* ---------------------------------------------------------------- GUCs */
static const struct config_enum_entry gp_role_options[] = {
	{"dispatch", GP_ROLE_DISPATCH, false},
	{"utility", GP_ROLE_UTILITY, false},
	{"execute", GP_ROLE_EXECUTE, false},
	{NULL, 0, false}
};
static int	gp_role = GP_ROLE_DISPATCH;
static int	gp_session_id = -1;
static int	node_contentid = -1;
static int	node_dbid = 1;
static int	gp_contentid = -1;
static int	gp_dbid = 1;
static char *gp_server_version = NULL;
static int	gp_server_version_num = 70000;
static int	qe_gxid = 0;
static int	connect_timeout_s = 2;
static int	gather_timeout_s = 10;
static bool fault_skip_commit_prepared = false;

/*
 * FTS settings of the sandbox's FTS process (gpsim.fts_*, seconds, written by
 * gpsandbox in gpsim_fts.conf) shown under Greenplum's names; and Greenplum
 * settings the sandbox does not act on, at Greenplum's defaults
 * (docs/greenplum-internals.md#defaults).
 */
typedef struct FtsGuc
{
	const char *gp_name;
	const char *sim_name;
	double		value;
	int			gp_dummy;
} FtsGuc;

static FtsGuc fts_gucs[] = {
	{"gp_fts_probe_interval", "gpsim.fts_probe_interval", 60, 60},
	{"gp_fts_probe_timeout", "gpsim.fts_probe_timeout", 20, 20},
	{"gp_fts_probe_retries", "gpsim.fts_probe_retries", 5, 5},
	{"gp_fts_mark_mirror_down_grace_period", "gpsim.fts_mirror_down_grace_period", 30, 30},
};
static bool gp_enable_gdd = false;
static int	gp_gdd_period = 120;
static int	gp_fts_replication_attempt_count = 10;
static int	gp_dtx_recovery_interval = 60;
static int	gp_dtx_recovery_prepared_period = 120;
static char *gp_resource_manager = NULL;

static const char *
show_fts_guc(int i)
{
	static char buf[4][32];

	snprintf(buf[i], sizeof(buf[i]), "%d", (int) rint(fts_gucs[i].value));
	return buf[i];
}

static const char *show_fts_0(void) { return show_fts_guc(0); }
static const char *show_fts_1(void) { return show_fts_guc(1); }
static const char *show_fts_2(void) { return show_fts_guc(2); }
static const char *show_fts_3(void) { return show_fts_guc(3); }
static GucShowHook fts_show_hooks[] = {show_fts_0, show_fts_1, show_fts_2, show_fts_3};
static bool fault_suspend_commit_prepared = false;

/* ---------------------------------------------------------------- shmem */
typedef struct GpsimSlot
{
	int			pid;
	int			sess_id;
	int			gxid;
	bool		is_writer;
	char		signal_msg[128];	/* pg_cancel/terminate_backend(pid, msg) */
} GpsimSlot;

typedef struct GpsimPrepared
{
	TransactionId xid;
	int			sess_id;
} GpsimPrepared;

typedef struct GpsimShared
{
	pg_atomic_uint32 next_session_id;
	pg_atomic_uint32 next_gxid;
	pg_atomic_uint32 next_prepared;
	pg_atomic_uint32 fault_resume_gxid;	/* gpsim.fault_resume() */
	GpsimPrepared prepared[PREPARED_RING];
	GpsimSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} GpsimShared;

static GpsimShared *shared = NULL;
static GpsimSlot *my_slot = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

static Size
shared_size(void)
{
	return add_size(offsetof(GpsimShared, slots),
					mul_size(MaxBackends + 1, sizeof(GpsimSlot)));
}

static void
gpsim_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
}

static void
gpsim_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("gpsim", shared_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_size());
		/* GP's demo cluster starts counting sessions and gxids low, too. */
		pg_atomic_init_u32(&shared->next_session_id, 1);
		pg_atomic_init_u32(&shared->next_gxid, 1);
		pg_atomic_init_u32(&shared->next_prepared, 0);
		pg_atomic_init_u32(&shared->fault_resume_gxid, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
clear_my_slot(int code, Datum arg)
{
	if (my_slot)
	{
		my_slot->pid = 0;
		my_slot->sess_id = -1;
		my_slot->gxid = 0;
		my_slot->is_writer = false;
		my_slot = NULL;
	}
}

static void
assign_session_id(int newval, void *extra)
{
	if (my_slot)
		my_slot->sess_id = newval;
}

static void
assign_qe_gxid(int newval, void *extra)
{
	if (my_slot && gp_role == GP_ROLE_EXECUTE)
		my_slot->gxid = newval;
}

/* ------------------------------------------------- authentication hook */

/* The gp_role asked for in the startup packet (options are applied only
 * after authentication, so read them from the Port). */
static int
requested_role(Port *port)
{
	int			role = GP_ROLE_DISPATCH;
	ListCell   *lc;

	foreach(lc, port->guc_options)
	{
		char	   *name = lfirst(lc);
		char	   *value;

		lc = lnext(port->guc_options, lc);
		if (lc == NULL)
			break;
		value = lfirst(lc);
		if (pg_strcasecmp(name, "gp_role") == 0 ||
			pg_strcasecmp(name, "gp_session_role") == 0)
		{
			if (pg_strcasecmp(value, "utility") == 0)
				role = GP_ROLE_UTILITY;
			else if (pg_strcasecmp(value, "execute") == 0)
				role = GP_ROLE_EXECUTE;
		}
	}
	if (port->cmdline_options)
	{
		const char *p = port->cmdline_options;
		const char *keys[] = {"gp_role=", "gp_session_role="};

		for (int k = 0; k < 2; k++)
		{
			const char *hit = strstr(p, keys[k]);

			while (hit)
			{
				const char *v = hit + strlen(keys[k]);

				if (pg_strncasecmp(v, "utility", 7) == 0)
					role = GP_ROLE_UTILITY;
				else if (pg_strncasecmp(v, "execute", 7) == 0)
					role = GP_ROLE_EXECUTE;
				hit = strstr(v, keys[k]);
			}
		}
	}
	return role;
}

static void
gpsim_client_auth(Port *port, int status)
{
	int			role;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
	if (status != STATUS_OK)
		return;
	role = requested_role(port);
	if (node_contentid >= 0 && role == GP_ROLE_DISPATCH && !am_walsender)
		ereport(FATAL,
				(errcode(ERRCODE_CANNOT_CONNECT_NOW),
				 errmsg("connections to primary segments are not allowed"),
				 errdetail("This database instance is running as a primary segment in a Greenplum cluster and does not permit direct connections."),
				 errhint("To force a connection anyway (dangerous!), use utility mode.")));
	if (shared && MyBackendId != InvalidBackendId && MyBackendId <= MaxBackends)
	{
		my_slot = &shared->slots[MyBackendId];
		my_slot->pid = MyProcPid;
		my_slot->sess_id = -1;
		my_slot->gxid = 0;
		my_slot->is_writer = false;
		my_slot->signal_msg[0] = '\0';
		on_shmem_exit(clear_my_slot, (Datum) 0);
		if (node_contentid == -1 && role == GP_ROLE_DISPATCH && !am_walsender)
		{
			gp_session_id = (int) pg_atomic_fetch_add_u32(&shared->next_session_id, 1);
			my_slot->sess_id = gp_session_id;
			my_slot->is_writer = true;
		}
		else if (role == GP_ROLE_EXECUTE)
			my_slot->is_writer = true;
	}
}

/* ------------------------------------------------------ segment links */
typedef struct SegConn
{
	int			content;
	int			port;
	char		address[64];
	PGconn	   *conn;
	bool		in_xact;		/* remote BEGIN sent in this local xact */
	bool		prepared;		/* PREPARE TRANSACTION done */
	bool		busy;			/* results pending */
	int			sent_gxid;
	bool		fresh;			/* connected for this use */
	bool		has_error;
	char		sqlstate[6];
	char		errmsg[1024];
	uint64		affected;
} SegConn;

typedef struct SegTarget
{
	int			content;
	int			port;
	char		address[64];
} SegTarget;

static SegConn writers[MAX_SEGS];
static int	nwriters = 0;
static SegConn readers[MAX_SEGS];
static int	nreaders = 0;
static int	current_gxid = 0;
static bool in_gpsim = false;	/* our own SPI queries are never dispatched */
static QueryDesc *dispatched_query = NULL;
/* a QE's last statement: shown while it runs the dtx protocol (see below) */
static char qe_last_query[1024] = "";
static bool cancel_ignored = false;	/* SIGINT ignored until the xact ends */
static uint64 dispatched_rows = 0;

typedef enum WaitMode
{
	WAIT_NORMAL,				/* interruptible */
	WAIT_COMMIT,				/* cancel ignored, as GP does during syncrep */
	WAIT_CLEANUP				/* inside abort: no interrupts, never throws */
} WaitMode;

static bool
is_dispatcher(void)
{
	return node_contentid == -1 && gp_role == GP_ROLE_DISPATCH && !in_gpsim;
}

static void
ignore_notice(void *arg, const PGresult *res)
{
}

static void
seg_error(SegConn *c, const char *sqlstate, const char *msg)
{
	if (c->has_error)
		return;
	c->has_error = true;
	strlcpy(c->sqlstate, sqlstate ? sqlstate : "08006", sizeof(c->sqlstate));
	strlcpy(c->errmsg, msg ? msg : "unknown error", sizeof(c->errmsg));
}

static PGconn *
connect_segment(const char *address, int port)
{
	const char *keys[8];
	const char *vals[8];
	char		portstr[16];
	char		options[64];
	PGconn	   *conn;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	TimestampTz deadline;

	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(options, sizeof(options), "-c gp_role=execute -c gp_session_id=%d", gp_session_id);
	keys[0] = "host";
	vals[0] = address;
	keys[1] = "port";
	vals[1] = portstr;
	keys[2] = "dbname";
	vals[2] = get_database_name(MyDatabaseId);
	keys[3] = "user";
	vals[3] = GetUserNameFromId(GetUserId(), false);
	keys[4] = "options";
	vals[4] = options;
	keys[5] = "application_name";
	vals[5] = "";
	keys[6] = "client_encoding";
	vals[6] = GetDatabaseEncodingName();
	keys[7] = NULL;
	vals[7] = NULL;

	conn = PQconnectStartParams(keys, vals, 0);
	if (conn == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), connect_timeout_s * 1000);
	PG_TRY();
	{
		while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK)
		{
			long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			int			ev = (st == PGRES_POLLING_READING) ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
			int			rc;

			if (remaining <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("failed to acquire resources on one or more segments"),
						 errdetail("timeout expired connecting to segment (%s:%d) after %d s",
								   address, port, connect_timeout_s)));
			rc = WaitLatchOrSocket(MyLatch, ev | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   PQsocket(conn), Min(remaining, 1000), WAIT_EVENT_GPSIM_DISPATCH);
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (rc & ev)
				st = PQconnectPoll(conn);
		}
		if (PQstatus(conn) == CONNECTION_BAD)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("failed to acquire resources on one or more segments"),
					 errdetail("%s (%s:%d)", pchomp(PQerrorMessage(conn)), address, port)));
	}
	PG_CATCH();
	{
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PQsetNoticeReceiver(conn, ignore_notice, NULL);
	return conn;
}

static SegConn *
get_conn(SegConn *pool, int *npool, const SegTarget *t)
{
	SegConn    *c = NULL;

	for (int i = 0; i < *npool; i++)
		if (pool[i].content == t->content)
			c = &pool[i];
	if (c == NULL)
	{
		if (*npool >= MAX_SEGS)
			elog(ERROR, "gpsim: too many segments");
		c = &pool[(*npool)++];
		memset(c, 0, sizeof(*c));
		c->content = t->content;
	}
	/* after a failover the content's primary lives on another port */
	if (c->conn && (c->port != t->port || PQstatus(c->conn) == CONNECTION_BAD) && !c->in_xact)
	{
		PQfinish(c->conn);
		c->conn = NULL;
	}
	c->fresh = (c->conn == NULL);
	if (c->conn == NULL)
	{
		c->port = t->port;
		strlcpy(c->address, t->address, sizeof(c->address));
		c->conn = connect_segment(t->address, t->port);
		c->in_xact = false;
		c->prepared = false;
		c->sent_gxid = 0;
	}
	c->busy = false;
	c->has_error = false;
	c->affected = 0;
	return c;
}

static void
drop_conn(SegConn *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
	c->in_xact = false;
	c->prepared = false;
	c->busy = false;
	c->sent_gxid = 0;
}

/* Bound parameters of a dispatched statement, as text (types are built-in or
 * left to the segment to infer). */
typedef struct SegParams
{
	int			n;
	Oid		   *types;
	const char **values;
} SegParams;

static SegParams *
params_as_text(ParamListInfo params)
{
	SegParams  *sp;

	if (params == NULL || params->numParams == 0)
		return NULL;
	sp = palloc0(sizeof(SegParams));
	sp->n = params->numParams;
	sp->types = palloc0(sizeof(Oid) * sp->n);
	sp->values = palloc0(sizeof(char *) * sp->n);
	for (int i = 0; i < sp->n; i++)
	{
		ParamExternData workspace;
		ParamExternData *prm = params->paramFetch
			? params->paramFetch(params, i + 1, false, &workspace)
			: &params->params[i];
		Oid			typoutput;
		bool		varlena;

		if (prm == NULL || !OidIsValid(prm->ptype))
			continue;
		sp->types[i] = prm->ptype < FirstNormalObjectId ? prm->ptype : InvalidOid;
		if (prm->isnull)
			continue;
		getTypeOutputInfo(prm->ptype, &typoutput, &varlena);
		sp->values[i] = OidOutputFunctionCall(typoutput, prm->value);
	}
	return sp;
}

static void
send_query_params(SegConn *c, const char *sql, const SegParams *sp)
{
	int			ok;

	c->has_error = false;
	c->affected = 0;
	if (sp)
		ok = PQsendQueryParams(c->conn, sql, sp->n, sp->types, sp->values, NULL, NULL, 0);
	else
		ok = PQsendQuery(c->conn, sql);
	if (!ok)
	{
		seg_error(c, "08006", pchomp(PQerrorMessage(c->conn)));
		c->busy = false;
		return;
	}
	c->busy = true;
}

static void
send_query(SegConn *c, const char *sql)
{
	send_query_params(c, sql, NULL);
}

static void
collect(SegConn *c, Tuplestorestate *ts, TupleDesc td)
{
	if (!PQconsumeInput(c->conn))
	{
		seg_error(c, "08006", pchomp(PQerrorMessage(c->conn)));
		c->busy = false;
		return;
	}
	while (c->busy && !PQisBusy(c->conn))
	{
		PGresult   *r = PQgetResult(c->conn);

		if (r == NULL)
		{
			c->busy = false;
			break;
		}
		switch (PQresultStatus(r))
		{
			case PGRES_TUPLES_OK:
				if (ts)
					for (int i = 0; i < PQntuples(r); i++)
					{
						Datum		v[1];
						bool		n[1];

						n[0] = PQgetisnull(r, i, 0);
						v[0] = n[0] ? (Datum) 0 : CStringGetTextDatum(PQgetvalue(r, i, 0));
						tuplestore_putvalues(ts, td, v, n);
					}
				break;
			case PGRES_COMMAND_OK:
				{
					const char *t = PQcmdTuples(r);

					if (t && *t)
						c->affected += strtoull(t, NULL, 10);
				}
				break;
			case PGRES_FATAL_ERROR:
				seg_error(c, PQresultErrorField(r, PG_DIAG_SQLSTATE),
						  PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
				break;
			default:
				break;
		}
		PQclear(r);
	}
}

/*
 * GP7's pg_cancel_backend(pid, msg) / pg_terminate_backend(pid, msg) show the
 * message to the client: a QD waiting for its segments (as GDD's victims do)
 * reports the message it was signalled with.
 */
static void
signal_with_message(void)
{
	char		msg[sizeof(my_slot->signal_msg)];

	if (my_slot == NULL || my_slot->signal_msg[0] == '\0')
		return;
	strlcpy(msg, my_slot->signal_msg, sizeof(msg));
	my_slot->signal_msg[0] = '\0';
	if (ProcDiePending)
	{
		ProcDiePending = false;
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("terminating connection due to administrator command: \"%s\"", msg)));
	}
	QueryCancelPending = false;
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling statement due to user request: \"%s\"", msg)));
}

/*
 * Wait until no connection in cs has results pending.  Returns false when
 * timeout_ms (>= 0) passed first.  WAIT_NORMAL lets cancel, statement_timeout
 * and termination in; WAIT_COMMIT ignores cancel like GP's syncrep wait;
 * WAIT_CLEANUP never throws (used from the abort callback).
 */
static bool
wait_conns(SegConn **cs, int n, WaitMode mode, int timeout_ms,
		   Tuplestorestate *ts, TupleDesc td)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz last_warning = 0;

	for (;;)
	{
		pgsocket	sock = PGINVALID_SOCKET;
		int			rc;

		for (int i = 0; i < n; i++)
			if (cs[i]->busy)
			{
				collect(cs[i], ts, td);
				if (cs[i]->busy && sock == PGINVALID_SOCKET)
					sock = PQsocket(cs[i]->conn);
			}
		if (sock == PGINVALID_SOCKET)
			return true;
		if (timeout_ms >= 0 &&
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms))
			return false;
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   sock, 100, WAIT_EVENT_GPSIM_DISPATCH);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (mode == WAIT_CLEANUP)
			continue;
		if (mode == WAIT_NORMAL && (QueryCancelPending || ProcDiePending))
			signal_with_message();
		if (mode == WAIT_COMMIT && QueryCancelPending)
		{
			QueryCancelPending = false;
			if (TimestampDifferenceExceeds(last_warning, GetCurrentTimestamp(), 2000))
			{
				ereport(WARNING,
						(errmsg("ignoring query cancel request for synchronous replication to ensure cluster consistency"),
						 errdetail("The transaction has already changed locally, it has to be replicated to standby.")));
				last_warning = GetCurrentTimestamp();
			}
		}
		CHECK_FOR_INTERRUPTS();
	}
}

static void
raise_first_error(SegConn **cs, int n)
{
	for (int i = 0; i < n; i++)
		if (cs[i]->has_error)
		{
			SegConn    *c = cs[i];
			const char *s = c->sqlstate;

			ereport(ERROR,
					(errcode(MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4])),
					 errmsg("%s  (seg%d %s:%d pid=%d)", c->errmsg, c->content,
							c->address, c->port, c->conn ? PQbackendPID(c->conn) : 0)));
		}
}

/* ------------------------------------------------------ gxid, targets */
static void
ensure_gxid(void)
{
	LOCKTAG		tag;

	if (current_gxid != 0)
		return;
	current_gxid = (int) pg_atomic_fetch_add_u32(&shared->next_gxid, 1);
	if (my_slot)
		my_slot->gxid = current_gxid;
	/* the coordinator's 'distributed xid' lock (gpsim.pg_locks renames it) */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, GPSIM_DXID_LOCK_KEY, current_gxid, 2);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Ask gpsim.dispatch_targets() where a statement goes (NIL: not distributed). */
static List *
lookup_targets(List *relids, const char *sql)
{
	List	   *result = NIL;
	Datum	   *elems;
	ArrayType  *arr;
	Oid			argtypes[2] = {OIDARRAYOID, TEXTOID};
	Datum		args[2];
	int			i = 0;
	ListCell   *lc;
	bool		save = in_gpsim;

	if (relids == NIL)
		return NIL;
	elems = palloc(sizeof(Datum) * list_length(relids));
	foreach(lc, relids)
		elems[i++] = ObjectIdGetDatum(lfirst_oid(lc));
	arr = construct_array(elems, i, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
	args[0] = PointerGetDatum(arr);
	args[1] = CStringGetTextDatum(sql);

	in_gpsim = true;
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "gpsim: SPI_connect failed");
		if (SPI_execute_with_args("SELECT content, address, port FROM gpsim.dispatch_targets($1, $2)",
								  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "gpsim: dispatch_targets failed");
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);
			SegTarget  *t = palloc0(sizeof(SegTarget));
			char	   *addr;

			MemoryContextSwitchTo(old);
			t->content = atoi(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
			addr = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
			strlcpy(t->address, addr ? addr : "127.0.0.1", sizeof(t->address));
			t->port = atoi(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3));
			old = MemoryContextSwitchTo(CurTransactionContext);
			result = lappend(result, t);
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		in_gpsim = save;
	}
	PG_END_TRY();
	return result;
}

static List *
all_primaries(void)
{
	return lookup_targets(list_make1_oid(InvalidOid), "");
}

/* Start (or join the gxid of) the remote transaction on a writer QE. */
static void
begin_remote(SegConn *c)
{
	char		prefix[160] = "";

	if (!c->in_xact)
		strlcat(prefix, "BEGIN ISOLATION LEVEL READ COMMITTED;", sizeof(prefix));
	if (current_gxid != 0 && c->sent_gxid != current_gxid)
	{
		char		set[64];

		snprintf(set, sizeof(set), "SET LOCAL gpsim.gxid = %d;", current_gxid);
		strlcat(prefix, set, sizeof(prefix));
	}
	c->in_xact = true;
	c->sent_gxid = current_gxid;
	if (prefix[0])
		send_query(c, prefix);
}

/*
 * A cached connection whose server went away since its last use (a restarted
 * segment, a terminated QE) fails at its first use: reconnect those that had no
 * remote transaction yet and send again, once, as GP recreates a lost gang.
 * Returns true when something was sent again.
 */
static bool
renew_stale(SegConn **cs, int n, List *targets, SegConn *pool, int *npool,
			bool was_in_xact[], const char *sql)
{
	bool		renewed = false;

	for (int i = 0; i < n; i++)
	{
		if (!cs[i]->has_error || cs[i]->fresh || was_in_xact[i])
			continue;
		/* connection failure, or the server ended the session (57P0x) */
		if (strncmp(cs[i]->sqlstate, "08", 2) != 0 && strncmp(cs[i]->sqlstate, "57P", 3) != 0 &&
			PQstatus(cs[i]->conn) != CONNECTION_BAD)
			continue;
		drop_conn(cs[i]);
		cs[i] = get_conn(pool, npool, list_nth(targets, i));
		if (sql)
			send_query(cs[i], sql);
		else
			begin_remote(cs[i]);
		renewed = true;
	}
	return renewed;
}

/* Send sql to each target's writer QE inside the distributed transaction. */
static uint64
dispatch(List *targets, const char *sql, const SegParams *params, bool need_gxid)
{
	SegConn    *cs[MAX_SEGS];
	bool		was_in_xact[MAX_SEGS];
	int			n = 0;
	uint64		total = 0;
	ListCell   *lc;

	if (need_gxid || IsTransactionBlock())
		ensure_gxid();
	foreach(lc, targets)
	{
		cs[n] = get_conn(writers, &nwriters, lfirst(lc));
		was_in_xact[n] = cs[n]->in_xact;
		n++;
	}
	for (int i = 0; i < n; i++)
		begin_remote(cs[i]);
	wait_conns(cs, n, WAIT_NORMAL, -1, NULL, NULL);
	if (renew_stale(cs, n, targets, writers, &nwriters, was_in_xact, NULL))
		wait_conns(cs, n, WAIT_NORMAL, -1, NULL, NULL);
	raise_first_error(cs, n);

	for (int i = 0; i < n; i++)
		send_query_params(cs[i], sql, params);
	wait_conns(cs, n, WAIT_NORMAL, -1, NULL, NULL);
	raise_first_error(cs, n);
	for (int i = 0; i < n; i++)
		total += cs[i]->affected;
	return total;
}

/* ----------------------------------------------------- transaction end */
static int
writers_in_xact(SegConn **cs)
{
	int			n = 0;

	for (int i = 0; i < nwriters; i++)
		if (writers[i].in_xact && writers[i].conn)
			cs[n++] = &writers[i];
	return n;
}

static void
send_all(SegConn **cs, int n, const char *sql)
{
	for (int i = 0; i < n; i++)
		send_query(cs[i], sql);
}

static void
remote_commit(void)
{
	SegConn    *cs[MAX_SEGS];
	int			n = writers_in_xact(cs);
	char		sql[96];

	if (n == 0)
		return;
	if ((n == 1 && !fault_skip_commit_prepared && !fault_suspend_commit_prepared) ||
		current_gxid == 0)
	{
		send_all(cs, n, "COMMIT");
		wait_conns(cs, n, WAIT_COMMIT, -1, NULL, NULL);
		for (int i = 0; i < n; i++)
			if (!cs[i]->has_error)
				cs[i]->in_xact = false;
		raise_first_error(cs, n);
		return;
	}
	/* two-phase commit, gid = the gxid as text (GP7 dtxFormGid) */
	snprintf(sql, sizeof(sql), "PREPARE TRANSACTION '%d'", current_gxid);
	send_all(cs, n, sql);
	wait_conns(cs, n, WAIT_COMMIT, -1, NULL, NULL);
	for (int i = 0; i < n; i++)
		if (!cs[i]->has_error)
			cs[i]->prepared = true;
	raise_first_error(cs, n);
	if (fault_skip_commit_prepared)
	{
		/* leave the prepared transactions behind, orphaned */
		for (int i = 0; i < n; i++)
			drop_conn(cs[i]);
		return;
	}
	if (fault_suspend_commit_prepared)
	{
		/*
		 * GP's 'dtm_broadcast_commit_prepared' suspend fault: prepared on the
		 * segments, in doubt there, the QD stuck before COMMIT PREPARED until
		 * gpsim.fault_resume(gxid); like GP's fault, it does not take a cancel.
		 */
		HOLD_CANCEL_INTERRUPTS();
		while (pg_atomic_read_u32(&shared->fault_resume_gxid) != (uint32) current_gxid)
		{
			pg_usleep(100000L);
			CHECK_FOR_INTERRUPTS();
		}
		RESUME_CANCEL_INTERRUPTS();
	}
	snprintf(sql, sizeof(sql), "COMMIT PREPARED '%d'", current_gxid);
	send_all(cs, n, sql);
	wait_conns(cs, n, WAIT_COMMIT, -1, NULL, NULL);
	for (int i = 0; i < n; i++)
	{
		if (cs[i]->has_error)
			ereport(WARNING,
					(errmsg("the distributed transaction 'Commit Prepared' broadcast failed to segment %d: %s",
							cs[i]->content, cs[i]->errmsg)));
		cs[i]->in_xact = false;
		cs[i]->prepared = false;
	}
}

static void
cancel_conn(SegConn *c)
{
	PGcancel   *cancel = PQgetCancel(c->conn);
	char		buf[256];

	if (cancel)
	{
		(void) PQcancel(cancel, buf, sizeof(buf));
		PQfreeCancel(cancel);
	}
}

/* Roll back every touched segment; never throws. */
static void
remote_abort(void)
{
	SegConn    *cs[MAX_SEGS];
	int			n;

	for (int i = 0; i < nreaders; i++)
		if (readers[i].busy)
			drop_conn(&readers[i]);
	n = writers_in_xact(cs);
	if (n == 0)
		return;
	if (proc_exit_inprogress || ProcDiePending)
	{
		/* a terminated QD just drops its gang, as in GP: QEs notice the
		 * closed connection (client_connection_check_interval) */
		for (int i = 0; i < n; i++)
			drop_conn(cs[i]);
		return;
	}
	for (int i = 0; i < n; i++)
		if (cs[i]->busy)
			cancel_conn(cs[i]);
	if (!wait_conns(cs, n, WAIT_CLEANUP, 5000, NULL, NULL))
	{
		for (int i = 0; i < n; i++)
			drop_conn(cs[i]);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		char		sql[96];

		if (cs[i]->prepared)
			snprintf(sql, sizeof(sql), "ROLLBACK PREPARED '%d'", current_gxid);
		else
			strlcpy(sql, "ROLLBACK", sizeof(sql));
		send_query(cs[i], sql);
	}
	if (!wait_conns(cs, n, WAIT_CLEANUP, 5000, NULL, NULL))
	{
		for (int i = 0; i < n; i++)
			drop_conn(cs[i]);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		if (cs[i]->has_error)
			drop_conn(cs[i]);
		cs[i]->in_xact = false;
		cs[i]->prepared = false;
	}
}

static void
reset_xact_state(void)
{
	if (my_slot)
		my_slot->signal_msg[0] = '\0';
	current_gxid = 0;
	if (my_slot && gp_role != GP_ROLE_EXECUTE)
		my_slot->gxid = 0;
	for (int i = 0; i < nwriters; i++)
	{
		writers[i].in_xact = false;
		writers[i].prepared = false;
		writers[i].sent_gxid = 0;
	}
	dispatched_query = NULL;
}

static void
gpsim_xact_callback(XactEvent event, void *arg)
{
	if (cancel_ignored && (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE ||
						   event == XACT_EVENT_ABORT))
	{
		pqsignal(SIGINT, StatementCancelHandler);
		cancel_ignored = false;
	}
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			remote_commit();
			break;
		case XACT_EVENT_PRE_PREPARE:
			{
				SegConn    *cs[MAX_SEGS];

				if (writers_in_xact(cs) > 0)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("PREPARE TRANSACTION is not supported for distributed transactions")));
				/* a QE remembers which session prepared what (pg_locks' mppsessionid) */
				if (shared && gp_role == GP_ROLE_EXECUTE && GetTopTransactionIdIfAny() != InvalidTransactionId)
				{
					uint32		k = pg_atomic_fetch_add_u32(&shared->next_prepared, 1) % PREPARED_RING;

					shared->prepared[k].xid = GetTopTransactionIdIfAny();
					shared->prepared[k].sess_id = gp_session_id;
				}
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			remote_abort();
			reset_xact_state();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			reset_xact_state();
			break;
	}
}

/* -------------------------------------------------------------- hooks */
static const char *
statement_text(const char *source, int location, int len)
{
	if (source == NULL)
		return NULL;
	if (location < 0)
		location = 0;
	if (len <= 0)
		return pstrdup(source + location);
	return pnstrdup(source + location, len);
}

static List *
user_relids(List *rtable)
{
	List	   *relids = NIL;
	ListCell   *lc;

	foreach(lc, rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_RELATION && rte->relkind == RELKIND_RELATION &&
			rte->relid >= FirstNormalObjectId)
			relids = list_append_unique_oid(relids, rte->relid);
	}
	return relids;
}

static void
gpsim_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	if (gp_role == GP_ROLE_EXECUTE && debug_query_string)
		strlcpy(qe_last_query, debug_query_string, sizeof(qe_last_query));

	if (is_dispatcher() && !(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		PlannedStmt *ps = queryDesc->plannedstmt;
		List	   *relids = user_relids(ps->rtable);
		const char *sql;
		List	   *targets;

		if (relids == NIL)
			return;
		sql = statement_text(queryDesc->sourceText, ps->stmt_location, ps->stmt_len);
		targets = lookup_targets(relids, sql);
		if (targets == NIL)
			return;
		dispatched_rows = dispatch(targets, sql, params_as_text(queryDesc->params),
								   ps->commandType != CMD_SELECT || ps->rowMarks != NIL);
		dispatched_query = queryDesc;
	}
}

static void
gpsim_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				   bool execute_once)
{
	/* a dispatched write ran on the segments; the coordinator's table only
	 * holds the catalog entry, as in GP */
	if (dispatched_query == queryDesc && queryDesc->operation != CMD_SELECT)
	{
		queryDesc->estate->es_processed = dispatched_rows;
		return;
	}
	if (prev_executor_run)
		prev_executor_run(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}

static void
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

static void
ignore_cancel(SIGNAL_ARGS)
{
	int			save_errno = errno;

	SetLatch(MyLatch);
	errno = save_errno;
}

static void
gpsim_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	List	   *targets = NIL;
	const char *sql = NULL;

	/*
	 * A QE committing for its QD runs GP's dtx protocol, not a query: GP shows
	 * it 'idle in transaction' with the last statement (e.g. while it waits in
	 * SyncRep), so report that instead of COMMIT / PREPARE TRANSACTION.
	 */
	if (gp_role == GP_ROLE_EXECUTE && IsA(pstmt->utilityStmt, TransactionStmt))
	{
		TransactionStmtKind kind = ((TransactionStmt *) pstmt->utilityStmt)->kind;

		if (kind == TRANS_STMT_COMMIT || kind == TRANS_STMT_PREPARE ||
			kind == TRANS_STMT_COMMIT_PREPARED)
		{
			if (qe_last_query[0])
				pgstat_report_activity(STATE_IDLEINTRANSACTION, qe_last_query);
			/*
			 * GP ignores a cancel while a commit waits for its mirror
			 * (syncrep.c); the wait comes when the transaction ends, the
			 * handler is restored by the transaction callback.
			 */
			pqsignal(SIGINT, ignore_cancel);
			cancel_ignored = true;
		}
	}
	else if (gp_role == GP_ROLE_EXECUTE && IsA(pstmt->utilityStmt, LockStmt) && debug_query_string)
		strlcpy(qe_last_query, debug_query_string, sizeof(qe_last_query));

	/* LOCK on a distributed table: the gxid first (GP shows it while the LOCK
	 * waits on the coordinator), then the coordinator's lock, then segments */
	if (is_dispatcher() && IsA(pstmt->utilityStmt, LockStmt) && IsTransactionBlock())
	{
		LockStmt   *ls = (LockStmt *) pstmt->utilityStmt;
		List	   *relids = NIL;
		ListCell   *lc;

		sql = statement_text(queryString, pstmt->stmt_location, pstmt->stmt_len);
		foreach(lc, ls->relations)
		{
			Oid			relid = RangeVarGetRelid((RangeVar *) lfirst(lc), NoLock, true);

			if (OidIsValid(relid))
				relids = lappend_oid(relids, relid);
		}
		targets = lookup_targets(relids, sql);
		if (targets != NIL)
			ensure_gxid();
	}
	run_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if (targets != NIL)
		dispatch(targets, sql, NULL, true);
}

/* ------------------------------------------------------ SQL functions */
PG_FUNCTION_INFO_V1(gpsim_fault_resume);

/* gpsim.fault_resume(gxid): release a QD suspended by fault_suspend_commit_prepared */
Datum
gpsim_fault_resume(PG_FUNCTION_ARGS)
{
	if (shared)
		pg_atomic_write_u32(&shared->fault_resume_gxid, (uint32) PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(gpsim_cancel_backend_msg);
PG_FUNCTION_INFO_V1(gpsim_terminate_backend_msg);

static void
note_signal_msg(int pid, text *msg)
{
	if (shared == NULL)
		return;
	for (int i = 1; i <= MaxBackends; i++)
		if (shared->slots[i].pid == pid)
			text_to_cstring_buffer(msg, shared->slots[i].signal_msg,
								   sizeof(shared->slots[i].signal_msg));
}

/* pg_cancel_backend(pid int4, msg text) of GP7 (pg_proc.dat oid 7155) */
Datum
gpsim_cancel_backend_msg(PG_FUNCTION_ARGS)
{
	note_signal_msg(PG_GETARG_INT32(0), PG_GETARG_TEXT_PP(1));
	return DirectFunctionCall1(pg_cancel_backend, PG_GETARG_DATUM(0));
}

/* pg_terminate_backend(pid int4, msg text) of GP7 (pg_proc.dat oid 7154) */
Datum
gpsim_terminate_backend_msg(PG_FUNCTION_ARGS)
{
	note_signal_msg(PG_GETARG_INT32(0), PG_GETARG_TEXT_PP(1));
	return DirectFunctionCall2(pg_terminate_backend, PG_GETARG_DATUM(0), Int64GetDatum(0));
}

PG_FUNCTION_INFO_V1(gpsim_backend_sessions);
PG_FUNCTION_INFO_V1(gpsim_prepared_sessions);
PG_FUNCTION_INFO_V1(gpsim_gather);
PG_FUNCTION_INFO_V1(gpsim_distributed_xid);

/* (pid, sess_id, gxid, is_writer) of every registered backend */
Datum
gpsim_backend_sessions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();
	for (int i = 1; i <= MaxBackends; i++)
	{
		GpsimSlot	s = shared->slots[i];
		Datum		v[4];
		bool		n[4] = {false, false, false, false};

		if (s.pid == 0)
			continue;
		v[0] = Int32GetDatum(s.pid);
		v[1] = Int32GetDatum(s.sess_id);
		v[2] = Int64GetDatum((int64) s.gxid);
		v[3] = BoolGetDatum(s.is_writer);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	PG_RETURN_VOID();
}

/* (xid, sess_id) of transactions prepared by QEs on this node */
Datum
gpsim_prepared_sessions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();
	for (int i = 0; i < PREPARED_RING; i++)
	{
		GpsimPrepared p = shared->prepared[i];
		Datum		v[2];
		bool		n[2] = {false, false};

		if (!TransactionIdIsValid(p.xid))
			continue;
		v[0] = TransactionIdGetDatum(p.xid);
		v[1] = Int32GetDatum(p.sess_id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	PG_RETURN_VOID();
}

/* gp_distributed_xid(): the current gxid (0 when none yet) */
Datum
gpsim_distributed_xid(PG_FUNCTION_ARGS)
{
	PG_RETURN_TRANSACTIONID((TransactionId) (node_contentid == -1 ? current_gxid : qe_gxid));
}

/*
 * gpsim.gather(sql): on the coordinator in dispatch mode, the rows (one text
 * column) of sql run on every primary; elsewhere nothing.  Fails like a GP
 * dispatch when a primary cannot be reached or does not answer within
 * gpsim.gather_timeout seconds.
 */
Datum
gpsim_gather(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SegConn    *cs[MAX_SEGS];
	bool		was_in_xact[MAX_SEGS];
	int			n = 0;
	bool		ok;
	List	   *targets;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (!is_dispatcher())
		PG_RETURN_VOID();
	targets = all_primaries();
	foreach(lc, targets)
	{
		was_in_xact[n] = false;
		cs[n++] = get_conn(readers, &nreaders, lfirst(lc));
	}
	send_all(cs, n, sql);
	ok = wait_conns(cs, n, WAIT_NORMAL, gather_timeout_s * 1000, rsinfo->setResult, rsinfo->setDesc);
	if (ok && renew_stale(cs, n, targets, readers, &nreaders, was_in_xact, sql))
		ok = wait_conns(cs, n, WAIT_NORMAL, gather_timeout_s * 1000, rsinfo->setResult, rsinfo->setDesc);
	if (!ok)
	{
		for (int i = 0; i < n; i++)
			if (cs[i]->busy)
			{
				int			content = cs[i]->content;
				int			port = cs[i]->port;
				char		addr[64];

				strlcpy(addr, cs[i]->address, sizeof(addr));
				for (int j = 0; j < n; j++)
					if (cs[j]->busy)
						drop_conn(cs[j]);
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("segment seg%d (%s:%d) did not answer within %d s",
								content, addr, port, gather_timeout_s)));
			}
	}
	for (int i = 0; i < n; i++)
		if (cs[i]->has_error && strncmp(cs[i]->sqlstate, "08", 2) == 0)
			drop_conn(cs[i]);
	raise_first_error(cs, n);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------- init */
void
_PG_init(void)
{
	char		buf[32];

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("gpsim.contentid", "Content id of this node (-1 = coordinator).",
							NULL, &node_contentid, -1, -1, 1000, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gpsim.dbid", "dbid of this node.",
							NULL, &node_dbid, 1, 1, 10000, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gp_contentid", "Content id of this node (-1 = coordinator).",
							NULL, &gp_contentid, node_contentid, -1, 1000, PGC_INTERNAL, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gp_dbid", "dbid of this node.",
							NULL, &gp_dbid, node_dbid, 1, 10000, PGC_INTERNAL, 0,
							NULL, NULL, NULL);
	snprintf(buf, sizeof(buf), "%d", node_contentid);
	SetConfigOption("gp_contentid", buf, PGC_INTERNAL, PGC_S_OVERRIDE);
	snprintf(buf, sizeof(buf), "%d", node_dbid);
	SetConfigOption("gp_dbid", buf, PGC_INTERNAL, PGC_S_OVERRIDE);

	DefineCustomEnumVariable("gp_role", "Role of this session: dispatch, utility or execute.",
							 NULL, &gp_role, GP_ROLE_DISPATCH, gp_role_options,
							 PGC_BACKEND, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("gp_session_role", "Alias of gp_role (Greenplum 6 name).",
							 NULL, &gp_role, GP_ROLE_DISPATCH, gp_role_options,
							 PGC_BACKEND, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("gp_session_id", "Global session id of this session.",
							NULL, &gp_session_id, -1, -1, INT_MAX, PGC_BACKEND, 0,
							NULL, assign_session_id, NULL);
	DefineCustomStringVariable("gp_server_version", "Greenplum version (sandbox).",
							   NULL, &gp_server_version, "7.0.0-sandbox build gpsandbox",
							   PGC_INTERNAL, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("gp_server_version_num", "Greenplum version number (sandbox).",
							NULL, &gp_server_version_num, 70000, 0, INT_MAX, PGC_INTERNAL, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gpsim.gxid", "gxid of the distributed transaction a QE works for.",
							NULL, &qe_gxid, 0, 0, INT_MAX, PGC_USERSET, 0,
							NULL, assign_qe_gxid, NULL);
	DefineCustomIntVariable("gpsim.connect_timeout", "Seconds to connect to a segment.",
							NULL, &connect_timeout_s, 2, 1, 3600, PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gpsim.gather_timeout", "Seconds a dispatched catalog view waits for each segment.",
							NULL, &gather_timeout_s, 10, 1, 3600, PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("gpsim.fault_suspend_commit_prepared",
							 "Fault injection: PREPARE on segments, then wait for gpsim.fault_resume(gxid).",
							 NULL, &fault_suspend_commit_prepared, false, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("gpsim.fault_skip_commit_prepared",
							 "Fault injection: PREPARE on segments, then drop them without COMMIT PREPARED.",
							 NULL, &fault_skip_commit_prepared, false, PGC_USERSET, 0,
							 NULL, NULL, NULL);

	for (int i = 0; i < lengthof(fts_gucs); i++)
	{
		DefineCustomRealVariable(fts_gucs[i].sim_name, "Setting of the sandbox's FTS process.",
								 NULL, &fts_gucs[i].value, fts_gucs[i].value, 0, 100000,
								 PGC_SIGHUP, 0, NULL, NULL, NULL);
		DefineCustomIntVariable(fts_gucs[i].gp_name, "FTS setting (the sandbox FTS process's).",
								NULL, &fts_gucs[i].gp_dummy, fts_gucs[i].gp_dummy, 0, INT_MAX,
								PGC_SIGHUP, i == 2 ? 0 : GUC_UNIT_S, NULL, NULL, fts_show_hooks[i]);
	}
	DefineCustomBoolVariable("gp_enable_global_deadlock_detector",
							 "Greenplum's global deadlock detector (the sandbox has none).",
							 NULL, &gp_enable_gdd, false, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("gp_global_deadlock_detector_period", "GDD period (unused).",
							NULL, &gp_gdd_period, 120, 5, INT_MAX, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gp_fts_replication_attempt_count", "FTS setting (unused).",
							NULL, &gp_fts_replication_attempt_count, 10, 0, 100, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gp_dtx_recovery_interval", "dtx recovery setting (unused).",
							NULL, &gp_dtx_recovery_interval, 60, 5, 3600, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("gp_dtx_recovery_prepared_period", "dtx recovery setting (unused).",
							NULL, &gp_dtx_recovery_prepared_period, 120, 0, 3600, PGC_SIGHUP,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("gp_resource_manager", "Resource manager (the sandbox has none).",
							   NULL, &gp_resource_manager, "none", PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = gpsim_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = gpsim_shmem_startup;
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = gpsim_client_auth;
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = gpsim_executor_start;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = gpsim_executor_run;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = gpsim_process_utility;
	RegisterXactCallback(gpsim_xact_callback, NULL);
}
