# Two commands a fresh clone needs: `make demo` (compile and run ResNet-50, check it against
# onnxruntime) and `make test`. Each creates the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nnxc-installed

.PHONY: demo test lint fuzz conformance clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# The fuzz campaign: mutated models of every frontend, compiled in a resource-limited child for
# FUZZ_MINUTES; findings (input + error) go to out/fuzz/findings/. Exit status 1 on findings.
FUZZ_MINUTES ?= 10
FUZZ_ARGS ?=
fuzz: $(STAMP)
	$(PY) tests/fuzz/campaign.py --minutes $(FUZZ_MINUTES) --out out/fuzz $(FUZZ_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf out .pytest_cache
