# Entry points for a fresh machine. Each target installs what it needs first.
.PHONY: setup demo demo-sandbox gp7-start gp7-stop test check unit integration sandbox-start sandbox-stop bench bench-gp7 molecule quality

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

# The same on the PostgreSQL sandbox (fast; no Greenplum build).
demo-sandbox: setup
	@bash scripts/demo-sandbox.sh

# The real Greenplum 7 demo cluster (built the first time, then cached).
gp7-start:
	@bash scripts/greenplum-cluster.sh start

gp7-stop:
	@bash scripts/greenplum-cluster.sh stop

# The whole suite, as CI runs it: pytest (unit, and integration on the sandbox), the
# quality gates (sanity, lint, build), and the molecule scenarios on podman hosts.
test: setup
	@bash scripts/greenplum-cluster.sh start
	@$(VENV)/bin/pytest -q -p no:cacheprovider
	@bash scripts/quality.sh
	@$(MAKE) --no-print-directory molecule

# Only pytest (unit and integration), for the development loop.
check: setup
	@$(VENV)/bin/pytest -q -p no:cacheprovider

unit: setup
	@$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

integration: setup
	@$(VENV)/bin/pytest -q -p no:cacheprovider tests/integration

sandbox-start: setup
	@PYTHONPATH=tests/sandbox $(PY) -m gpsandbox start

sandbox-stop: setup
	@PYTHONPATH=tests/sandbox $(PY) -m gpsandbox stop

bench: setup
	@$(PY) bench/run.py

# The end-to-end benchmarks on the real Greenplum 7 cluster (and the sandbox beside it),
# then the load generator (bench/README.md).
bench-gp7: setup
	@$(PY) bench/deadlock_e2e.py --target both
	@$(PY) bench/mirror_failure.py --target both
	@$(PY) bench/gp7_load.py --sessions 200 --partitions 1000

quality: setup
	@bash scripts/quality.sh

# Molecule scenarios on podman cluster hosts (docs/molecule.md): podman, runc and the
# host image first (scripts/podman-setup.sh), then molecule in .venv.
molecule: setup
	@bash scripts/podman-setup.sh
	@$(VENV)/bin/pip install -q -r tests/requirements-molecule.txt
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/molecule test --all
