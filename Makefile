# rotor.vps: `make up` converges the platform on the lab VPS; `make test` runs every test.
# Both start from a fresh Debian machine with root: they install what they need and reuse it later.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
LAB := tests/lab/lab
STAGE := tests/stage
SUITES := trixie bookworm

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export STAGE_TIMINGS := $(CURDIR)/.cache/timings
# pytest's JUnit XML of every pytest stage (unit, integration, molecule's verify), read by the summary.
JUNIT := $(CURDIR)/.cache/junit
# The closing summary: stages, integration test modules and molecule steps against tests/timing/budgets.yml.
SUMMARY := python3 tests/timing/report.py 2>/dev/null || $(STAGE) --summary
export PY_COLORS := 0
export ANSIBLE_FORCE_COLOR := 0

.PHONY: help up test test-quick down purge status lab venv collection converge \
        unit sanity lint integration integration-quick molecule test-stages test-quick-stages test-faults \
        bench-rotation bench-rotation-soak bench-pgbouncer bench-tenants

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: ## the Python tools, pinned in requirements/dev.txt, in .venv/
	@$(LAB) venv $(VENV) requirements/dev.txt

collection: ## make this checkout importable as the rotor.vps collection
	@mkdir -p .cache/collections/ansible_collections/rotor
	@ln -sfn ../../../.. .cache/collections/ansible_collections/rotor/vps

lab: venv collection ## Docker engine, offline images and the registry mirror
	@$(LAB) images

up: ## converge playbooks/site.yml on the lab VPS (trixie) and show what runs
	@rm -f $(STAGE_TIMINGS) $(STAGE_TIMINGS).molecule
	@$(STAGE) setup $(MAKE) --no-print-directory lab
	@$(STAGE) lab-vps $(LAB) vps-up trixie
	@$(STAGE) acme $(LAB) acme-up
	@$(LAB) acme-root >/dev/null
	@$(LAB) acme-dns rotor-lab-vps-trixie web.lab.test demo.lab.test
	@$(STAGE) converge ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml
	@$(LAB) status
	@$(LAB) demo-tenant trixie
	@$(LAB) https-info trixie web.lab.test demo.lab.test/items || { \
	  echo "Pebble restarted since these certificates were issued (a new root): renewing them"; \
	  ansible-playbook -i inventories/lab/hosts.yml playbooks/renew_certs.yml -e renew_force=true >/dev/null \
	  && $(LAB) https-info trixie web.lab.test demo.lab.test/items; }
	@$(LAB) observability-info trixie
	@$(SUMMARY)

converge: collection ## converge again (after `make up`), passing ARGS, e.g. ARGS='--check --diff'
	ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml $(ARGS)

status: ## what the lab runs and where
	@$(LAB) status

down: ## remove the lab VPS containers (images and registry stay for a fast `make up`)
	@$(LAB) down

purge: down ## also remove the registry and its data
	@$(LAB) purge

test: ## every test: unit, sanity, lint, integration, molecule (trixie and bookworm)
	@rm -f $(STAGE_TIMINGS) $(STAGE_TIMINGS).molecule $(JUNIT)/*.xml
	@$(MAKE) --no-print-directory test-stages; rc=$$?; $(SUMMARY); exit $$rc

test-stages:
	@$(STAGE) setup $(MAKE) --no-print-directory lab
	@$(STAGE) unit $(MAKE) --no-print-directory unit
	@$(STAGE) sanity $(MAKE) --no-print-directory sanity
	@$(STAGE) lint $(MAKE) --no-print-directory lint
	@$(STAGE) integration $(MAKE) --no-print-directory integration
	@$(STAGE) molecule $(MAKE) --no-print-directory molecule

test-quick: ## the edit-test loop: unit, sanity, lint and the quick integration tests (CI runs `make test`)
	@rm -f $(STAGE_TIMINGS) $(STAGE_TIMINGS).molecule $(JUNIT)/*.xml
	@$(MAKE) --no-print-directory test-quick-stages; rc=$$?; $(SUMMARY); exit $$rc

test-quick-stages:
	@$(STAGE) setup $(MAKE) --no-print-directory lab
	@$(STAGE) unit $(MAKE) --no-print-directory unit
	@$(STAGE) sanity $(MAKE) --no-print-directory sanity
	@$(STAGE) lint $(MAKE) --no-print-directory lint
	@$(STAGE) integration $(MAKE) --no-print-directory integration-quick

unit: venv collection ## pytest unit tests (pure functions, specs in step with defaults)
	pytest -q tests/unit --junitxml=$(JUNIT)/unit.xml

sanity: venv ## ansible-test sanity, offline
	tests/sanity/run

lint: venv collection ## ansible-lint, production profile
	ansible-lint --profile production

integration: lab ## pytest against real services in lab VPS containers (tests/README.md)
	@$(LAB) clean-tests
	pytest -q tests/integration --junitxml=$(JUNIT)/integration.xml $(PYTEST_ARGS)

integration-quick: lab ## the integration tests marked quick (a few minutes)
	@$(MAKE) --no-print-directory integration PYTEST_ARGS='-m quick'

test-faults: lab ## the fault-injection tests, each fault ROTOR_FAULT_ROUNDS times (default 5; `make test` runs them once)
	@$(LAB) clean-tests
	ROTOR_FAULT_ROUNDS=$${ROTOR_FAULT_ROUNDS:-5} pytest -q -s tests/integration/test_faults_rotation.py \
	  tests/integration/test_faults_pgbouncer.py --junitxml=$(JUNIT)/faults.xml $(PYTEST_ARGS)

molecule: lab ## molecule: converge, idempotence, verify on trixie and bookworm, step by step
	@$(LAB) acme-up
	@$(LAB) acme-root >/dev/null
	PYTEST_ADDOPTS="$${PYTEST_ADDOPTS:-} --junitxml=$(JUNIT)/molecule-verify.xml" tests/molecule-run default

bench-rotation: venv collection lab ## benchmark: haproxy_rotate vs a naive rotation under load (prints figures)
	python3 bench/rotation/run.py $(ARGS)

bench-rotation-soak: venv collection lab ## benchmark: rotation soak, 1,000,000 requests over 500 rotations with crashes (~30 min)
	python3 bench/rotation/run.py --soak $(ARGS)

bench-pgbouncer: venv collection lab ## benchmark: pgbench direct to PostgreSQL vs through PgBouncer (prints figures)
	python3 bench/pgbouncer/run.py $(ARGS)

bench-tenants: venv collection lab ## benchmark: 100 tenants on one VPS, spawn times, memory, PgBouncer vs direct (prints figures)
	python3 bench/tenants/run.py $(ARGS)
