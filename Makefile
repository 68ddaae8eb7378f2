# Two commands do all set-up on a fresh machine:
#   make run    install into .venv, then start the main job
#   make test   install into .venv (with test extras), then run the test suite
# The CPU build of torch is installed first so pip never pulls a multi-GB CUDA build.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0

.PHONY: install run test test-torch test-jax

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_CPU)" || $(BIN)/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install --quiet -e ".[dashboard,test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/streamlit run dashboard/app.py

test: test-torch test-jax

test-torch: install
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -m backend
