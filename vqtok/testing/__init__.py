"""Test helpers shipped with the package: the quantizer contract checks and device selection.

Submodules: ``configs`` (tiny tokenizers and training runs), ``nearest`` (the fp64 nearest-code reference),
``onnx`` (export test cases), ``graphs``, ``autoencoder`` and ``memory``.
"""

from .contract import assert_quantizer_contract as assert_quantizer_contract
from .contract import make_latents as make_latents
from .device import skip_if_no_cuda as skip_if_no_cuda
from .device import test_device as test_device

__all__ = ["assert_quantizer_contract", "make_latents", "skip_if_no_cuda", "test_device"]
