# Loyalty CRM. `make run`: the local demo on embedded defaults (SQLite, tasks in process).
# `make test`: the whole test suite (SQLite by default; set DATABASE_URL to run it on PostgreSQL).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test install install-dev migrate worker beat check clean

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The local demo: migrate, load demo data once, create the demo admin (SQLite only), serve.
run: export DEBUG ?= 1
run: $(VENV)/.installed
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	$(PY) manage.py seed_demo_rewards
	$(PY) manage.py recalculate_tiers
	-$(PY) manage.py demo_admin
	@echo "Serving http://$(HOST):$(PORT)/admin/  ·  API http://$(HOST):$(PORT)/api/v1/  ·  docs http://$(HOST):$(PORT)/api/docs/"
	$(PY) manage.py runserver $(HOST):$(PORT)

test: $(VENV)/.installed-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --no-input

# Celery worker with the beat scheduler embedded (development); needs CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0).
# Production runs them apart: any number of `celery -A config worker`, one `celery -A config beat` (README).
worker: $(VENV)/.installed
	@test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0"; exit 2; }
	$(VENV)/bin/celery -A config worker --beat --loglevel INFO

# Beat alone: sends the schedules stored in the database. A second one stands by (Redis lock, config/beat.py).
beat: $(VENV)/.installed
	@test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0"; exit 2; }
	$(VENV)/bin/celery -A config beat --loglevel INFO

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
