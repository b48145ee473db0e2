"""What the end-to-end benchmarks share (bench/deadlock_e2e.py, bench/mirror_failure.py,
bench/gp7_load.py): the import paths of the test helpers, the real Greenplum 7 cluster of
the tests, Ansible runs measured from outside, and results files that keep the figures
of every target side by side.

- ``gp7_cluster()``: context manager yielding the running, healthy real Greenplum 7
  cluster of ``GPOPS_GP7_DIR`` / ``GPOPS_GP7_PORT`` (tests/gp7/gpcluster.py), held
  with the lock the tests take (tests/session_lock.py), restored to healthy on exit.
- ``ansible_playbook(playbook, extra_vars, env, check)``: run ``ansible-playbook`` on
  localhost in a measuring wrapper process; returns a ``Run`` (rc, stdout, wall s,
  user/sys CPU s and peak RSS MiB of the whole process tree below the wrapper).
- ``Results(name)``: ``bench/results-<name>.json``, one entry per target (``sandbox``,
  ``gp7``), so that running one target keeps the other's figures; ``cell(values)``
  renders ``median (min-max, n runs)``.
"""
import collections
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
COLLECTIONS = os.path.join(ROOT, ".collections")
for _path in (os.path.join(ROOT, "tests", "gp7"), os.path.join(ROOT, "tests"),
              os.path.join(ROOT, "tests", "integration"), os.path.join(ROOT, "tests", "sandbox"), COLLECTIONS):
    if _path not in sys.path:
        sys.path.insert(0, _path)
_LINK = os.path.join(COLLECTIONS, "ansible_collections", "gpops", "greenplum")
if not os.path.exists(_LINK):  # as tests/conftest.py: the repository is the collection
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    os.symlink("../../..", _LINK)

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
Run = collections.namedtuple("Run", "rc stdout wall_s user_s sys_s maxrss_mib")


def machine():
    """``host (arch, N cores), YYYY-MM-DD HH:MM UTC, load average L``."""
    return "%s (%s, %d cores), %s UTC, load average %.1f" % (
        platform.node(), platform.machine(), os.cpu_count(),
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0])


@contextlib.contextmanager
def gp7_cluster():
    """The real Greenplum 7 cluster of the tests, started if needed, healthy, used by
    this process alone (the tests' lock; waits up to 30 min for a test session), and
    restored to healthy (tests/gp7/gpcluster.py ``restore``) on exit."""
    import session_lock
    from gpcluster import GP7Cluster
    gp = GP7Cluster.from_env()
    with session_lock.exclusive(gp.base_dir, 1800, "Greenplum cluster", "GPOPS_GP7_DIR / GPOPS_GP7_PORT"):
        gp.ensure_running()
        gp.restore()
        try:
            yield gp
        finally:
            gp.restore()


def _clean_env(pg_env):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGOPTIONS"):
        env.pop(var, None)
    env.update(pg_env or {})
    return env


def measured(cmd, env, timeout=900):
    """Run ``cmd`` in a wrapper process of its own (this file, ``--rusage``), so that the
    CPU and peak RSS are those of this command's process tree alone; returns a ``Run``.
    ``maxrss_mib``: the largest resident set of any single process of the tree
    (``RUSAGE_CHILDREN``), not their sum."""
    with tempfile.NamedTemporaryFile(prefix="gpops-rusage-", suffix=".json") as out:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--rusage", out.name, "--"] + cmd,
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        try:
            usage = json.load(open(out.name))
        except ValueError:
            raise RuntimeError("the measuring wrapper failed: %s" % proc.stderr[-2000:])
    return Run(usage["rc"], proc.stdout + proc.stderr, usage["wall_s"], usage["user_s"], usage["sys_s"],
               usage["maxrss_kib"] / 1024.0)


def ansible_playbook(playbook, extra_vars=None, pg_env=None, check=False, timeout=900):
    """``ansible-playbook`` on localhost (the one cluster host, group ``greenplum``),
    the connection from ``pg_env`` (``PG*`` variables), measured (``measured``)."""
    with tempfile.TemporaryDirectory(prefix="gpops-bench-") as tmp:
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as f:
            f.write("[greenplum]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                    % sys.executable)
        cmd = [ANSIBLE_PLAYBOOK, "-i", inventory, "-e", json.dumps(extra_vars or {}), playbook]
        return measured(cmd + (["--check"] if check else []), _clean_env(pg_env), timeout)


def cell(values, fmt="%.2f"):
    """``median (min-max, n runs)``; ``-`` when there are none."""
    if not values:
        return "-"
    med = fmt % statistics.median(values)
    if len(values) == 1:
        return "%s (1 run)" % med
    return "%s (%s-%s, %d runs)" % (med, fmt % min(values), fmt % max(values), len(values))


class Results:
    """``bench/results-<name>.json``: ``{target: {"when": machine(), "rows": {key: [seconds]}, ...}}``."""

    def __init__(self, name):
        self.path = os.path.join(BENCH, "results-%s.json" % name)
        try:
            with open(self.path) as f:
                self.data = json.load(f)
        except (OSError, ValueError):
            self.data = {}

    def put(self, target, rows, **meta):
        self.data[target] = dict(meta, when=machine(), rows=rows)
        with open(self.path, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.write("\n")

    def rows(self, target):
        return self.data.get(target, {}).get("rows", {})

    def when(self, target):
        return self.data.get(target, {}).get("when", "not measured yet")


def _rusage_main(argv):
    out, cmd = argv[0], argv[2:]
    started = time.monotonic()
    rc = subprocess.call(cmd)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump({"rc": rc, "wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                   "maxrss_kib": usage.ru_maxrss}, f)


if __name__ == "__main__" and sys.argv[1:2] == ["--rusage"]:
    _rusage_main(sys.argv[2:])
