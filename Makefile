# The two README commands: `make run` (gateway on http://127.0.0.1:8000) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_MODEL := models/demo
DEMO_ADAPTERS := models/adapters
DEMO_EMBED := models/demo-embed
CONFIG ?= configs/local.yaml
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: run test lint typecheck check-config demo-model install clean redis-server postgresql \
	chromium ui bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

$(DEMO_MODEL)/config.json: | $(STAMP)
	$(BIN)/python -m deployments.demo.model --out $(DEMO_MODEL) --if-missing

# LoRA fine-tunes of the demo model (`formal`, `excited`), served multiplexed over it.
$(DEMO_ADAPTERS)/excited/adapter_config.json: $(DEMO_MODEL)/config.json
	$(BIN)/python -m deployments.demo.adapters --base $(DEMO_MODEL) --out $(DEMO_ADAPTERS) --if-missing

# The demo embedding model: the demo model's transformer without its LM head (seconds).
$(DEMO_EMBED)/config.json: $(DEMO_MODEL)/config.json
	$(BIN)/python -m deployments.demo.embedding --base $(DEMO_MODEL) --out $(DEMO_EMBED) --if-missing

DEMO_ALL := $(DEMO_MODEL)/config.json $(DEMO_ADAPTERS)/excited/adapter_config.json $(DEMO_EMBED)/config.json

demo-model: $(STAMP) $(DEMO_ALL)

run: $(STAMP) $(DEMO_ALL)
	$(BIN)/python -m serve_app.runtime.launch $(CONFIG)

# The Redis rate-limit backend is tested against a real redis-server (started by the tests).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || sudo apt-get install -y -qq redis-server; }

# The PostgreSQL ledger and key stores are tested against a real server (initdb by the tests).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null 2>&1 || sudo apt-get install -y -qq postgresql; }

# The console's browser tests drive Debian's Chromium through Playwright (its own browser
# download is not reachable from CI); CHROMIUM_PATH overrides /usr/bin/chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || sudo apt-get install -y -qq chromium; }

# Rebuild the console (ui/: TypeScript, Vite, Chart.js) into serve_app/http/ui/dist, which is
# committed and ships in the package: only this target needs Node 20 and npm.
ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

test: $(STAMP) redis-server postgresql chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Smoke run of the peer harness (ours beside LiteLLM, interleaved, 1 round), then the ratio
# table (CPU ms/req, ours / LiteLLM) from its summary.md. BENCH_DELAYS=0,50 adds the 50 ms rows.
ifndef BENCH_OUT
BENCH_OUT := /tmp/peerbench/results-make-$(shell date +%Y%m%d-%H%M%S)
endif
BENCH_DELAYS ?= 0
bench: $(STAMP)
	OUT=$(BENCH_OUT) DELAYS=$(BENCH_DELAYS) N=$${N:-200} N_C1=$${N_C1:-30} ROUNDS=$${ROUNDS:-1} \
	  QUIET_WAIT=$${QUIET_WAIT:-0} bash bench/run_peer.sh
	@echo; echo "$(BENCH_OUT)/summary.md"; echo
	@$(BIN)/python -m bench.ratio_table $(BENCH_OUT)/summary.md

lint: $(STAMP)
	$(BIN)/ruff check serve_app deployments tests bench
	$(BIN)/ruff format --check serve_app deployments tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Production configs need an admin key to pass; a placeholder is enough to check them.
check-config: $(STAMP)
	for f in configs/*.yaml; do GATEWAY_ADMIN_KEY=$${GATEWAY_ADMIN_KEY:-check-only} LEDGER_URL=$${LEDGER_URL:-postgresql://check@db/check} $(BIN)/llm-gateway-check-config $$f || exit 1; done

clean:
	rm -rf $(VENV) models
