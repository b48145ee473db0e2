# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input validation for every module of the collection, in one place.

Every module's options pass through ``check_params`` before the module reads a file or
opens a connection (``module_base.gp_module`` and ``module_base.local_module`` call
``validate``), so a bad value fails with a ``msg`` naming the option and what it allows,
and nothing is changed. The rules are docs/safety.md#input-privileges-and-tool-errors.

Public API:

- ``NUMBER_RULES``: ``{option name: Number}``: the allowed range of every numeric option
  of the collection (an option with the same name means the same thing in every module;
  a module whose option means something else passes its own rule in ``rules``).
- ``check_params(params, argument_spec, rules=None) -> str or None``: the message for the
  first bad option, or None. Pure: reads only ``params`` (and the file system for
  ``DIRECTORY_OPTIONS``). Checks, for each option present (not None):

  * numbers (``int``/``float``, and lists of them): finite (no ``inf``/``nan``) and in the
    option's range (``NUMBER_RULES`` or ``rules``); a numeric option without a rule is
    only checked to be finite and within ``DEFAULT_NUMBER``;
  * strings: no NUL character (libpq and the file system cut a string there), at most
    ``MAX_STRING`` characters;
  * ``REGEX_OPTIONS``: compiled with Python's ``re``; the ``re.error`` is in the msg;
  * ``JMESPATH_OPTIONS``: compiled with ``jmespath``; nesting at most ``MAX_DEPTH``
    brackets deep; the parse error is in the msg;
  * ``dict``/``list``/``raw`` options: nested at most ``MAX_DEPTH`` levels;
  * ``DIRECTORY_OPTIONS``: a directory the module can write (``os.access`` W and X), or a
    path not there yet whose nearest existing parent is such a directory.
- ``validate(module, rules=None)``: ``check_params`` on ``module.params``, then
  ``module.fail_json(msg=...)`` when an option is bad.
- ``compile_regex(name, pattern) -> re.Pattern or None`` and
  ``compile_jmespath(name, expression) -> jmespath parsed expression or None``: raise
  ``ValueError`` whose text starts with the option name.
- ``nesting_depth(value) -> int``: how deep dicts and lists are nested (iterative: a
  hostile structure cannot exhaust the stack).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import re

# Greenplum's own limits: statement_timeout and the other time GUCs are int
# milliseconds (INT_MAX ms is 24.8 days); PID_MAX_LIMIT (Linux) is 2^22; a content id is
# at most the number of primaries minus one (gp_segment_configuration.content smallint).
DAY = 86400.0
YEAR = 365 * DAY
MAX_DEPTH = 32
MAX_STRING = 65536


class Number(object):
    """An allowed range: ``low`` .. ``high`` (``low_open``: ``low`` itself not allowed);
    ``unit`` for the message (e.g. ``seconds``)."""

    __slots__ = ("low", "high", "unit", "low_open")

    def __init__(self, low, high, unit="", low_open=False):
        self.low, self.high, self.unit, self.low_open = low, high, unit, low_open

    def allowed(self):
        unit = " %s" % self.unit if self.unit else ""
        return "a finite number%s %s %g and <= %g" % (unit, ">" if self.low_open else ">=", self.low, self.high)

    def accepts(self, value):
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if value > self.high:
            return False
        return value > self.low if self.low_open else value >= self.low


SECONDS_SHORT = Number(0, 3600, "seconds")           # a wait inside one run: at most an hour
SECONDS_POSITIVE = Number(0, 3600, "seconds", low_open=True)
AGE = Number(0, 10 * YEAR, "seconds")                  # an age a finding starts at
DEFAULT_NUMBER = Number(-(2 ** 63), 2 ** 63 - 1)

NUMBER_RULES = {
    # connection (module_base.gp_module, doc fragment gpops.greenplum.connection)
    "connect_timeout": Number(1, 3600, "seconds"),
    "statement_timeout": Number(0, DAY, "seconds", low_open=True),
    "login_port": Number(1, 65535),
    "max_workers": Number(1, 1024, "connections"),
    # gp_deadlock
    "cancel_grace": SECONDS_SHORT,
    "local_deadlock_wait": SECONDS_SHORT,
    # gp_fts_probe
    "timeout": SECONDS_POSITIVE,
    "wait_for_grace": SECONDS_SHORT,
    # gp_hang_info
    "wait_threshold": AGE,
    "idle_in_transaction_age": AGE,
    "prepared_xact_age": AGE,
    "stuck_qe_min_wait": AGE,
    "stuck_qe_age": AGE,
    "segment_restart_window": AGE,
    # gp_prepared_xacts
    "min_age": AGE,
    # gp_lockfile_info
    "poll_window": Number(0, 60, "seconds"),
    "pid": Number(1, 2 ** 22),
    # gp_locks_info, gp_sync_replication
    "session": Number(0, 2 ** 31 - 1),
    "content": Number(-1, 32767),
    "dbid": Number(1, 32767),
    "max_lag_bytes": Number(0, 2 ** 63 - 1, "bytes"),
    "wait_timeout": SECONDS_POSITIVE,
    "stall_threshold": SECONDS_POSITIVE,
    "fts_probe_timeout": SECONDS_SHORT,  # 0: computed from the FTS settings
    # gp_log_info
    "last_minutes": Number(0, 10 * 525600, "minutes", low_open=True),
    "max_lines": Number(1, 10 ** 9),
    "max_events": Number(1, 10 ** 7),
    "deadline": Number(0, DAY, "seconds", low_open=True),
}

