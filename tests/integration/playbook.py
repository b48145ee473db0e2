"""Run a gpops.greenplum module through Ansible for real: a one-task playbook on
localhost (``ansible_connection=local``, the venv's Python as interpreter, the
collection from ``.collections``), its registered result saved as JSON and returned.

``run_task(module, args, check=False, env=None)``: the result dict of the task
(``failed`` and ``msg`` when the module failed; never raises for a failed task).
``env`` is added to the environment of ``ansible-playbook`` and so of the module
(e.g. the ``PG*`` variables the connection options default to).
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def run_task(module, args, check=False, env=None, timeout=300):
    with tempfile.TemporaryDirectory(prefix="gpops-play-") as tmp:
        out = os.path.join(tmp, "result.json")
        play = [{
            "hosts": "all", "gather_facts": False,
            "tasks": [
                {"name": module, "gpops.greenplum." + module: args, "register": "r",
                 "ignore_errors": True, "check_mode": check},
                {"name": "save the result", "ansible.builtin.copy": {
                    "content": "{{ r | to_json }}", "dest": out}, "check_mode": False},
            ]}]
        playbook = os.path.join(tmp, "play.yml")
        with open(playbook, "w") as f:
            json.dump(play, f)  # JSON is YAML
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as f:
            f.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
                       ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1")
        for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGOPTIONS"):
            run_env.pop(name, None)
        run_env.update(env or {})
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", inventory, playbook], cwd=ROOT, env=run_env,
                              capture_output=True, text=True, timeout=timeout)
        if not os.path.exists(out):
            raise AssertionError("ansible-playbook gave no result (exit %d):\n%s\n%s"
                                 % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        with open(out) as f:
            return json.load(f)
