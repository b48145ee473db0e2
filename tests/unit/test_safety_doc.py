"""docs/safety.md states the reason codes: every member of plan.reasons.Reason is in it."""
import os
import re

from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

from conftest import ROOT

SAFETY = os.path.join(ROOT, "docs", "safety.md")


def test_every_reason_code_is_in_docs_safety_md():
    text = open(SAFETY).read()
    text = text[text.index("### Reason codes"):]
    text = text[:text.index("\n## ")]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, re.M))
    missing = sorted(r.value for r in Reason if r.value not in listed)
    assert not missing, "docs/safety.md lacks a row in its reason code table for: %s" % ", ".join(missing)
    assert not listed - {r.value for r in Reason}, "docs/safety.md lists codes reasons.py does not have"


def test_the_seam_and_each_safety_section_are_there():
    headings = set(re.findall(r"^## (.+)$", open(SAFETY).read(), re.M))
    assert {"The seam: plan, guard, executor", "Prepared transactions", "Slony-I node locks",
            "Pid and lock files", "What is never touched"} <= headings
