# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# Settings come from the environment, then `.env` (ENV_FILE), then batchsite/settings.py's
# defaults. The Makefile keeps no defaults of its own: it asks the settings for the few values
# its recipes use, so a make target and `manage.py` always agree. A value set in the
# environment or on make's command line wins, as it does for the settings. Evaluated when a
# recipe uses it, after `install` made the virtualenv.
setting = $(shell $(BIN)/python -m batchsite.config --value $(1))
PORT ?= $(call setting,PORT)
WEB_WORKERS ?= $(call setting,WEB_WORKERS)
DATA_DIR ?= $(call setting,DATA_DIR)
HOST ?= $(call setting,HOST)

INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.PHONY: install install-dev run web worker beat test soak lint migrate browser faketime iptables print-config deploy-check

install: $(INSTALLED)
install-dev: $(INSTALLED_DEV)

# The runtime requirements, then the project itself (editable: the `batch` command in
# .venv/bin). Reinstalls only when requirements.txt or pyproject.toml changes.
$(INSTALLED): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Tests and tools on top of the runtime (make test, make lint); production installs only
# requirements.txt. Reinstalls when either file changes.
$(INSTALLED_DEV): $(INSTALLED) requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The resolved settings that make targets and manage.py use (PORT, WEB_WORKERS, DATA_DIR,
# the database), e.g. to check a `.env`.
print-config:
	@$(BIN)/python -m batchsite.config

migrate: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

# The web server and one Celery worker (with its embedded beat) on the embedded default.
RUN_WEB = $(BIN)/gunicorn batchsite.wsgi -c batchsite/gunicorn_conf.py --bind $(or $(HOST),127.0.0.1):$(PORT) \
	--workers 2
# It takes every queue, webhooks included; one account's tries at once are capped
# (WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT, 2), so a third process is always left for the pipeline.
RUN_WORKER = $(BIN)/celery -A batchsite worker --beat --loglevel=INFO --concurrency=3
# batchsite/supervise.sh starts both, starts the worker again when it exits (with a growing
# delay), and stops both when the web server exits or on Ctrl-C (then it says "Stopped." and
# exits 0). On a terminal it runs as its own foreground job (`set -m`), so Ctrl-C
# reaches it and the web server but not make, which would otherwise die of the signal however
# the recipe ends. SIGTERM to make ends the recipe's shell; the supervisor sees its parent gone
# and stops too.
run: migrate
	@echo "Serving on http://$(or $(HOST),127.0.0.1):$(PORT), data in $(DATA_DIR); Ctrl-C stops."
	@rm -rf "$${PROMETHEUS_MULTIPROC_DIR:-$(DATA_DIR)/prometheus}"
	@if [ -t 0 ]; then set -m; fi; \
	bash batchsite/supervise.sh $$$$ "$(RUN_WEB)" "$(RUN_WORKER)"

# The production processes, one per target, for hosts that each run some of them
# (docs/scaling-and-failure-model.md#scaling-out): any number of web and worker hosts, and
# exactly one beat wherever webhooks are used. Every worker runs the pipeline's sweep and
# housekeeping from its own timer, but the webhook sweep and the hourly pruning of usage counts
# and settled webhook events run only from beat.
web: migrate
	$(BIN)/gunicorn batchsite.wsgi -c batchsite/gunicorn_conf.py --bind $(or $(HOST),0.0.0.0):$(PORT) \
		--workers $(WEB_WORKERS)

# Several workers on one host need names of their own: `make worker WORKER_NAME=second`
# (node second@HOST; Chunk.worker records it). Without one the node is celery@HOST.
# WORKER_QUEUES names the queues it takes (default pipeline,chunks). Webhook deliveries have a
# pool of their own, `make worker WORKER_QUEUES=webhooks WORKER_NAME=webhooks`, of
# WEBHOOK_WORKERS processes, so a slow receiver never holds a process the pipeline needs.
WORKER_QUEUES ?= pipeline,chunks
worker: install
	$(BIN)/celery -A batchsite worker --loglevel=INFO $(if $(WORKER_NAME),--hostname=$(WORKER_NAME)@%h) \
		--queues=$(WORKER_QUEUES) $(if $(filter webhooks,$(WORKER_QUEUES)),--concurrency=$(call setting,WEBHOOK_WORKERS))

beat: install
	$(BIN)/celery -A batchsite beat --loglevel=INFO

# Debian's chromium for the browser tests (tests/pages), which Playwright drives; Playwright's
# own browser download is never used. Installs only when missing (needs root, as in CI).
browser:
	test -x /usr/bin/chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }

