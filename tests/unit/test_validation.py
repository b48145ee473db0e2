"""Input validation in one place (plugins/module_utils/common/validation.py): every hostile value
of issue 13 is refused with a message naming the option and what it allows, before any
I/O. The module-level tests (no traceback, nothing changed) are in
tests/integration/test_hostile_input.py."""
import os
import stat

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.common import validation
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connection_argument_spec

SPEC = dict(connection_argument_spec(),
            cancel_grace=dict(type="float"), local_deadlock_wait=dict(type="float"),
            timeout=dict(type="float"), wait_for_grace=dict(type="float"),
            wait_threshold=dict(type="float"), prepared_xact_age=dict(type="float"),
            min_age=dict(type="float"), poll_window=dict(type="float"), pid=dict(type="int"),
            content=dict(type="list", elements="int"), max_lines=dict(type="int"),
            never_choose=dict(type="str"), expected_command=dict(type="str"),
            slon_application_name=dict(type="str"), dest=dict(type="path"),
            hang_info=dict(type="dict"), signals=dict(type="list", elements="dict"),
            actions=dict(type="list", elements="raw"), login_db=dict(type="str"),
            unknown_number=dict(type="float"))

FLOATS = ["statement_timeout", "cancel_grace", "local_deadlock_wait", "timeout", "wait_for_grace",
          "wait_threshold", "prepared_xact_age", "min_age", "poll_window", "unknown_number"]


def nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e30])
def test_every_float_option_refuses_non_finite_and_huge_values(name, value):
    msg = validation.check_params({name: value}, SPEC)
    assert msg is not None and msg.startswith(name + " must be a finite number"), msg
    assert repr(value) in msg


@pytest.mark.parametrize("name,value", [
    ("connect_timeout", 0), ("connect_timeout", 10 ** 12), ("login_port", 0), ("login_port", 65536),
    ("max_workers", 0), ("max_workers", 100000), ("pid", 0), ("pid", 2 ** 40), ("max_lines", 0),
    ("content", [0, -2]), ("content", [2 ** 40]), ("statement_timeout", 0.0), ("statement_timeout", -1.0),
    ("statement_timeout", 86401.0), ("cancel_grace", -1.0), ("cancel_grace", 3601.0), ("poll_window", 61.0),
    ("timeout", 0.0),
])
def test_numbers_out_of_their_range_name_the_option_and_the_range(name, value):
    msg = validation.check_params({name: value}, SPEC)
    assert msg is not None and msg.startswith(name + " must be a finite number")
    rule = validation.NUMBER_RULES[name]
    assert "%g" % rule.high in msg


def test_defaults_and_ordinary_values_pass():
    params = dict(connect_timeout=5, statement_timeout=30.0, login_port=5432, max_workers=16, cancel_grace=5.0,
                  local_deadlock_wait=0.0, timeout=20.0, wait_for_grace=0.0, wait_threshold=60.0,
                  prepared_xact_age=120.0, min_age=0.0, poll_window=1.0, pid=1234, content=[-1, 0, 2],
                  max_lines=2000000, never_choose="usename == 'etl'", expected_command="^postgres",
                  slon_application_name="^slon\\.", dest="/tmp", hang_info={"findings": [], "snapshot": {}},
                  signals=[{"a": [1, 2]}], actions=["x", {"a": 1}], login_db="postgres", unknown_number=1e18)
    assert validation.check_params(params, SPEC) is None


@pytest.mark.parametrize("name", ["expected_command", "slon_application_name"])
def test_a_regular_expression_that_does_not_compile_is_refused_with_the_re_error(name):
    msg = validation.check_params({name: "("}, SPEC)
    assert msg.startswith(name + ": invalid regular expression '('")
    assert "missing ), unterminated subpattern" in msg


def test_an_empty_regular_expression_means_no_check():
    assert validation.check_params({"slon_application_name": ""}, SPEC) is None


@pytest.mark.parametrize("expression,words", [
    ("usename ==", "never_choose: invalid JMESPath expression 'usename =='"),
    ("(" * 500 + "a" + ")" * 500, "never_choose: JMESPath expression nested 500 brackets deep; at most 32"),
    ("[" * 40 + "]" * 40, "nested 40 brackets deep"),
    (str(nested(500)), "never_choose: JMESPath expression nested 500 brackets deep"),
])
def test_never_choose_bad_or_too_deep_is_refused_without_recursion_error(expression, words):
    assert words in validation.check_params({"never_choose": expression}, SPEC)


@pytest.mark.parametrize("name,value", [
    ("hang_info", nested(500)), ("signals", [nested(100)]), ("actions", [nested(40)]),
])
def test_nested_structures_are_bounded(name, value):
    msg = validation.check_params({name: value}, SPEC)
    assert msg == "%s is nested more than 32 levels deep" % name


def test_nesting_depth_is_iterative():
    assert validation.nesting_depth(nested(100000)) == 33  # stops once too deep; no RecursionError
    assert validation.nesting_depth({"a": [1, {"b": 2}]}) == 3
    assert validation.nesting_depth("x") == 0


def test_nul_in_a_string_is_refused():
    assert validation.check_params({"login_db": "post\x00gres"}, SPEC) == "login_db must not contain a NUL character"


def test_dest_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    assert validation.check_params({"dest": str(path)}, SPEC) == "dest: %s exists and is not a directory" % path
    below = path / "reports" / "today"
    assert validation.check_params({"dest": str(below)}, SPEC) == (
        "dest: %s cannot be created: %s is not a directory" % (below, path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_dest_that_is_not_writable_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert "dest: directory %s is not writable" % locked in validation.check_params({"dest": str(locked)}, SPEC)
        below = locked / "a" / "b"
        msg = validation.check_params({"dest": str(below)}, SPEC)
        assert msg.startswith("dest: directory %s cannot be created: %s is not writable" % (below, locked))
    finally:
        locked.chmod(stat.S_IRWXU)


def test_dest_not_there_yet_under_a_writable_directory_passes(tmp_path):
    assert validation.check_params({"dest": str(tmp_path / "new" / "dir")}, SPEC) is None


def test_a_module_rule_overrides_the_table():
    rules = {"timeout": validation.Number(0, 10, "seconds")}
    assert validation.check_params({"timeout": 11.0}, SPEC, rules).startswith("timeout must be")
    assert validation.check_params({"timeout": 11.0}, SPEC) is None
