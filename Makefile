# Front door: `make run` (the main job on the embedded defaults) and `make test`.
# Needs only python3 and make: uv is installed into .tools/ and the locked environment into .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
CLAIMS ?= 200000
DATA := data/claims.parquet
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: run serve train data test test-fast bench clean

# The main job: serve the champion on http://127.0.0.1:3000; with an empty registry it first
# trains one on 200,000 generated claims.
run: serve

serve: $(VENV)/.synced
	$(BIN)/claimtriage serve

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups --all-extras --python $(PYTHON)
	@touch $@

data: $(DATA)

$(DATA): | $(VENV)/.synced
	@mkdir -p data
	$(BIN)/claimtriage generate --claims $(CLAIMS) --seed 0 --out $(DATA)

train: $(DATA) | $(VENV)/.synced
	$(BIN)/claimtriage train --data $(DATA)

# The review page is tested in a real browser: Debian's chromium (Playwright cannot fetch its own here).
CHROMIUM := .tools/.chromium

# The stamp is written only once chromium is really there, so a failed install (no root, no
# network) is tried again on the next `make test` instead of being remembered as done.
$(CHROMIUM): | $(UV)
	@if command -v chromium >/dev/null \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; then \
		touch $@; \
	else \
		echo "warning: could not install Debian's chromium (needs root); the browser test will be skipped"; \
	fi

test: $(VENV)/.synced $(CHROMIUM)
	$(BIN)/python -m pytest

test-fast: $(VENV)/.synced
	$(BIN)/python -m pytest -m "not slow"

bench: $(VENV)/.synced
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_service.py

clean:
	rm -rf data mlflow.db mlartifacts claims.db claims.db-* .pytest_cache
