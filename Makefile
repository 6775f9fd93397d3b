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
RUN_WEB = $(BIN)/gunicorn batchsite.wsgi --bind 0.0.0.0:$(PORT) --workers 2 --threads 4 \
	--no-control-socket --access-logfile -
RUN_WORKER = $(BIN)/celery -A batchsite worker --beat --loglevel=INFO --concurrency=2
# batchsite/supervise.sh starts both and stops both when one exits or on Ctrl-C (then it says
# "Stopped." and exits 0). On a terminal it runs as its own foreground job (`set -m`), so Ctrl-C
# reaches it and its children but not make, which would otherwise die of the signal however
# the recipe ends. SIGTERM to make ends the recipe's shell; the supervisor sees its parent gone
# and stops too. No gunicorn control socket: its default path is shared by every gunicorn of
# the user.
run: migrate
	@echo "Serving on http://127.0.0.1:$(PORT), data in $(DATA_DIR); Ctrl-C stops."
	@if [ -t 0 ]; then set -m; fi; \
	bash batchsite/supervise.sh $$$$ "$(RUN_WEB)" "$(RUN_WORKER)"

# The production processes, one per target, for hosts that each run some of them (README,
# "Scaling out"): any number of web and worker hosts, exactly one beat.
web: migrate
	$(BIN)/gunicorn batchsite.wsgi --bind 0.0.0.0:$(PORT) --workers $${WEB_WORKERS:-4} --threads 4 \
		--no-control-socket --access-logfile -

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
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
