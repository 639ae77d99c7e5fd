# The portal's two commands: `make demo` runs it on the embedded default, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test install lint migrate serve bench clean cdk

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# Links in email and the tenant area's curl line point where the demo serves (HOST, PORT), unless
# PORTAL_BASE_URL or METERED_API_BASE_URL is set: in the environment, on make's command line or in .env.
in_dotenv = $(shell grep -Eqs '^[[:space:]]*(export[[:space:]]+)?$(1)[[:space:]]*=' .env && echo yes)
ifeq ($(PORTAL_BASE_URL)$(call in_dotenv,PORTAL_BASE_URL),)
demo: export PORTAL_BASE_URL = http://$(HOST):$(PORT)
endif
ifeq ($(METERED_API_BASE_URL)$(call in_dotenv,METERED_API_BASE_URL),)
demo: export METERED_API_BASE_URL = http://$(HOST):$(PORT)/demo-api
endif

# Set up and run the portal on the embedded default (SQLite, filesystem broker, local lake, local identity).
demo: migrate
	$(PY) manage.py load_demo --with-traffic
	@echo "Serving http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/, tenant area: http://$(HOST):$(PORT)/tenant/)  Ctrl-C stops everything."
	@trap 'kill 0' EXIT INT TERM; \
	  $(PY) -m celery -A portal worker --beat --pool=solo --loglevel=WARNING & \
	  $(PY) manage.py runserver $(HOST):$(PORT)

serve: migrate
	$(PY) manage.py runserver $(HOST):$(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Set up and run the whole test suite. Tests that need PostgreSQL or Redis are skipped, and listed, without them.
test: lint
	$(PY) -m pytest

# The pinned AWS CDK CLI (infra/package.json, package-lock.json) into infra/node_modules, where the portal's
# deployments find it (CDK_CLI). Needs Node.js 18+ and npm; `make test` does not need it.
CDK_BIN := infra/node_modules/.bin/cdk
$(CDK_BIN): infra/package.json infra/package-lock.json
	npm ci --prefix infra --no-audit --no-fund
	touch $@

cdk: install $(CDK_BIN)
	$(CDK_BIN) --version

bench: install
	@failed=""; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "these benches did not finish:$$failed"; exit 1; fi

clean:
	rm -rf var artifacts .pytest_cache
