"""What the scenarios' testinfra tests look at on the cluster hosts: the sandbox
state, live postmasters, and SQL run with psql on a host. Tests reach the hosts
with testinfra's podman backend (``podman exec``; .config/molecule/config.yml),
so what a test sees is that host's processes and files.

Each scenario's ``tests/conftest.py`` puts this directory on sys.path.
"""
import json

# gp_sandbox.base_dir of .config/molecule/config.yml: the state file there gives the rest.
BASE_DIR = "/data/gpsandbox"
# The platforms of .config/molecule/config.yml (a test module's testinfra_hosts).
COORDINATOR_HOST = "gp-cdw"
ALL_HOSTS = ["gp-cdw", "gp-sdw1", "gp-sdw2"]
PSQL = "psql -h 127.0.0.1 -p %s -U gpadmin -d %s -X -A -t -q -F '|' -v ON_ERROR_STOP=1 -c %s"


def state(host):
    """The sandbox state file of the host (dict: base_port, nodes with host, port,
    datadir ...)."""
    return json.loads(host.file(BASE_DIR + "/sandbox.json").content_string)


def read_text(host, name):
    """A file of the sandbox's base directory on host."""
    return host.file(BASE_DIR + "/" + name).content_string


def read_json(host, name):
    """A JSON file of the sandbox's base directory on host."""
    return json.loads(read_text(host, name))


def my_nodes(host):
    """The nodes placed on this host (by its hostname)."""
    name = host.check_output("hostname")
    return [n for n in state(host)["nodes"] if n["host"] == name]


def postmaster_pid(host, datadir):
    """The pid in datadir/postmaster.pid when it is a live postgres of this host
    whose data directory is datadir (so a pid reused by another process does not
    count), else None."""
    pidfile = host.file(datadir + "/postmaster.pid")
    if not pidfile.exists:
        return None
    pid = int(pidfile.content_string.splitlines()[0])
    cmd = host.run("tr '\\0' ' ' < /proc/%s/cmdline" % pid)
    if cmd.rc != 0 or "postgres" not in cmd.stdout or datadir not in cmd.stdout:
        return None
    return pid


def node(host, content, role="p"):
    """The node of the state file with this content and preferred role."""
    return next(n for n in state(host)["nodes"] if n["content"] == content and n["role"] == role)


def sql(host, query, port=None, utility=False, dbname="postgres"):
    """Rows (lists of str) of one statement, run with psql on host against the
    node at port (default: the coordinator); utility=True for a segment."""
    port = port or state(host)["base_port"]
    cmd = PSQL % (port, dbname, "'%s'" % query.replace("'", "'\\''"))
    if utility:
        cmd = "PGOPTIONS='-c gp_role=utility' " + cmd
    out = host.check_output(cmd)
    return [line.split("|") for line in out.splitlines() if line]
