"""Graph algorithms (pure tensor functions on ``(2, E)`` edge lists) and the NodePiece table fitting built on them."""

from .algorithms import STRATEGIES as STRATEGIES
from .algorithms import anchor_distances as anchor_distances
from .algorithms import anchors_from_neighbors as anchors_from_neighbors
from .algorithms import check_edges as check_edges
from .algorithms import pagerank as pagerank
from .algorithms import relation_context as relation_context
from .algorithms import select_anchors as select_anchors
from .algorithms import undirected_adjacency as undirected_adjacency
from .nodepiece import NodePieceTables as NodePieceTables
from .nodepiece import check_tables as check_tables
from .nodepiece import fit_tables as fit_tables
from .nodepiece import lookup_hashes as lookup_hashes
from .nodepiece import new_node_tables as new_node_tables
from .nodepiece import tables_from_dict as tables_from_dict
from .nodepiece import tables_to_dict as tables_to_dict
from .nodepiece import token_names as token_names

__all__ = [
    "NodePieceTables",
    "STRATEGIES",
    "anchor_distances",
    "anchors_from_neighbors",
    "check_edges",
    "check_tables",
    "fit_tables",
    "lookup_hashes",
    "new_node_tables",
    "pagerank",
    "relation_context",
    "select_anchors",
    "tables_from_dict",
    "tables_to_dict",
    "token_names",
    "undirected_adjacency",
]
