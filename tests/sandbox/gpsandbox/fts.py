"""The sandbox's FTS (fault tolerance service), a Python process on the coordinator
host playing Greenplum 7's ftsprobe with its rules
(docs/greenplum-internals.md#segment-configuration-and-fts, ``ftsprobe.c``
processResponse, ``ftsmessagehandler.c``):

- it probes only primaries that have a mirror, each probe bounded by
  ``probe_timeout`` and retried ``probe_retries`` times ``retry_interval`` apart;
- a mirror that does not stream is marked down (mirror 'd', both members 'n',
  one gp_configuration_history row per member) only after
  ``mirror_down_grace_period`` counted from the walsender disconnect (the primary
  asks for retries inside it, and nothing changes); then it switches the
  primary's sync replication off (GP7: ALTER SYSTEM SET
  synchronous_standby_names = '' + reload in utility mode; GP6:
  gp_replication.conf + reload);
- once the mirror streams again it sets '*' back and marks the pair 'u'/'s';
- a primary that does not answer is failed over to its in-sync mirror
  (pg_ctl promote, roles flipped in the catalog, old primary 'd'); a mirror not
  in sync gives a "double fault" warning and nothing else;
- ``gp_request_fts_probe_scan()`` returns once a whole cycle that started after
  the call has finished (sequences gpsim.fts_probe_request / fts_probe_done);
- it can be paused (flag file): no new cycle starts, as when FTS has not acted.

Started and controlled by FtsControl (``main([_, BASE_DIR])`` runs the loop).
"""
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg

HOST = "127.0.0.1"
# GP's ftsprobe is a background process that pg_stat_activity does not list; the
# gpsim views hide this process's connections the same way
APPLICATION_NAME = "gpsandbox_fts"
HISTORY = "FTS: update role, status, and mode for dbid %d with contentid %d to %s, %s, and %s"
OBSERVE_EVERY = 0.5


