# The two commands: `make demo` and `make test`. Everything else is a step they use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := .demo
DEMO_ARGS := --cells 3000 --synapses 300000 --versions 117,343 --seed 1
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo demo-data test install neo4j-start neo4j-stop lint bench unit

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m api.graphiql >/dev/null || echo "warning: GraphiQL's files were not fetched (npm); /graphql in a browser says how" >&2
	touch $@

install: $(BIN)/.installed

neo4j-start: install
	$(BIN)/cgraph neo4j start

neo4j-stop:
	$(BIN)/cgraph neo4j stop

# ruff (lint + format) over the whole tree, mypy over every package (bench included),
# import-linter over the rooms' arrows (pyproject.toml)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Whole suite against a real Neo4j (the project's own local server unless NEO4J_URI is set).
# pytest exits 5 when it collected nothing: that is a failure here.
test: neo4j-start
	CGRAPH_KEEP_NEO4J=1 $(BIN)/pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$rc

# Unit tests only: no database is started
unit: install
	$(BIN)/pytest tests/unit

# A small two-release synthetic dataset (files named nuclei_v117.parquet, synapses_v117.parquet, ...)
demo-data: neo4j-start
	test -f $(DEMO_DIR)/synapses_v343.parquet || $(BIN)/cgraph synth --out $(DEMO_DIR) $(DEMO_ARGS)
	for v in 117 343; do \
	  $(BIN)/cgraph load --version $$v --nuclei $(DEMO_DIR)/nuclei_v$$v.parquet \
	    --synapses $(DEMO_DIR)/synapses_v$$v.parquet --neurons $(DEMO_DIR)/neurons_v$$v.parquet \
	    --cell-types $(DEMO_DIR)/cell_types_v$$v.parquet --skip-existing || exit 1; \
	done
	$(BIN)/cgraph releases

# `cgraph neo4j start` (in demo-data) has printed the Browser address, user and password;
# `cgraph serve` prints the GraphQL address once
demo: demo-data
	@echo "Neo4j Browser: for the cell colours run :style with graph/browser-style.grass pasted after it (README: Exploring in Neo4j Browser)"
	@$(BIN)/cgraph serve --host $(HOST) --port $(PORT) & pid=$$!; \
	  for i in $$(seq 1 100); do curl -sf http://$(HOST):$(PORT)/healthz >/dev/null && break; sleep 0.2; done; \
	  echo "Sample query:  curl -s http://$(HOST):$(PORT)/graphql -H 'content-type: application/json' \\"; \
	  echo "                 -d '{\"query\":\"{ releases { version status cells edges synapses } }\"}'"; \
	  curl -s http://$(HOST):$(PORT)/graphql -H 'content-type: application/json' \
	    -d '{"query":"{ releases { version status cells edges synapses } }"}'; echo; \
	  echo "Serving until Ctrl-C."; wait $$pid