REGEX_OPTIONS = ("expected_command", "slon_application_name")
JMESPATH_OPTIONS = ("never_choose",)
DIRECTORY_OPTIONS = ("dest",)
_NUMERIC = ("int", "float")
_STRUCTURED = ("dict", "list", "raw", "jsonarg", "json")
_OPEN = "([{"
_CLOSE = ")]}"


def nesting_depth(value):
    """How deeply dicts and lists (tuples) nest in ``value``: 0 for a scalar, 1 for a
    flat list or dict. Iterative."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:  # deep enough to refuse; no need to walk the rest
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _bracket_depth(text):
    depth = deepest = 0
    for char in text:
        if char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSE:
            depth = max(0, depth - 1)
    return deepest


def compile_regex(name, pattern):
    """``re.compile(pattern)``; None/empty gives None. Raises ``ValueError``
    (``name: invalid regular expression ...: <re.error>``)."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError("%s: invalid regular expression %r: %s (Python re syntax, matched with re.search)"
                         % (name, _cut(pattern), exc))


def compile_jmespath(name, expression):
    """``jmespath.compile(expression)``; None/empty gives None. Raises ``ValueError``
    naming ``name`` for a bad or too deeply nested expression, a non-string, or when
    the ``jmespath`` library is missing."""
    if expression is None or expression == "":
        return None
    if not isinstance(expression, str):
        raise ValueError("%s: a JMESPath expression (string) is expected, got %s"
                         % (name, type(expression).__name__))
    if _bracket_depth(expression) > MAX_DEPTH:
        raise ValueError("%s: JMESPath expression nested %d brackets deep; at most %d are allowed"
                         % (name, _bracket_depth(expression), MAX_DEPTH))
    try:
        import jmespath
        from jmespath.exceptions import JMESPathError
    except ImportError:
        raise ValueError("%s: the Python library 'jmespath' is needed on the managed node "
                         "(pip install jmespath)" % name)
    try:
        return jmespath.compile(expression)
    except (JMESPathError, RecursionError) as exc:
        raise ValueError("%s: invalid JMESPath expression %r: %s" % (name, _cut(expression), exc))


def _cut(text, limit=120):
    return text if len(text) <= limit else text[:limit] + "..."


def _check_number(name, value, rule):
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue  # Ansible's type checks already refused it
        if not rule.accepts(item):
            return "%s must be %s, got %r" % (name, rule.allowed(), item)
    return None


def _check_strings(name, value):
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, str):
            if "\x00" in item:
                return "%s must not contain a NUL character" % name
            if len(item) > MAX_STRING:
                return "%s is %d characters long; at most %d are allowed" % (name, len(item), MAX_STRING)
    return None


def check_directory(name, path):
    """None when ``path`` is (or can be made as) a directory this process writes; else
    the message naming ``name``."""
    if os.path.lexists(path) and not os.path.isdir(path):
        return "%s: %s exists and is not a directory" % (name, path)
    probe = os.path.abspath(path)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return "%s: %s cannot be created: %s is not a directory" % (name, path, probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else "cannot be created: %s is not writable" % probe
        return "%s: directory %s %s by uid %d" % (name, path, what, os.geteuid())
    return None


def check_params(params, argument_spec, rules=None):
    """The message for the first bad option of ``params`` (see the module docstring),
    or None. ``argument_spec``: the module's Ansible argument spec (for the types);
    ``rules``: ``{option: Number}`` overriding ``NUMBER_RULES`` for this module."""
    numbers = dict(NUMBER_RULES, **(rules or {}))
    for name in sorted(argument_spec):
        spec = argument_spec[name] or {}
        value = params.get(name)
        if value is None:
            continue
        kind = spec.get("type", "str")
        elements = spec.get("elements")
        bad = None
        if kind in _NUMERIC or (kind == "list" and elements in _NUMERIC):
            bad = _check_number(name, value, numbers.get(name, DEFAULT_NUMBER))
        elif kind in ("str", "path") or (kind == "list" and elements in ("str", "path")):
            bad = _check_strings(name, value)
        if bad is None and kind in _STRUCTURED and nesting_depth(value) > MAX_DEPTH:
            bad = "%s is nested more than %d levels deep" % (name, MAX_DEPTH)
        if bad is None and kind == "list" and elements in _STRUCTURED and any(
                nesting_depth(v) > MAX_DEPTH - 1 for v in value):
            bad = "%s is nested more than %d levels deep" % (name, MAX_DEPTH)
        try:
            if bad is None and name in REGEX_OPTIONS:
                compile_regex(name, value)
            if bad is None and name in JMESPATH_OPTIONS:
                compile_jmespath(name, value)
        except ValueError as exc:
            bad = str(exc)
        if bad is None and name in DIRECTORY_OPTIONS and kind == "path":
            bad = check_directory(name, value)
        if bad:
            return bad
    return None


def validate(module, rules=None):
    """Fail ``module`` (``fail_json(msg=...)``, nothing done) on its first bad option."""
    bad = check_params(module.params, module.argument_spec, rules)
    if bad:
        module.fail_json(msg=bad)
