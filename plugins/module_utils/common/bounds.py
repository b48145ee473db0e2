# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The size bound of what the modules return and the reports hold (docs/collection.md,
"The size bound").

A lock that hundreds of sessions hold while one request waits for it makes one
blocking tree per holder, each with the same waiters, and the waiter's wait names every
holder: listed in full, the result grows with holders x holders x waiters (17.8 MiB at
200 holders on real Greenplum 7, bench/results-gp7-load.md). The analysis and the
findings keep everything; only their JSON form is bounded:

- ``TOP_LIMIT`` blocking trees, and ``TOP_LIMIT`` findings of each class, are listed,
  in the analysis' order; the rest are counted (``blocking_trees_omitted``,
  ``findings_omitted``). Verdict, severity counts and the highest severity are
  computed from every finding.
- Inside a listed tree or finding, every list holds at most ``LIST_LIMIT`` entries; a
  list cut short has ``<key>_omitted`` (the number left out) beside it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

TOP_LIMIT = 20
LIST_LIMIT = 50


def bound_lists(value, limit=LIST_LIMIT):
    """A copy of ``value`` (JSON-like: dicts, lists, scalars) where every list that is a
    dict entry holds at most ``limit`` entries, with ``<key>_omitted`` (int) beside a list
    cut short; lists inside lists are bounded the same way through their dicts."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, list) and len(item) > limit:
                out["%s_omitted" % key] = len(item) - limit
                item = item[:limit]
            out[key] = bound_lists(item, limit)
        return out
    if isinstance(value, list):
        return [bound_lists(item, limit) for item in value]
    return value


def top(items, limit=TOP_LIMIT):
    """``(the first `limit` items, each bound_lists'ed; how many were left out)``."""
    items = list(items)
    return [bound_lists(i) for i in items[:limit]], max(0, len(items) - limit)


def top_per_class(findings, limit=TOP_LIMIT):
    """``(listed, {class: omitted})``: of ``findings`` (dicts with ``class``), the first
    ``limit`` of each class in their order, each ``bound_lists``'ed."""
    seen, listed, omitted = {}, [], {}
    for finding in findings:
        cls = finding.get("class")
        seen[cls] = seen.get(cls, 0) + 1
        if seen[cls] <= limit:
            listed.append(bound_lists(finding))
        else:
            omitted[cls] = omitted.get(cls, 0) + 1
    return listed, omitted
