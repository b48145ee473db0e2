"""Test-wide set-up: make the collection importable as
``ansible_collections.gpops.greenplum`` (the repository is the collection)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COLLECTIONS = os.path.join(ROOT, ".collections")
_LINK = os.path.join(_COLLECTIONS, "ansible_collections", "gpops", "greenplum")
if not os.path.exists(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    os.symlink("../../..", _LINK)
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

SHARED_FIXTURES = os.environ.get(
    "GPOPS_FIXTURES", os.path.join(ROOT, "tests", "fixtures", "gp7"))

# pytest imports every conftest.py as the module ``conftest``: the last one imported
# wins (tests/integration/ is collected before tests/unit/), so `from conftest import
# SHARED_FIXTURES` in a unit test would find the integration one. Before each test
# module is imported, point ``conftest`` at the conftest.py nearest to it.
_CONFTESTS = {os.path.dirname(os.path.abspath(__file__)): sys.modules[__name__]}


def pytest_plugin_registered(plugin):
    path = getattr(plugin, "__file__", None) or ""
    if os.path.basename(path) == "conftest.py":
        _CONFTESTS[os.path.dirname(os.path.abspath(path))] = plugin


def pytest_collectstart(collector):
    path = getattr(collector, "path", None)
    if path is None or not str(path).endswith(".py"):
        return
    folder = os.path.dirname(str(path))
    while folder not in _CONFTESTS and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if folder in _CONFTESTS:
        sys.modules["conftest"] = _CONFTESTS[folder]
