"""Connection layer without a server: version/flavor parsing
(docs/greenplum-internals.md#server-and-version), utility-mode option per flavor, option spec and validation, error
classification, and the client-side deadline of run_on_nodes."""
import threading
import time

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import connection
from ansible_collections.gpops.greenplum.plugins.module_utils.common import validation
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    NotGreenplumError, parse_server_version)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import SegmentConfig

GP7_LIVE = ("PostgreSQL 12.12 (Greenplum Database 7.0.0-beta.0+d766805 build dev) on "
            "x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit "
            "compiled on Nov 21 2026 05:25:54 Bhuvnesh C.")

# (version(), gp_server_version, gp_server_version_num) -> (flavor, major, version, num, pg)
CASES = [
    ((GP7_LIVE, "7.0.0-beta.0+d766805 build dev", "70000"),
     ("greenplum", 7, "7.0.0-beta.0+d766805", 70000, "12.12")),
    ((GP7_LIVE, None, None), ("greenplum", 7, "7.0.0-beta.0+d766805", 70000, "12.12")),
    (("PostgreSQL 9.4.26 (Greenplum Database 6.25.3 build commit:367edc6b Open Source) on "
      "x86_64-unknown-linux-gnu, compiled by gcc (GCC) 6.4.0, 64-bit compiled on Aug 1 2023 "
      "10:00:00", None, None),
     ("greenplum", 6, "6.25.3", 62503, "9.4")),
    (("PostgreSQL 12.12 (Greenplum Database 7.0.0 build commit:0a7a3566) on x86_64-pc-linux-gnu, "
      "compiled by gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-18), 64-bit compiled on Sep 20 2023",
      "7.0.0 build commit:0a7a3566", "70000"),
     ("greenplum", 7, "7.0.0", 70000, "12.12")),
    (("PostgreSQL 14.4 (Cloudberry Database 1.6.0 build dev) on x86_64-pc-linux-gnu, compiled "
      "by gcc (GCC) 10.2.1, 64-bit compiled on Jan 1 2024", None, None),
     ("cloudberry", 1, "1.6.0", 10600, "14.4")),
    (("PostgreSQL 14.4 (Apache Cloudberry 2.0.0-incubating build 1) on aarch64-unknown-linux-gnu, "
      "compiled by gcc (GCC) 11.4.1, 64-bit compiled on May 1 2025", None, None),
     ("cloudberry", 2, "2.0.0-incubating", 20000, "14.4")),
    (("PostgreSQL 12.12 (Greenplum Database 7.2.0_arenadata5 build dev) on x86_64-pc-linux-gnu",
      None, None), ("greenplum", 7, "7.2.0_arenadata5", 70200, "12.12")),
    (("PostgreSQL 9.4.26 (Greenplum Database 6.22.2-mdb+dev.5.g1 build dev) on x86_64-pc-linux-gnu",
      None, None), ("greenplum", 6, "6.22.2-mdb+dev.5.g1", 62202, "9.4")),
    (("PostgreSQL 9.4.26 (Greenplum Database 6.27.5-WHPG build commit:abc) on x86_64-pc-linux-gnu",
      None, None), ("greenplum", 6, "6.27.5-WHPG", 62705, "9.4")),
    (("PostgreSQL 9.4.24 (Greenplum Database 6.20.0 build dev) (HashData Warehouse 3.13.8 build "
      "17000) on x86_64-unknown-linux-gnu", None, None), ("greenplum", 6, "6.20.0", 62000, "9.4")),
]


@pytest.mark.parametrize("given,expected", CASES, ids=[c[1][2] for c in CASES])
def test_parse_server_version(given, expected):
    info = parse_server_version(*given)
    assert (info.flavor, info.major, info.version, info.version_num, info.pg_version) == expected
    assert info.version_string == given[0]


def test_gp_server_version_wins_over_version_text():
    info = parse_server_version(GP7_LIVE.replace("7.0.0-beta.0", "7.0.0"), "7.1.0 build x", "70100")
    assert (info.version, info.version_num, info.major) == ("7.1.0", 70100, 7)


@pytest.mark.parametrize("text", [
    "PostgreSQL 15.8 (Debian 15.8-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian "
    "12.2.0-14) 12.2.0, 64-bit",
    "PostgreSQL 12.12 on x86_64-pc-linux-gnu",
    "",
])
def test_plain_postgresql_is_refused(text):
    with pytest.raises(NotGreenplumError, match="not Greenplum"):
        parse_server_version(text)


def test_sandbox_is_its_own_flavor():
    info = parse_server_version(
        "PostgreSQL 15.20 (Greenplum Database 7.0.0-sandbox build gpsandbox) on x86_64-pc-linux-gnu,"
        " compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit",
        "7.0.0-sandbox build gpsandbox", "70000")
    assert (info.flavor, info.major, info.version, info.pg_version) == (
        "sandbox", 7, "7.0.0-sandbox", "15.20")
    assert (info.utility_option, info.has_gp_stat_activity) == ("gp_role", True)