def _bounded(fn, timeout):
    """fn() in a daemon thread; TimeoutError when it has not returned after timeout
    seconds (a SIGSTOPped node never answers, not even a cancel request)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError("no answer within %.1f s" % timeout)
    if "error" in box:
        raise box["error"]
    return box["value"]


class FtsControl:
    """Start/stop/pause/resume the FTS process of a sandbox."""

    def __init__(self, sandbox):
        self.sb = sandbox

    def _p(self, name):
        return os.path.join(self.sb.base_dir, name)

    def pid(self):
        try:
            with open(self._p("fts.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            with open("/proc/%d/cmdline" % pid) as f:
                if "gpsandbox.fts" not in f.read():
                    return None
            return pid
        except (OSError, ValueError):
            return None

    def start(self, settings=None):
        """Start the FTS process (settings override the state file's)."""
        if self.pid():
            return
        if settings:
            st = self.sb.state()
            st["fts"] = dict(st["fts"], **settings)
            self.sb._write_state(st)
            self.sb.write_fts_conf()
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(self._p("fts.log"), "a") as log:
            proc = subprocess.Popen([sys.executable, "-c", "import sys; from gpsandbox.fts import main; "
                                     "main(sys.argv)", self.sb.base_dir],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    start_new_session=True, close_fds=True)
        with open(self._p("fts.pid"), "w") as f:
            f.write(str(proc.pid))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._status_file().get("pid") != proc.pid:
            time.sleep(0.05)

    def ensure_running(self):
        if not self.pid():
            self.start()

    def stop(self):
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def _status_file(self):
        try:
            with open(self._p("fts.status.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def pause(self, timeout=30):
        """No new probe cycle starts after this returns (a cycle under way finishes
        first)."""
        open(self._p("fts.paused"), "w").close()
        deadline = time.monotonic() + timeout
        while self.pid() and time.monotonic() < deadline:
            if self._status_file().get("paused"):
                return
            time.sleep(0.05)

    def resume(self):
        """Let FTS probe again."""
        try:
            os.unlink(self._p("fts.paused"))
        except FileNotFoundError:
            pass

    def status(self):
        """{running, pid, paused, cycles, last_cycle_end, settings}"""
        st = self.sb.state() or {}
        info = self._status_file()
        return dict(running=self.pid() is not None, pid=self.pid(),
                    paused=os.path.exists(self._p("fts.paused")),
                    cycles=info.get("cycles", 0), last_cycle_end=info.get("last_cycle_end"),
                    settings=st.get("fts", {}))


class Prober:
    """The FTS loop (one per sandbox)."""

    def __init__(self, base_dir):
        from .cluster import Sandbox
        self.base_dir = base_dir
        with open(os.path.join(base_dir, "sandbox.json")) as f:
            state = json.load(f)
        self.sb = Sandbox(base_dir, state["base_port"], state["pg_bin"])
        self.cfg = state["fts"]
        self.replication_conf = state["replication_conf"]
        self.coordinator = None
        self.observers = {}          # port -> connection
        self.last_streaming = {}     # content -> time the primary last had a streaming mirror
        self.disconnected_at = {}    # content -> walsender disconnect time (None: streaming)
        self.cycles = 0
        self.last_cycle_end = None
        self.stopping = False
        self.log = logging.getLogger("fts")

    # ----------------------------------------------------------- connections
    def _connect(self, port, timeout):
        return psycopg.connect(host=HOST, port=port, user="gpadmin", dbname="postgres",
                               options="-c gp_role=utility", autocommit=True,
                               application_name=APPLICATION_NAME,
                               connect_timeout=max(1, int(round(timeout))))

    def coord(self):
        if self.coordinator is None or self.coordinator.closed:
            self.coordinator = self._connect(self.sb.base_port, 5)
        return self.coordinator

    def catalog(self):
        cur = self.coord().execute(
            "SELECT dbid, content, role, preferred_role, mode, status, port, datadir "
            "FROM gpsim.gp_segment_configuration WHERE content >= 0 ORDER BY content, role DESC")
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def pairs(self):
        rows = self.catalog()
        out = []
        for c in sorted({r["content"] for r in rows}):
            p = [r for r in rows if r["content"] == c and r["role"] == "p"]
            m = [r for r in rows if r["content"] == c and r["role"] == "m"]
            if p and m:
                out.append((p[0], m[0]))
        return out

    # ------------------------------------------------------------ observing
    def observe(self, pairs):
        """What the primary itself knows: when its walsender to the mirror went
        away (GP's grace period counts from there)."""
        now = time.time()
        for p, _ in pairs:
            c = p["content"]
            try:
                state = _bounded(lambda: self._observe_one(p["port"]), 2.5)
            except TimeoutError:
                self.observers.pop(p["port"], None)  # abandoned to its blocked thread
                continue
            except psycopg.Error:
                self._drop_observer(p["port"])
                continue
            if state in ("streaming", "catchup"):
                self.last_streaming[c] = now
                self.disconnected_at[c] = None
            elif self.disconnected_at.get(c) is None:
                self.disconnected_at[c] = self.last_streaming.get(c, now)

    def _observe_one(self, port):
        conn = self.observers.get(port)
        if conn is None or conn.closed:
            conn = self.observers[port] = self._connect(port, 1)
        row = conn.execute("SELECT state FROM pg_catalog.pg_stat_replication WHERE "
                           "application_name = 'gp_walreceiver' ORDER BY backend_start "
                           "DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def _drop_observer(self, port):
        conn = self.observers.pop(port, None)
        if conn is not None:
            conn.close()

    # --------------------------------------------------------------- probing
    def probe(self, primary):
        """One probe of a primary: dict(state, syncrep, start) or None (no answer)."""
        def once():
            with self._connect(primary["port"], self.cfg["probe_timeout"]) as conn:
                row = conn.execute(
                    "SELECT (SELECT state FROM pg_catalog.pg_stat_replication WHERE "
                    "application_name = 'gp_walreceiver' ORDER BY backend_start DESC LIMIT 1), "
                    "current_setting('synchronous_standby_names'), "
                    "extract(epoch FROM pg_postmaster_start_time())").fetchone()
            return dict(state=row[0], syncrep=row[1] != "", start=float(row[2]))

        for attempt in range(int(self.cfg["probe_retries"]) + 1):
            try:
                return _bounded(once, self.cfg["probe_timeout"])
            except (psycopg.Error, TimeoutError) as exc:
                self.log.info("probe of content %d (port %d) failed, attempt %d: %s",
                              primary["content"], primary["port"], attempt + 1, str(exc).strip())
                time.sleep(self.cfg["retry_interval"])
        return None

    def update(self, changes):
        """Write (row, role, status, mode) changes + history in one transaction."""
        with self.coord().transaction():
            for row, role, status, mode in changes:
                self.coord().execute(
                    "UPDATE gpsim.gp_segment_configuration SET role = %s, status = %s, mode = %s "
                    "WHERE dbid = %s", (role, status, mode, row["dbid"]))
                self.coord().execute(
                    "INSERT INTO gpsim.gp_configuration_history VALUES (clock_timestamp(), %s, %s)",
                    (row["dbid"], HISTORY % (row["dbid"], row["content"], role, status, mode)))
                self.log.info(HISTORY, row["dbid"], row["content"], role, status, mode)

    def set_syncrep(self, primary, value):
        self.log.info("setting synchronous_standby_names to '%s' on content %d (port %d)",
                      value, primary["content"], primary["port"])
        self.sb.set_syncrep(primary["port"], value, self.replication_conf)

    def process_pair(self, p, m):
        c = p["content"]
        result = self.probe(p)
        retries = int(self.cfg["probe_retries"])
        while result is not None and result["state"] not in ("streaming", "catchup") and retries > 0:
            since = max(self.disconnected_at.get(c) or time.time(), result["start"])
            if time.time() - since >= self.cfg["mirror_down_grace_period"]:
                break
            # inside the grace period the primary requests a retry
            retries -= 1
            time.sleep(self.cfg["retry_interval"])
            self.observe([(p, m)])
            result = self.probe(p)
        if result is None:
            self.failover(p, m)
            return
        alive = result["state"] in ("streaming", "catchup")
        in_sync = result["state"] == "streaming"
        if not alive:
            since = max(self.disconnected_at.get(c) or time.time(), result["start"])
            if time.time() - since < self.cfg["mirror_down_grace_period"]:
                self.log.info("FTS skipping mirror down update for (content=%d) as retryRequested", c)
                return
            if m["status"] == "u" or p["mode"] == "s":
                self.update([(p, "p", "u", "n"), (m, "m", "d", "n")])
            if result["syncrep"]:
                try:
                    self.set_syncrep(p, "")
                except (psycopg.Error, OSError) as exc:
                    self.log.warning("FTS failed to turn off syncrep on (content=%d, dbid=%d): %s",
                                     c, p["dbid"], exc)
            return
        if in_sync and not result["syncrep"]:
            self.set_syncrep(p, "*")
        if in_sync and (m["status"] != "u" or m["mode"] != "s" or p["mode"] != "s"):
            self.update([(p, "p", "u", "s"), (m, "m", "u", "s")])

    def failover(self, p, m):
        c = p["content"]
        if m["status"] != "u" or m["mode"] != "s":
            self.log.warning("FTS double fault detected (content=%d) primary dbid=%d, mirror dbid=%d",
                             c, p["dbid"], m["dbid"])
            return
        self.log.info("promoting mirror dbid %d of content %d", m["dbid"], c)
        self.sb._run([os.path.join(self.sb.state()["pg_bin"], "pg_ctl"), "-D", m["datadir"],
                      "-w", "-t", "60", "promote"], check=False)
        self.update([(p, "m", "d", "n"), (m, "p", "u", "n")])
        try:
            # GP's promote handler turns sync replication off on the new primary
            self.sb.set_syncrep(m["port"], "", self.replication_conf)
        except (psycopg.Error, OSError) as exc:
            self.log.warning("could not turn syncrep off on promoted dbid %d: %s", m["dbid"], exc)
        self.disconnected_at.pop(c, None)
        self.last_streaming.pop(c, None)

    def cycle(self):
        pairs = self.pairs()
        if not pairs:
            self.log.debug("skipping FTS probes due to no mirrors")
        for p, m in pairs:
            try:
                self.process_pair(p, m)
            except (psycopg.Error, OSError) as exc:
                self.log.warning("FTS probe of content %d failed: %s", p["content"], exc)

    # ------------------------------------------------------------------ loop
    def write_status(self, paused):
        path = os.path.join(self.base_dir, "fts.status.json")
        with open(path + ".tmp", "w") as f:
            json.dump(dict(pid=os.getpid(), paused=paused, cycles=self.cycles,
                           last_cycle_end=self.last_cycle_end), f)
        os.replace(path + ".tmp", path)

    def requested(self):
        row = self.coord().execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM gpsim.fts_probe_request"
        ).fetchone()
        return row[0]

    def run(self):
        signal.signal(signal.SIGTERM, lambda *a: setattr(self, "stopping", True))
        next_cycle = 0.0
        next_observe = 0.0
        done = None
        paused = None
        while not self.stopping:
            try:
                now_paused = os.path.exists(os.path.join(self.base_dir, "fts.paused"))
                if now_paused != paused:
                    paused = now_paused
                    self.write_status(paused)
                    self.log.info("FTS %s", "paused" if paused else "running")
                now = time.monotonic()
                if now >= next_observe:
                    self.observe(self.pairs())
                    next_observe = now + OBSERVE_EVERY
                if not paused:
                    request = self.requested()
                    if done is None:
                        done = request
                    if request > done or now >= next_cycle:
                        self.cycle()
                        self.coord().execute("SELECT setval('gpsim.fts_probe_done', %s, true)",
                                             (request,))
                        done = request
                        self.cycles += 1
                        self.last_cycle_end = time.time()
                        self.write_status(paused)
                        next_cycle = time.monotonic() + self.cfg["probe_interval"]
            except psycopg.Error as exc:
                self.log.warning("FTS loop: %s", str(exc).strip())
                if self.coordinator is not None:
                    self.coordinator.close()
                self.coordinator = None
                time.sleep(0.5)
            time.sleep(0.05)


def main(argv):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s fts[%(process)d] %(levelname)s %(message)s")
    Prober(argv[1]).run()


if __name__ == "__main__":
    main(sys.argv)
