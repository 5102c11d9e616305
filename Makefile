# The two commands: `make demo` and `make test`. Everything else is a step they use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := .demo
DEMO_VERSIONS := 117,343
PORT ?= 8000

.PHONY: demo test install neo4j-start neo4j-stop lint typecheck schema clean-demo

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

neo4j-start: install
	$(BIN)/cgraph neo4j start

neo4j-stop:
	$(BIN)/cgraph neo4j stop

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check graph loaders api
	$(BIN)/mypy

# Whole suite against a real Neo4j (the project's own local server unless NEO4J_URI is set).
# pytest exits 5 when it collected nothing: that is a failure here.
test: neo4j-start
	CGRAPH_KEEP_NEO4J=1 $(BIN)/pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$rc

demo: neo4j-start
	@echo "Neo4j Browser: http://127.0.0.1:7474/browser/  (user neo4j, password from NEO4J_PASSWORD)"
