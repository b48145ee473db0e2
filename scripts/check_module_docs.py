"""Every module documents itself the way this collection promises (STYLE.md):
DOCUMENTATION, EXAMPLES and RETURN present and valid YAML, every RETURN value with a
``sample``, ``attributes`` for ``check_mode`` and ``diff_mode``, and ``seealso`` with at
least one link to the Greenplum (or other external) docs.

Usage: python scripts/check_module_docs.py [plugins/modules]. Prints one line per
problem and exits 1 when there is any. ansible-test's validate-modules checks the
schema; this checks the collection's own promises on top of it."""
import ast
import os
import sys

import yaml

SECTIONS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def _sections(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and node.targets[0].id in SECTIONS:
            out[node.targets[0].id] = node.value.value
    return out


def _returns_without_sample(values, prefix=""):
    for name, spec in (values or {}).items():
        if not isinstance(spec, dict):
            continue
        if "sample" not in spec and not spec.get("contains"):
            yield prefix + name
        yield from _returns_without_sample(spec.get("contains"), prefix + name + ".")


def problems(path):
    name = os.path.basename(path)
    sections = _sections(path)
    for section in SECTIONS:
        if section not in sections:
            yield "%s: no %s" % (name, section)
            continue
        try:
            yaml.safe_load(sections[section])
        except yaml.YAMLError as exc:
            yield "%s: %s is not valid YAML: %s" % (name, section, str(exc).replace("\n", " "))
            sections.pop(section)
    doc = yaml.safe_load(sections["DOCUMENTATION"]) if "DOCUMENTATION" in sections else None
    if isinstance(doc, dict):
        attributes = doc.get("attributes") or {}
        for attribute in ("check_mode", "diff_mode"):
            if "support" not in (attributes.get(attribute) or {}):
                yield "%s: attributes.%s.support missing" % (name, attribute)
        if not any(isinstance(s, dict) and s.get("link") for s in doc.get("seealso") or []):
            yield "%s: seealso has no link to the Greenplum docs" % name
    if "RETURN" in sections:
        for value in _returns_without_sample(yaml.safe_load(sections["RETURN"]) or {}):
            yield "%s: RETURN %s has no sample" % (name, value)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join("plugins", "modules")
    found = []
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".py") and not entry.startswith("_"):
            found.extend(problems(os.path.join(directory, entry)))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
