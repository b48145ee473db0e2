"""Every SQL statement lives in plugins/module_utils/collect/sql.py and names its schema.

A superuser tool that signals backends must not resolve ``pg_locks`` or
``pg_cancel_backend`` through the login role's ``search_path``: every module of
``plugins/`` is imported, its string literals (docstrings and the modules'
DOCUMENTATION / EXAMPLES / RETURN aside) must not hold SQL naming a catalog object
(that SQL belongs in sql.py), and in sql.py every relation after FROM / JOIN and
every function call is schema-qualified.
"""
import ast
import importlib
import os
import re

import pytest

from conftest import ROOT

PLUGINS = os.path.join(ROOT, "plugins")
SQL_MODULE = os.path.join(PLUGINS, "module_utils", "collect", "sql.py")

# Greenplum and PostgreSQL catalog relations and functions the collection reads or calls.
CATALOG_RELATIONS = (
    "pg_locks", "pg_stat_activity", "gp_stat_activity", "gp_segment_configuration",
    "gp_configuration_history", "gp_distributed_xacts", "gp_distributed_log", "pg_prepared_xacts",
    "pg_stat_replication", "gp_stat_replication", "pg_settings", "pg_class", "pg_namespace",
    "pg_database", "gp_locks_on_resqueue",
)
CATALOG_FUNCTIONS = (
    "gp_dist_wait_status", "pg_cancel_backend", "pg_terminate_backend", "pg_reload_conf",
    "gp_request_fts_probe_scan", "gp_dist_random", "pg_blocking_pids", "current_setting",
    "set_config", "now", "version", "to_regprocedure", "pg_stat_clear_snapshot", "pg_get_userbyid",
    "current_database", "pg_xact_commit_timestamp", "pg_wal_lsn_diff", "pg_current_wal_lsn",
    "pg_xlog_location_diff", "pg_current_xlog_location",
)
CATALOG_OBJECTS = CATALOG_RELATIONS + CATALOG_FUNCTIONS
SCHEMAS = ("pg_catalog", "gp_toolkit")
DOC_NAMES = ("DOCUMENTATION", "EXAMPLES", "RETURN")
NAME_RE = re.compile(r"\b(%s)\b" % "|".join(CATALOG_OBJECTS))  # qualified or not
SQL_WORDS = re.compile(r"\b(SELECT|FROM|JOIN|UPDATE|DELETE|INSERT|ALTER SYSTEM|PREPARED)\b")
OBJECT_RE = re.compile(r"(?<![\w.])(%s)\b|(?<![\w.])(%s)\s*\(" % (
    "|".join(CATALOG_RELATIONS), "|".join(CATALOG_FUNCTIONS)))


def _plugin_files():
    for folder, _dirs, files in os.walk(PLUGINS):
        for name in sorted(files):
            if name.endswith(".py") and name != "__init__.py":
                yield os.path.join(folder, name)


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return "ansible_collections.gpops.greenplum." + rel


def _docstring_nodes(tree):
    """The docstring expressions and the DOCUMENTATION / EXAMPLES / RETURN values."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                        and isinstance(stmt.value.value, str):
                    skip.add(id(stmt.value))
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in DOC_NAMES for t in node.targets):
            skip.add(id(node.value))
    return skip


def _literals(path):
    """``(line, text)`` of every string literal of the file that is not documentation."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    skip = _docstring_nodes(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip]


@pytest.mark.parametrize("path", list(_plugin_files()), ids=lambda p: os.path.relpath(p, PLUGINS))
def test_no_sql_outside_sql_module(path):
    importlib.import_module(_module_name(path))  # every plugin imports
    if path == SQL_MODULE:
        return
    found = ["%s:%d: %r" % (os.path.relpath(path, ROOT), line, text[:100])
             for line, text in _literals(path)
             if SQL_WORDS.search(text) and NAME_RE.search(text)]
    assert not found, "SQL naming catalog objects belongs in plugins/module_utils/collect/sql.py:\n" + \
        "\n".join(found)


