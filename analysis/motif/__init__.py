"""The motif language: parse (parser.py) to an IR (ir.py), count in memory (count.py).
The Cypher compiler is in graph.motif."""

from analysis.motif.count import automorphism_count, count_motif, find_motif
from analysis.motif.ir import Constraint, Edge, Motif
from analysis.motif.parser import parse_motif

__all__ = [
    "Constraint",
    "Edge",
    "Motif",
    "automorphism_count",
    "count_motif",
    "find_motif",
    "parse_motif",
]
