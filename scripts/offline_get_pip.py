"""Offline stand-in for get-pip.py, for ansible-test's sanity virtual environments.

ansible-test bootstraps pip into each sanity venv with a get-pip.py script that it
downloads from its own file server (``~/.ansible/test/cache/get_pip_<version>.py``);
machines that reach only the package registries cannot fetch it. This script does the
same job from what is already here: pip from the interpreter's bundled ``ensurepip``
wheel, then ``pip install`` of the requested packages (e.g. ``pip==24.2``) from the
configured package index. Arguments: what ansible-test passes to get-pip.py.
scripts/quality.sh installs it into that cache when it is missing.
"""
import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def main():
    # In a child process: ensurepip points PIP_CONFIG_FILE at /dev/null in its own
    # environment, which would hide the configured index from the install below.
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)


if __name__ == "__main__":
    main()