# libfaketime for the clock-skew tests (tests/batches/pipeline/test_clock_skew.py), which run
# workers with their clocks moved. Installs only when missing (needs root, as in CI).
faketime:
	test -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 || { apt-get update && apt-get install -y --no-install-recommends faketime; }

# iptables for the partition test (tests/batches/pipeline/test_partition.py), which drops every
# packet of a worker in its own network namespace. Installs only when missing (needs root).
iptables:
	command -v iptables >/dev/null || { apt-get update && apt-get install -y --no-install-recommends iptables; }

TEST_DATA_DIR ?= $(CURDIR)/var/test
test: export DATA_DIR := $(TEST_DATA_DIR)
test: install-dev browser faketime iptables
	rm -rf "$(DATA_DIR)/prometheus"
	$(BIN)/pytest $(PYTEST_ARGS)

# Validates deploy/ with the tools that run here (the compose file against the compose-spec
# schema, the Dockerfile with hadolint, the units with systemd-analyze); says which it skipped.
# It fails when a process's command there drifts from this file's (web, worker, beat, migrate).
# DEPLOY_DIR: another copy of deploy/ to check (tests/test_deploy.py).
DEPLOY_DIR ?= deploy
deploy-check: install-dev
	$(BIN)/python deploy/check.py $(DEPLOY_DIR)

# The long versions of the fault, fairness and stop suites and the soak-marked tests (an hour
# or more); run them in services mode, e.g. with DATABASE_URL and CELERY_BROKER_URL set as in
# .ci/run.
soak: export DATA_DIR := $(TEST_DATA_DIR)
soak: install-dev browser faketime iptables
	FAULT_LINES=$${FAULT_LINES:-150000} FAIRNESS_LINES=$${FAIRNESS_LINES:-300000} \
		STOP_ROUNDS=$${STOP_ROUNDS:-50} PARTITION_SECONDS=$${PARTITION_SECONDS:-300} \
		SUMMARY_LINES=$${SUMMARY_LINES:-1000000} ETA_LINES=$${ETA_LINES:-1000000} \
		SCHEDULE_SECONDS=$${SCHEDULE_SECONDS:-60} DEADLINE_LINES=$${DEADLINE_LINES:-1000000} \
		DEADLINE_SECONDS=$${DEADLINE_SECONDS:-20} PRIORITY_LINES=$${PRIORITY_LINES:-2000000} \
		PAUSE_SECONDS=$${PAUSE_SECONDS:-30} MIXED_MEMORY_LINES=$${MIXED_MEMORY_LINES:-1000000} \
		$(BIN)/pytest -m "soak or slow" $(PYTEST_ARGS)

# The benchmark (bench/README.md): the whole set on PostgreSQL + Redis with real processes, a
# table and one final key=value line with every measure and ratio. The database named by
# BENCH_DATABASE_URL is DROPPED and recreated; BENCH_BROKER_URL's Redis db is flushed.
# Sizes: BENCH_ARGS, e.g. BENCH_ARGS="--lines 200000 --update-lines 200000".
.PHONY: bench
BENCH_ARGS ?=
bench: install
	$(BIN)/python bench/pipeline_bench.py all $(BENCH_ARGS)

# The docs site (mkdocs.yml, docs/): `docs` serves it on 127.0.0.1:DOCS_PORT and rebuilds on
# change; `docs-build` builds it into var/site, every warning (a broken link or anchor) an error.
.PHONY: docs docs-build
DOCS_PORT ?= 8001
docs: install-dev
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: install-dev
	$(BIN)/mkdocs build --strict

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
