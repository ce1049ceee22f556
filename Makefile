# tff_prune: `make demo` (main job) and `make test` (test suite). Both set up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
# Demo: FedAvg against the default pruning mode (--schedule auto) on the same clients, 30 rounds each (the
# paper trains 500). Override, e.g. DEMO_FLAGS="--rounds 200".
DEMO_FLAGS ?= --dataset femnist --model cnn --rounds 30 --clients-per-round 10 --local-epochs 5 --seed 0
PYTEST_FLAGS ?=

# Bazel (Debian's bazel-bootstrap 4.2.3) runs the tests with the venv's Python first on PATH.
BAZEL ?= bazel
DATA_DIR ?= $(abspath ../shared/data)
BAZEL_CACHE := $(CURDIR)/.cache/bazel-data
BAZEL_TEST_FLAGS ?= --test_tag_filters=-integration
BAZEL_ENV_FLAGS = --test_env=TFF_PRUNE_DATA_DIR=$(DATA_DIR) --test_env=TFF_PRUNE_CACHE_DIR=$(BAZEL_CACHE) \
	--sandbox_writable_path=$(BAZEL_CACHE) --test_output=errors

.PHONY: setup demo test bazel-test clean

$(VENV)/.installed: requirements.txt requirements-tff.txt pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "tff_prune needs Python 3.11 (TFF 0.87); set PY=/path/to/python3.11"'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-tff.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .  # tff_prune, mobile and the tff-prune-* commands
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python scripts/run_simulation.py $(DEMO_FLAGS) --no-prune --overwrite --output-dir $(DEMO_DIR)/fedavg
	$(BIN)/python scripts/run_simulation.py $(DEMO_FLAGS) --overwrite --output-dir $(DEMO_DIR)/pruned
	$(BIN)/python scripts/compare_runs.py $(DEMO_DIR)/fedavg $(DEMO_DIR)/pruned --output $(DEMO_DIR)/comparison.md

test: setup
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests

bazel-test: setup
	@command -v $(BAZEL) >/dev/null || { echo "bazel not found: apt-get install -y bazel-bootstrap" >&2; exit 1; }
	mkdir -p $(BAZEL_CACHE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BAZEL) test $(BAZEL_ENV_FLAGS) $(BAZEL_TEST_FLAGS) //...

clean:
	rm -rf $(VENV) runs .pytest_cache .cache
	-$(BAZEL) clean --expunge 2>/dev/null
