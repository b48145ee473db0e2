#!/usr/bin/env bash
# Quality gates of the collection, each as a fresh user would run it:
#   1. ansible-galaxy collection build: the tarball holds no tests, sandbox, bench or scripts;
#   2. ansible-test sanity over the collection as shipped (the tarball's content, unpacked
#      under ansible_collections/gpops/greenplum, with tests/sanity/ignore-*.txt and
#      tests/config.yml), --local: tests/, bench/ and the sandbox are not shipped, so not checked;
#   3. every sanity ignore line justified in tests/sanity/README.md;
#      ansible-lint --profile production (.ansible-lint);
#   4. every module's DOCUMENTATION / EXAMPLES / RETURN promises (scripts/check_module_docs.py);
#   5. antsibull-changelog lint of changelogs/;
#   6. the execution environment: ansible-builder create (no container engine needed),
#      ansible-builder introspect of the installed collection, and its Python requirements
#      (no test packages, same list as requirements.txt).
# Needs scripts/setup.sh first (.venv with tests/requirements-test.txt). Exit 1 on any failure,
# after running every gate. About 5 minutes on 2 cores once ansible-test's sanity
# environments are cached (~/.ansible/test), about 10 the first time.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin="$top/.venv/bin"
py="$bin/python"
work=$(mktemp -d /tmp/gpops-quality.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()
gate() { echo; echo "== $1"; }
fail() { echo "FAILED: $1"; failed+=("$1"); }

gate "ansible-galaxy collection build"
if "$bin/ansible-galaxy" collection build --force --output-path "$work/build" . >"$work/build.log" 2>&1; then
  tarball=$(ls "$work"/build/gpops-greenplum-*.tar.gz)
  echo "built $(basename "$tarball") ($(tar tzf "$tarball" | wc -l) entries)"
  unwanted=$(tar tzf "$tarball" | grep -E '^(tests|bench|molecule|scripts|reports|build|\.ci|\.config|\.venv|\.collections|\.git)(/|$)|gpsandbox|gpsim|__pycache__|\.pyc$|\.tar\.gz$' || true)
  if [ -n "$unwanted" ]; then echo "$unwanted" | head -20; fail "tarball holds tests, sandbox or other non-collection files"; fi
else
  cat "$work/build.log"; fail "ansible-galaxy collection build"; tarball=""
fi

gate "ansible-test sanity (the collection as shipped)"
if [ -n "$tarball" ]; then
  coll="$work/ansible_collections/gpops/greenplum"
  mkdir -p "$coll/tests" && tar -xzf "$tarball" -C "$coll" && cp -r tests/sanity tests/config.yml "$coll/tests/"
  # ansible-test bootstraps pip into its sanity venvs with a script it downloads from its own
  # server; machines that reach only the package registries get it from scripts/.
  pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" \
    "$("$py" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")
  cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
  [ -f "$cache" ] || { mkdir -p "$(dirname "$cache")" && cp scripts/offline_get_pip.py "$cache"; }
  pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  (cd "$coll" && "$bin/ansible-test" sanity --local --python "$pyver" --color no) >"$work/sanity.log" 2>&1 \
    || { grep -E '^(ERROR|FATAL)' "$work/sanity.log" | head -80; fail "ansible-test sanity"; }
  grep -E '^Running sanity test' "$work/sanity.log" | sed 's/^/  /' | tr '\n' ' ' | fold -w 120; echo
fi

gate "sanity ignore lines justified (tests/sanity/README.md)"
for ignore in tests/sanity/ignore-*.txt; do
  [ -f "$ignore" ] || continue
  while IFS= read -r line; do
    [ -z "$line" ] && continue
    grep -qF "| $line |" tests/sanity/README.md || fail "no justification in tests/sanity/README.md for $ignore: $line"
  done < "$ignore"
done

gate "ansible-lint --profile production"
"$bin/ansible-lint" --profile production --nocolor >"$work/lint.log" 2>&1 \
  || { tail -60 "$work/lint.log"; fail "ansible-lint"; }
tail -2 "$work/lint.log"

gate "module documentation (DOCUMENTATION, EXAMPLES, RETURN samples, attributes, seealso)"
"$py" scripts/check_module_docs.py || fail "module documentation"

gate "antsibull-changelog lint"
"$bin/antsibull-changelog" lint || fail "antsibull-changelog lint"

gate "execution environment (ansible-builder create)"
if [ -n "$tarball" ]; then
  # The definition takes the tarball from build/ (docs/execution-environment.md); only for this
  # step, so that build/ never ends up in a later collection build.
  mkdir -p build && cp "$tarball" build/
  "$bin/ansible-builder" create -f meta/execution-environment.yml --context "$work/ee" >"$work/ee.log" 2>&1 \
    || { cat "$work/ee.log"; fail "ansible-builder create"; }
  rm -f "build/$(basename "$tarball")" && rmdir build 2>/dev/null
  tail -1 "$work/ee.log"
fi
if [ -n "$tarball" ]; then
  # What another EE that installs this collection gets: ansible-builder's introspection.
  "$bin/ansible-galaxy" collection install --force -p "$work/installed" "$tarball" >/dev/null 2>&1
  "$bin/ansible-builder" introspect --sanitize "$work/installed" >"$work/introspect.log" 2>&1
  grep -q "psycopg" "$work/introspect.log" && grep -q "jmespath" "$work/introspect.log" \
    || { cat "$work/introspect.log"; fail "ansible-builder introspect does not find psycopg and jmespath"; }
  grep -E "^- " "$work/introspect.log"
fi
packages() { grep -vE '^\s*(#|$|-r)' "$1" | sort; }
[ "$(packages meta/requirements.txt)" = "$(packages requirements.txt)" ] \
  || fail "meta/requirements.txt and requirements.txt list different packages"
if packages meta/requirements.txt | grep -iE 'pytest|hypothesis|ansible-lint|molecule|testinfra'; then
  fail "test packages in the execution environment"
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "quality: ${#failed[@]} gate(s) failed: ${failed[*]}"
  exit 1
fi
echo "quality: all gates passed"
