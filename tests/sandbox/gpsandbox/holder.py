"""Background holders of scenarios injected from the command line (the demo):
each runs in its own process that keeps the sessions open; its pid and sessions
are in ``<base-dir>/scenarios/<name>.json``. ``release`` (and ``stop``) end them
with SIGTERM, which makes the holder clean its scenario up."""
import json
import os
import signal
import subprocess
import sys
import time


def _dir(sb):
    return os.path.join(sb.base_dir, "scenarios")


def report_path(sb, name):
    return os.path.join(_dir(sb), name + ".json")


def spawn(sb, name, cli_args, timeout=120):
    """Run ``gpsandbox inject <name> <cli_args> --hold 0`` in a detached process;
    return its report (dict with pid and sessions) once the scenario is in place."""
    os.makedirs(_dir(sb), exist_ok=True)
    path = report_path(sb, name)
    if os.path.exists(path):
        release(sb, name)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
               GPSANDBOX_DIR=sb.base_dir, GPSANDBOX_PORT=str(sb.base_port))
    with open(os.path.join(_dir(sb), name + ".log"), "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpsandbox", "inject", name, "--hold", "0", "--report", path]
            + list(cli_args),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("scenario %s failed to start: see %s" % (
                name, os.path.join(_dir(sb), name + ".log")))
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("scenario %s did not start within %d s" % (name, timeout))


def held(sb):
    """{name: report} of the background scenarios of this sandbox."""
    out = {}
    if os.path.isdir(_dir(sb)):
        for f in sorted(os.listdir(_dir(sb))):
            if f.endswith(".json"):
                try:
                    with open(os.path.join(_dir(sb), f)) as fh:
                        out[f[:-5]] = json.load(fh)
                except (OSError, ValueError):
                    continue
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def release(sb, name=None, timeout=60):
    """End the background scenario `name` (all when None); returns the names ended."""
    ended = []
    for n, report in held(sb).items():
        if name is not None and n != name:
            continue
        pid = report.get("pid")
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        try:
            os.unlink(report_path(sb, n))
        except FileNotFoundError:
            pass
        ended.append(n)
    return ended


def release_all(sb):
    return release(sb, None)
