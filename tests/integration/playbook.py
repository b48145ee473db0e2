"""Run a gpops.greenplum module through Ansible for real: a one-task playbook on
localhost (``ansible_connection=local``, the venv's Python as interpreter, the
collection from ``.collections``), its registered result saved as JSON and returned.

``run_task(module, args, check=False, env=None)``: the result dict of the task
(``failed`` and ``msg`` when the module failed; never raises for a failed task).
``run_tasks([(module, args[, check]), ...], env=None)``: several tasks in one play,
their results in order.
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
    return run_tasks([(module, args, check)], env=env, timeout=timeout)[0]


def run_tasks(tasks, env=None, timeout=300):
    """Several module tasks in one play (one ``ansible-playbook`` start, which costs
    seconds on a busy machine). ``tasks``: ``(module, args)`` or ``(module, args,
    check)`` tuples, run in order; returns their results in the same order."""
    with tempfile.TemporaryDirectory(prefix="gpops-play-") as tmp:
        out = os.path.join(tmp, "result.json")
        steps = []
        for i, task in enumerate(tasks):
            module, args, check = (tuple(task) + (False,))[:3]
            steps.append({"name": module, "gpops.greenplum." + module: args, "register": "r%d" % i,
                          "ignore_errors": True, "check_mode": check})
        steps.append({"name": "save the results", "ansible.builtin.copy": {
            "content": "{{ [%s] | to_json }}" % ", ".join("r%d" % i for i in range(len(tasks))),
            "dest": out}, "check_mode": False})
        playbook = os.path.join(tmp, "play.yml")
        with open(playbook, "w") as f:
            json.dump([{"hosts": "all", "gather_facts": False, "tasks": steps}], f)  # JSON is YAML
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
