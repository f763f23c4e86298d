"""Vector post-training quantization of model weights (the VPTQ role), plus a round-to-nearest baseline."""

from .finetune import finetune_quantized as finetune_quantized
from .quantize import QuantizeReport as QuantizeReport
from .quantize import collect_importance as collect_importance
from .quantize import quantize_linear as quantize_linear
from .quantize import quantize_model as quantize_model
from .quantize import stage_sizes as stage_sizes
from .rtn import quantize_model_rtn as quantize_model_rtn
from .rtn import rtn_quantize as rtn_quantize
from .vq_linear import VQLinear as VQLinear

__all__ = [
    "QuantizeReport",
    "VQLinear",
    "collect_importance",
    "finetune_quantized",
    "quantize_linear",
    "quantize_model",
    "quantize_model_rtn",
    "rtn_quantize",
    "stage_sizes",
]
