# Two entry points from a fresh clone: `make course` and `make test`. Each creates/reuses .venv and
# installs what it needs. GPU users: `make course TORCH_SPEC="torch==2.13.0 --index-url <cuda index>"`
# or use environment.yml (conda) and `make course VENV=$CONDA_PREFIX TORCH_SPEC=`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= auto
OUT ?= build
PY := $(VENV)/bin/python

.PHONY: course test test-browser lab bench sync lint clean student

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, from the spec above, so the project's `torch>=2.3` never pulls a different build
$(VENV)/.torch: | $(PY)
	$(if $(strip $(TORCH_SPEC)),$(PY) -m pip install -q $(TORCH_SPEC),@echo using the torch already in $(VENV))
	touch $@

$(VENV)/.lab: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -q -e ".[lab]"
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

## make course [PROFILE=smoke|cpu|gpu|auto]: run every chapter into build/ (ipynb + html + summary.md)
course: $(VENV)/.lab
	$(PY) -m labcore course run --profile $(PROFILE) --out $(OUT)

## make student [OUT=build/student]: student notebooks (each exercise's solution removed, outputs stripped)
student: $(VENV)/.lab
	$(PY) -m labcore course student --out $(if $(filter command line,$(origin OUT)),$(OUT),build/student)

## make test: the whole suite (unit, kernels under TRITON_INTERPRET=1, notebooks at smoke, nbval)
test: $(VENV)/.dev
	$(PY) -m ruff check labcore kernels tests
	$(PY) -m labcore nb check
	LABCORE_PROFILE=smoke TRITON_INTERPRET=1 $(PY) -m pytest tests --nbval-lax notebooks \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider $(PYTEST_ARGS)

## make test-browser: JupyterLab in headless Chromium (Debian's chromium package, driven by Playwright; no
## browser download): every widget notebook runs at smoke, each widget draws and answers its controls;
## screenshots in $(OUT)/screenshots/
test-browser: $(VENV)/.browser
	LABCORE_BROWSER=1 LABCORE_SCREENSHOTS=$(OUT)/screenshots $(PY) -m pytest tests/browser -p no:cacheprovider -v \
		$(PYTEST_ARGS)

$(VENV)/.browser: pyproject.toml $(VENV)/.torch
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] || { echo "install Debian's chromium package (as root)"; exit 1; }; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	$(PY) -m pip install -q -e ".[lab,browser]"
	touch $@

## make lab: JupyterLab on notebooks/
lab: $(VENV)/.lab
	cd notebooks && ../$(VENV)/bin/jupyter lab

## make bench NAME=soft_top_p: one benchmark -> build/bench/NAME.json + .html
bench: $(VENV)/.lab
	$(PY) -m labcore.bench $(NAME) --out $(OUT)/bench

## make sync: rebuild notebooks/*.ipynb from their paired .py files (run after editing a .py)
sync: $(VENV)/.dev
	$(PY) -m labcore nb sync

lint: $(VENV)/.dev
	$(PY) -m ruff check labcore kernels tests

clean:
	rm -rf $(OUT) .pytest_cache
