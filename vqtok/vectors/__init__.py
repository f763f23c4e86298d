"""Offline vector compression (the FAISS role): PQ, OPQ, RQ and LSQ codecs, bit-packing, ADC search.

Example:
    >>> from vqtok.vectors import OPQ, ADCIndex, save, load
    >>> codec = OPQ(dim=384, num_codebooks=8).fit(train)   # 8 bytes per vector
    >>> index = ADCIndex(codec); index.add(database)
    >>> distances, ids = index.search(queries, k=10)
    >>> save("codes.safetensors", codec, codec.encode(database))
"""

from .base import VectorCodec as VectorCodec
from .io import load as load
from .io import save as save
from .lsq import LSQ as LSQ
from .opq import OPQ as OPQ
from .packing import code_size as code_size
from .packing import pack_indices as pack_indices
from .packing import unpack_indices as unpack_indices
from .pq import PQ as PQ
from .rq import RQ as RQ
from .search import ADCIndex as ADCIndex
from .search import adc_distances as adc_distances
from .search import adc_search as adc_search

__all__ = [
    "ADCIndex",
    "LSQ",
    "OPQ",
    "PQ",
    "RQ",
    "VectorCodec",
    "adc_distances",
    "adc_search",
    "code_size",
    "load",
    "pack_indices",
    "save",
    "unpack_indices",
]
