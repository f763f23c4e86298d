"""Vector indexes: IVF + PQ/OPQ/RQ/LSQ codes + re-ranking, one-file storage, faiss interchange.

Example:
    >>> from vqtok.vectors.index import index_factory, save_index, load_index
    >>> index = index_factory(384, "OPQ16,IVF1024,PQ16", nprobe=16).train(train)
    >>> index.add(database)
    >>> distances, ids = index.search(queries, k=10)
    >>> save_index("db.vqindex", index)
"""

from .base import Index as Index
from .factory import index_factory as index_factory
from .faiss_bridge import from_faiss as from_faiss
from .faiss_bridge import to_faiss as to_faiss
from .io import load_index as load_index
from .io import save_index as save_index

__all__ = ["Index", "from_faiss", "index_factory", "load_index", "save_index", "to_faiss"]
