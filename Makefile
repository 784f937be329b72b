# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= work/demo

.PHONY: setup demo test lint bench
setup:
	@bash infra/local/setup.sh

demo: setup
	$(VENV)/bin/vjepa demo --workdir $(WORKDIR)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

bench: setup
	bash benchmarks/setup_peer.sh  # curation's peer (video2dataset) in its own venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
