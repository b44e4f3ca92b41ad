# Two entry points, each creating the environment itself:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned: a matching pair on this kind of machine's disk (runs on CPU and CUDA).
	# Any other spec pulls GBs from the registry; torch 2.13's local CPU wheel has no torchvision that loads beside it.
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[test,dev]"
	touch $(STAMP)

.PHONY: install demo test test-all lint
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/histo2st demo --out outputs/demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