@pytest.mark.parametrize("version,option,stat_activity", [
    ("PostgreSQL 9.4.26 (Greenplum Database 6.25.3 build x)", "gp_session_role", False),
    ("PostgreSQL 12.12 (Greenplum Database 7.0.0 build x)", "gp_role", True),
    ("PostgreSQL 14.4 (Cloudberry Database 1.6.0 build x)", "gp_role", True),
    ("PostgreSQL 14.4 (Apache Cloudberry 2.0.0-incubating build 1)", "gp_role", True),
])
def test_utility_option_per_flavor(version, option, stat_activity):
    info = parse_server_version(version)
    assert info.utility_option == option
    assert info.has_gp_stat_activity is stat_activity


def test_argument_spec_matches_the_contract():
    spec = connection.connection_argument_spec()
    assert set(spec) == {"login_host", "login_port", "login_user", "login_password", "login_db",
                         "connect_timeout", "statement_timeout", "ssl_mode", "max_workers"}
    assert spec["login_password"]["no_log"] is True
    assert spec["connect_timeout"] == dict(type="int", default=5)
    assert spec["statement_timeout"] == dict(type="float", default=30.0)
    envs = {name: spec[name]["fallback"][1] for name in spec if "fallback" in spec[name]}
    assert envs == {"login_host": ["PGHOST"], "login_port": ["PGPORT"], "login_user": ["PGUSER"],
                    "login_db": ["PGDATABASE"]}  # PGPASSWORD: read by libpq itself


@pytest.mark.parametrize("params,word", [
    (dict(connect_timeout=0), "connect_timeout"),
    (dict(statement_timeout=-1.0), "statement_timeout"),
    (dict(statement_timeout=0), "statement_timeout"),
    (dict(login_port=70000), "login_port"),
])
def test_validate_connection_params_names_the_option(params, word):
    spec = connection.connection_argument_spec()
    assert validation.check_params(params, spec).startswith(word)


def test_validate_connection_params_accepts_defaults():
    spec = connection.connection_argument_spec()
    assert validation.check_params(
        dict(connect_timeout=5, statement_timeout=30.0, login_port=5432, max_workers=16), spec) is None


@pytest.mark.parametrize("message,kind", [
    ("connection timeout expired", "timeout"),
    ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
     "\tIs the server running on that host and accepting TCP/IP connections?", "connection refused"),
    ('connection failed: FATAL:  password authentication failed for user "gpadmin"',
     "authentication failed"),
    ('FATAL:  database "nope" does not exist', "database does not exist"),
    ("FATAL:  the database system is in recovery mode", "in recovery"),
    ('could not translate host name "nohost" to address', "unknown host"),
    ("something else", "error"),
])
def test_classify_error(message, kind):
    reason = connection.classify_error(Exception(message))
    assert reason.startswith(kind + ": ")
    assert "\n" not in reason


def test_gp_connection_error_names_node_and_cause():
    seg = SegmentConfig(2, 0, "p", "p", "s", "u", 7002, "sdw1", "10.0.0.2", "/d")
    err = connection.GpConnectionError(connection.describe_node(seg), "timeout: no answer")
    assert str(err) == "cannot reach content 0 (dbid 2, 10.0.0.2:7002): timeout: no answer"
    coord = SegmentConfig(1, -1, "p", "p", "n", "u", 5432, "mdw", "mdw", "/d")
    assert connection.describe_node(coord).startswith("coordinator (content -1, dbid 1, mdw:5432")
    assert connection.describe_node(None, "h", 1) == "coordinator (h:1)"


def test_run_on_nodes_abandons_a_node_that_never_answers():
    nodes = [SegmentConfig(d, c, "p", "p", "s", "u", 7000 + c, "h", "h", "/d")
             for d, c in ((1, -1), (2, 0), (3, 1), (4, 2))]
    never = threading.Event()

    def fn(node):
        if node.content == 1:
            never.wait()  # a SIGSTOPped server: no error, no answer
        if node.content == 2:
            raise RuntimeError("boom")
        return node.port

    started = time.monotonic()
    results, unreachable = connection.run_on_nodes(nodes, fn, 0.5)
    elapsed = time.monotonic() - started
    assert results == {-1: 6999, 0: 7000}
    assert set(unreachable) == {1, 2}
    assert unreachable[1].startswith("timeout: no answer within 0.5 s")
    assert unreachable[2] == "error: boom"
    assert elapsed < 5  # generous: the deadline is 0.5 s
    never.set()


def test_run_with_deadline_returns_result_or_reason():
    assert connection.run_with_deadline(lambda: 42, 1) == (True, 42)
    err = connection.GpConnectionError("content 0", "connection refused: x")
    ok, reason = connection.run_with_deadline(lambda: (_ for _ in ()).throw(err), 1)
    assert (ok, reason) == (False, "connection refused: x")
