"""The motif language: parse (parser.py) to an IR (ir.py), then compile to Cypher
(cypher.py) or count in memory (count.py)."""

from graph.motif.count import automorphism_count, count_motif, find_motif
from graph.motif.cypher import compile_motif
from graph.motif.ir import Constraint, Edge, Motif
from graph.motif.parser import parse_motif

__all__ = [
    "Constraint",
    "Edge",
    "Motif",
    "automorphism_count",
    "compile_motif",
    "count_motif",
    "find_motif",
    "parse_motif",
]
