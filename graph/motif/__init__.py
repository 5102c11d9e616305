"""Motifs in Neo4j: the compiler from the motif IR (analysis.motif) to Cypher, and its execution."""

from graph.motif.cypher import compile_motif

__all__ = ["compile_motif"]
