# Loyalty CRM. `make run`: the local demo on embedded defaults (SQLite, tasks in process).
# `make test`: the whole test suite (SQLite by default; set DATABASE_URL to run it on PostgreSQL).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint install install-dev migrate worker beat check clean messages lock

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

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The code checks `make test` runs first (seconds): the layers and no module circles (import-linter, contracts in
# pyproject.toml), then ruff's rules. pre-commit runs the same two before each commit (`.venv/bin/pre-commit install`).
lint: $(VENV)/.installed-dev
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

# The locks (docs/deployment.md, "Dependencies"): requirements.in and requirements-dev.in compiled by pip-tools into
# requirements.txt and requirements-dev.txt, every transitive dependency pinned. Existing pins are kept; to move one,
# `make lock LOCK_ARGS="--upgrade-package django-unfold"` (or LOCK_ARGS=--upgrade for all). Commit the .in and the .txt.
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url \
	--no-emit-find-links $(LOCK_ARGS)
lock: $(VENV)/.installed-dev
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --no-input

# Celery worker with the beat scheduler embedded (development); needs CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0).
# Production runs them apart: any number of `celery -A config worker`, one `celery -A config beat` (docs/deployment.md).
worker: $(VENV)/.installed
	@test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0"; exit 2; }
	$(VENV)/bin/celery -A config worker --beat --loglevel INFO

# Beat alone: sends the schedules stored in the database. A second one stands by (Redis lock, members/beat.py).
beat: $(VENV)/.installed
	@test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0"; exit 2; }
	$(VENV)/bin/celery -A config beat --loglevel INFO

# Translations (docs/translations.md): every string marked in our code and templates into locale/zh_Hans, and Unfold's
# own strings (it ships no Chinese) into locale/vendor/zh_Hans; then compile both. Translate what is new, commit .po and .mo.
MESSAGES_IGNORE := --ignore=.venv --ignore=bench --ignore=tests --ignore=var --ignore=staticfiles --ignore=node_modules
UNFOLD_MESSAGES := var/unfold-messages
messages: $(VENV)/.installed
	$(PY) manage.py makemessages --locale zh_Hans --add-location file $(MESSAGES_IGNORE)
	rm -rf $(UNFOLD_MESSAGES) && mkdir -p $(UNFOLD_MESSAGES)/locale
	cp -R "$$($(PY) -c 'import os, unfold; print(os.path.dirname(unfold.__file__))')" $(UNFOLD_MESSAGES)/unfold
	cd $(UNFOLD_MESSAGES) && env -u DJANGO_SETTINGS_MODULE "$(CURDIR)/$(PY)" -m django makemessages --locale zh_Hans \
		--no-location --ignore "unfold/static/*"
	msgmerge --quiet --update --backup=none --no-fuzzy-matching --no-location \
		locale/vendor/zh_Hans/LC_MESSAGES/django.po $(UNFOLD_MESSAGES)/locale/zh_Hans/LC_MESSAGES/django.po
	rm -rf $(UNFOLD_MESSAGES)
	$(PY) manage.py compilemessages --locale zh_Hans $(MESSAGES_IGNORE)

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
