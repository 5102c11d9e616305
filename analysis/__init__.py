"""Pure analysis of a release held in memory: the motif language (parser, IR, counter), the
triad census, null models and the in-memory release graph. Imports neither `graph/` nor the
Neo4j driver (an import-linter contract in pyproject.toml holds that line)."""