def _cte_names():
    """Names sql.py declares as common table expressions (``WITH l AS (``, ``, w AS (``):
    a query's own names, which no ``search_path`` can substitute; never a catalog name."""
    with open(SQL_MODULE) as fh:
        source = fh.read()
    names = set(re.findall(r"(?:\bWITH|,)[\s\"]+([a-z_][a-z0-9_]*)\s+AS\s+(?:MATERIALIZED\s+)?\(", source))
    return names - set(CATALOG_OBJECTS)


def _unqualified(text):
    """What in one SQL text names a catalog object without its schema."""
    out = ["%s (unqualified catalog object)" % (m.group(1) or m.group(2))
           for m in OBJECT_RE.finditer(text) if (m.group(1) or m.group(2)) != "gp_dist_random"]
    # any function call: lower-case name then "(" (SQL keywords are upper case here)
    # gp_dist_random('schema.relation') is Greenplum parser syntax, never qualified
    out += ["%s() (unqualified function)" % m.group(1)
            for m in re.finditer(r"(?<![\w.{}%])([a-z_][a-z0-9_]*)\s*\(", text)
            if m.group(1) != "gp_dist_random"]
    # any relation after FROM / JOIN: schema.name, a placeholder, or a sub-select
    out += ["%s (unqualified relation)" % m.group(1)
            for m in re.finditer(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)(?![\w.])", text)
            if m.group(1) != "gp_dist_random" and m.group(1) not in _cte_names()]
    return out


def test_every_catalog_name_in_sql_module_is_qualified():
    module = importlib.import_module(_module_name(SQL_MODULE))
    sql_texts = [(line, text) for line, text in _literals(SQL_MODULE) if SQL_WORDS.search(text)]
    assert len(sql_texts) >= 20
    bad = ["sql.py:%d: %s in %r" % (line, what, text[:80])
           for line, text in sql_texts for what in _unqualified(text)]
    assert not bad, "\n".join(bad)
    # the builders' output too (what actually runs)
    built = [module.signal_backend(a, m) for a in ("cancel", "terminate") for m in (True, False)]
    built += [module.replication_positions(n) for n in (120012, 90426)]
    built += [module.function_signature(a, True) for a in ("cancel", "terminate")]
    built += list(module.DISPATCHED_SNAPSHOT.values()) + list(module.LOCAL_SNAPSHOT.values())
    bad = ["%s in %r" % (what, text[:80]) for text in built for what in _unqualified(text)]
    assert not bad, "\n".join(bad)


def test_the_check_catches_an_unqualified_name():
    assert _unqualified("SELECT * FROM pg_locks") == [
        "pg_locks (unqualified catalog object)", "pg_locks (unqualified relation)"]
    assert _unqualified("SELECT pg_cancel_backend(a.pid) FROM pg_catalog.pg_stat_activity a") == [
        "pg_cancel_backend (unqualified catalog object)", "pg_cancel_backend() (unqualified function)"]
    assert _unqualified("SELECT * FROM gp_toolkit.gp_locks_on_resqueue") == []
    assert _unqualified("SELECT pg_catalog.max(time) AS t FROM pg_catalog.gp_configuration_history") == []


def test_knowledge_lives_in_the_repository():
    """Nothing in plugins/, docs/ or tests/ sends the reader to files outside the
    repository (``../shared``, GREENPLUM.md, DESIGN.md): Greenplum facts are in
    docs/greenplum-internals.md."""
    pattern = re.compile(r"\.\./shared|GREENPLUM\.md|DESIGN\.md")
    found = []
    for top in ("plugins", "docs", "tests"):
        for folder, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if not name.endswith((".py", ".md", ".c", ".sql", ".yml", ".yaml", ".txt", ".cfg")):
                    continue
                path = os.path.join(folder, name)
                if path == os.path.abspath(__file__):
                    continue
                with open(path, errors="replace") as f:
                    found += ["%s:%d" % (os.path.relpath(path, ROOT), n)
                              for n, line in enumerate(f, 1) if pattern.search(line)]
    assert not found, "references to knowledge outside the repository:\n" + "\n".join(found)
