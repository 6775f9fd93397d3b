# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DATA_DIR ?= $(CURDIR)/var
export DATA_DIR

INSTALLED := $(VENV)/.installed

.PHONY: install run web worker beat test lint migrate browser

install: $(INSTALLED)

# Reinstalls only when requirements.txt changes.
$(INSTALLED): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

migrate: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

# The web server and one Celery worker (with its embedded beat) on the embedded default.
# Ctrl-C (or SIGTERM to make) stops both; if either one exits, the other is stopped too, so
# a port already in use does not leave a worker running behind a dead web server. Polls with
# `kill -0` because `wait -n` is not in every /bin/sh. No gunicorn control socket: its default
# path is shared by every gunicorn of the user.
run: migrate
	@echo "Serving on http://127.0.0.1:$(PORT), data in $(DATA_DIR); Ctrl-C stops."
	@rm -rf "$${PROMETHEUS_MULTIPROC_DIR:-$(DATA_DIR)/prometheus}"
	@interrupted=; trap 'interrupted=1' INT TERM; \
	$(BIN)/celery -A batchsite worker --beat --loglevel=INFO --concurrency=2 & worker=$$!; \
	$(BIN)/gunicorn batchsite.wsgi --bind 0.0.0.0:$(PORT) --workers 2 --threads 4 \
		-c python:operating.gunicorn_hooks --no-control-socket --access-logfile - & web=$$!; \
	while [ -z "$$interrupted" ] && kill -0 $$web 2>/dev/null && kill -0 $$worker 2>/dev/null; do sleep 1; done; \
	kill -TERM $$web $$worker 2>/dev/null; wait; \
	if [ -n "$$interrupted" ]; then echo "Stopped."; exit 0; fi; \
	echo "The web server or the worker exited; stopped the other." >&2; exit 1

# The production processes, one per target, for hosts that each run some of them (README,
# "Scaling out"): any number of web and worker hosts, exactly one beat.
web: migrate
	$(BIN)/gunicorn batchsite.wsgi --bind 0.0.0.0:$(PORT) --workers $${WEB_WORKERS:-4} --threads 4 \
		-c python:operating.gunicorn_hooks --no-control-socket --access-logfile -

worker: install
	$(BIN)/celery -A batchsite worker --loglevel=INFO

beat: install
	$(BIN)/celery -A batchsite beat --loglevel=INFO

# Debian's chromium for the browser tests (tests/pages), which Playwright drives; Playwright's
# own browser download is never used. Installs only when missing (needs root, as in CI).
browser:
	test -x /usr/bin/chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }

TEST_DATA_DIR ?= $(CURDIR)/var/test
test: DATA_DIR := $(TEST_DATA_DIR)
test: install browser
	rm -rf "$(DATA_DIR)/prometheus"
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
