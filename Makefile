# Two commands do all set-up on a fresh machine:
#   make run    install into .venv (the package and the dashboard), then start the dashboard
#   make test   install into .venv (with the test extras: jax, playwright, …), then run the tests
# The CPU build of torch is installed first so pip never pulls a multi-GB CUDA build.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-test run test test-torch test-jax test-tensorflow

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_CPU)" || $(BIN)/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install --quiet -e ".[dashboard]"
	# Compile the fit's simulation kernel (numba) into its cache once, not at the first infer.
	$(BIN)/python -c "from ei_keras.inference.least_squares import compile_kernel; compile_kernel()"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dashboard,test]"
	touch $@

# tensorflow (about 1.4 GB) only for its own test run; it keeps torch, keras 3 and numpy.
$(VENV)/.installed-tensorflow: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e ".[dashboard,test,tensorflow]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/streamlit run dashboard/app.py

test: test-torch test-jax test-tensorflow

test-torch: install-test
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q

test-jax: install-test
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -m backend

test-tensorflow: $(VENV)/.installed-tensorflow
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q -m backend
