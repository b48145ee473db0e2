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
    "GPOPS_FIXTURES", os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "gp7"))
