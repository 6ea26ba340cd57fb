# ncbench: `make bench` runs the default suite, `make test` the tests. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Idle OpenMP and OpenBLAS threads sleep instead of spinning: on a shared CPU spinning threads cost 10x,
# and the engine's two pools take turns (see ncbench/provenance/threads.py); the CLI sets the same itself.
export OMP_WAIT_POLICY ?= PASSIVE
export OPENBLAS_THREAD_TIMEOUT ?= 1
# torch/torchvision as installed by the first step, as pip constraints: installing the `lightning` extra
# must never replace them (a plain `pip install lightning` may pull another torch build).
TORCH_PINS := $(VENV)/torch-constraints.txt

.PHONY: bench claims test test-slow test-gpu benchmark performance-table loaded-epoch gpu-check lint setup clean

setup: $(STAMP)

# (Re)build the venv when it is missing or older than pyproject.toml / the learn2learn installer.
$(STAMP): pyproject.toml scripts/install-learn2learn.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,hf]'
	$(BIN)/python -c 'import importlib.metadata as m; print("\n".join(p + "==" + m.version(p) for p in ("torch", "torchvision")))' > $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -c $(TORCH_PINS) -e '.[dev,hf,lightning]'
	bash scripts/install-learn2learn.sh $(VENV)
	@touch $(STAMP)

bench: $(STAMP)
	$(BIN)/ncbench suite default --jobs auto

# The committed claims scorecard, regenerated: the claims suite (42 min on a quiet 2-core CPU machine,
# docs/claims.md), its claims.csv, claims_detail.csv and claims.md into leaderboards/, then the boards'
# README re-rendered. The run's JSON document (its folder) is kept in results/claims-run.json. A run the
# suite flags (exit status 1) is excluded from the scorecard and named there, so scoring goes on.
claims: $(STAMP)
	@mkdir -p results
	$(BIN)/ncbench suite claims --jobs auto --json > results/claims-run.json || test -s results/claims-run.json
	$(BIN)/python -m ncbench.claims "$$($(BIN)/python -c 'import json; print(json.load(open("results/claims-run.json"))["run_dir"])')" \
		--out leaderboards --markdown leaderboards/claims.md
	$(BIN)/ncbench leaderboard --render

# One pytest worker per CPU (pytest-xdist); a module's tests stay on one worker, so module-scoped
# fixtures (shared tiny runs) are built once.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadscope

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

benchmark: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-only -m "" -p no:randomly

# `make benchmark`, then its ratio table (.benchmarks/ratio-table.md) into docs/performance.md.
performance-table: benchmark
	$(BIN)/python scripts/performance_table.py

# One epoch of the default suite's training, quiet and beside two busy processes of its own: the ratio.
loaded-epoch: $(STAMP)
	$(BIN)/python scripts/loaded_epoch.py

# One command for everything GPU (tests, GPU-tier tasks for an epoch, AMP trainer, CUDA engine);
# without a CUDA device it says so and exits 0.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py

lint: $(STAMP)
	$(BIN)/ruff check ncbench tests scripts
	$(BIN)/lint-imports   # the layering contracts of pyproject.toml [tool.importlinter]

clean:
	rm -rf $(VENV) build *.egg-info
