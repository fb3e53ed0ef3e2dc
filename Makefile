# The README's commands. Everything runs from a fresh clone with only python3 (with venv) and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PORT ?= 5000
SANDBOX_PORT ?= $(shell echo $$(($(PORT) + 1)))
MAIL_PORT ?= $(shell echo $$(($(PORT) + 2)))

.PHONY: run test audit serve bench lint translations clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

translations: $(VENV)/.runtime
	$(BIN)/pybabel compile --use-fuzzy -d portal/translations > /dev/null

# The portal, the simulated providers (sandbox/, its own app, database and port, with its mail catcher on MAIL_PORT)
# and the background worker (mails, reconcile, link expiry), each its own process under honcho (Procfile); one Ctrl-C
# stops them all.
run: export PORTAL_PORT = $(PORT)
run: export SANDBOX_PORT := $(SANDBOX_PORT)
run: export PORTAL_BASE_URL ?= http://127.0.0.1:$(PORT)
run: export SANDBOX_URL ?= http://127.0.0.1:$(SANDBOX_PORT)
run: export SANDBOX_PORTAL_URL ?= http://127.0.0.1:$(PORT)
run: export SANDBOX_SMTP_PORT := $(MAIL_PORT)
run: export MAIL_SERVER ?= 127.0.0.1
run: export MAIL_PORT := $(MAIL_PORT)
run: $(VENV)/.runtime translations
	$(FLASK) db upgrade
	$(FLASK) demo-data
	@echo "Portal:    http://127.0.0.1:$(PORT)"
	@echo "Sandbox:   $$SANDBOX_URL  (the simulated providers and their console; test card 4242 4242 4242 4242)"
	@echo "Mail:      $$SANDBOX_URL/mail  (every mail the portal sends, caught on 127.0.0.1:$(MAIL_PORT))"
	$(BIN)/honcho -f Procfile start

serve: $(VENV)/.runtime translations
	$(FLASK) db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# ruff (lint and format), bandit, then the suite on SQLite (TEST_WORKERS processes; each test has its own database file), then, when
# TEST_POSTGRES_URL names a PostgreSQL database the tests may empty (.ci/run sets it), the suite again on PostgreSQL:
# serially, since it is one database, and without the browser tests. Both runs always run; either failing fails.
TEST_WORKERS ?= 2
test: $(VENV)/.dev translations
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@out=$$($(BIN)/bandit -q -r portal -c pyproject.toml 2>&1); status=$$?; \
	  [ -z "$$out" ] || printf '%s\n' "$$out" | grep -v 'nosec encountered'; exit $$status
	@status=0; \
	echo "== the suite on SQLite"; \
	env -u TEST_DATABASE_URL $(BIN)/pytest -n $(TEST_WORKERS) || status=$$?; \
	if [ -n "$$TEST_POSTGRES_URL" ]; then \
	  echo "== the suite on PostgreSQL ($${TEST_POSTGRES_URL##*@})"; \
	  TEST_DATABASE_URL="$$TEST_POSTGRES_URL" $(BIN)/pytest -p no:xdist -m "not e2e" || status=$$?; \
	else \
	  echo "== TEST_POSTGRES_URL is not set: no PostgreSQL run (.ci/run sets it)"; \
	fi; \
	exit $$status

# Known vulnerabilities in the pinned dependencies. Needs access to PyPI's vulnerability data, so it is not part of
# `make test` (CI machines without that access would fail on every package).
audit: $(VENV)/.dev
	$(BIN)/pip-audit --strict -r requirements.txt -r requirements-dev.txt

bench: $(VENV)/.dev translations
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
