"""Migration from vector-quantize-pytorch (lucidrains, MIT): its modules converted to vqtok quantizers.

``from_vector_quantize_pytorch(module)`` reads a ``VectorQuantize``, ``ResidualVQ``, ``FSQ`` or ``LFQ``
module's options and weights and returns the vqtok quantizer (``vq``, ``rvq``, ``fsq``, ``lfq``) whose eval
codes and outputs are the same. Options without a vqtok equivalent raise a ``ValueError`` naming them,
rather than converting to a quantizer that behaves differently. Training-only options (EMA decay,
dead-code threshold, loss weights) are carried over where vqtok has them; vqtok's losses follow its own
conventions (see ``docs/interop.md``), so a converted model resumes training close to, not exactly like,
the original.

Two conventions differ and are bridged here:

* LFQ bit order: vector-quantize-pytorch makes the first channel the most significant bit, vqtok the
  least significant. With projections, the projection weights are permuted so the codes are identical;
  without them the codes would be bit-reversed, so the conversion refuses unless
  ``allow_bit_reversed_codes=True`` (then :func:`reverse_bits` maps codes between the two).
* Layout: vqtok quantizers take channels-last latents ``(..., D)``; modules built for channel-first or
  image feature maps (``channel_last=False``, ``accept_image_fmap``, ``channel_first``) are refused.

Written for vqtok against vector-quantize-pytorch 1.32 (module attributes are read, no code copied).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..quantizers import Quantizer
from ..quantizers import create as create_quantizer

__all__ = ["VQTOK_NAMES", "from_vector_quantize_pytorch", "reverse_bits"]

#: vqtok registry names and kwargs the converter writes, in one place, so a rename in vqtok (e.g. the
#: generic residual wrapper) is a one-line change here.
VQTOK_NAMES: dict[str, str] = {
    "vq": "vq",
    "rvq": "rvq",
    "fsq": "fsq",
    "lfq": "lfq",
    "rvq.num_levels": "num_levels",
    "rvq.level_prefix": "levels.{i}.",
    "rvq.shared_codebook_dim": "shared_codebook_dim",
}


def _unsupported(kind: str, found: dict[str, Any]) -> None:
    bad = {k: v for k, v in found.items() if v}
    if bad:
        names = ", ".join(f"{k}={v!r}" for k, v in bad.items())
        raise ValueError(f"{kind} option(s) with no vqtok equivalent: {names}; see docs/interop.md for the table")


def _linear(module: nn.Module, name: str) -> nn.Linear | None:
    """The ``nn.Linear`` inside a projection (``Identity`` -> ``None``); refuses anything more."""
    if isinstance(module, nn.Identity):
        return None
    if isinstance(module, nn.Linear):
        return module
    inner = list(module.children()) if isinstance(module, nn.Sequential) else []
    if len(inner) == 1 and isinstance(inner[0], nn.Linear):
        return inner[0]
    kinds = [type(m).__name__ for m in inner] or [type(module).__name__]
    raise ValueError(f"{name} is {kinds}, not a plain linear projection (e.g. layernorm_after_project_in=True)")


def _copy_linear(state: dict[str, Tensor], prefix: str, linear: nn.Linear | None, name: str) -> None:
    if linear is None:
        return
    if linear.bias is None:
        raise ValueError(f"{name} has no bias (projection_has_bias=False); vqtok projections always have one")
    state[f"{prefix}weight"] = linear.weight.detach().clone()
    state[f"{prefix}bias"] = linear.bias.detach().clone()


def _load(quantizer: Quantizer, state: dict[str, Tensor], source: str) -> Quantizer:
    """Strict load with one error naming missing, unexpected and mis-shaped keys."""
    own = quantizer.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or extra or shapes:
        raise ValueError(f"converting {source}: missing {missing}, unexpected {extra}, mis-shaped {shapes}")
    quantizer.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return quantizer.eval()


# --------------------------------------------------------------------------------------- VectorQuantize
def _vq_kwargs(m: nn.Module) -> dict[str, Any]:
    cb = m._codebook
    gumbel = getattr(cb.gumbel_sample, "keywords", {})
    _unsupported(
        "VectorQuantize",
        {
            "heads": m.heads if m.heads != 1 else 0,
            "separate_codebook_per_head": m.separate_codebook_per_head,
            "orthogonal_reg_weight": m.orthogonal_reg_weight,
            "codebook_diversity_loss_weight": m.codebook_diversity_loss_weight,
            "commitment_use_cross_entropy_loss": m.commitment_use_cross_entropy_loss,
            "stochastic_sample_codes": gumbel.get("stochastic", False),
            "straight_through": gumbel.get("straight_through", False),
            "directional_reparam": m.directional_reparam,
            "affine_param": getattr(cb, "affine_param", False),
            "vq_bridge": cb.vq_bridge is not None,
            "in_place_codebook_optimizer": m.in_place_codebook_optimizer is not None,
            "sync_update_v": m.sync_update_v,
            "freeze_codebook": m.freeze_codebook,
            "route_gradients_to_input=False": not m.route_gradients_to_input,
            "ema_update=False without learnable_codebook (frozen codebook)": not cb.ema_update
            and not cb.learnable_codebook,
            "channel_last=False": not m.channel_last,
            "accept_image_fmap": m.accept_image_fmap,
            "accept_3d_fmap": m.accept_3d_fmap,
        },
    )
    codebook_dim = int(cb.embed.shape[-1])
    if codebook_dim > m.dim:
        raise ValueError(f"VectorQuantize codebook_dim={codebook_dim} > dim={m.dim}: vqtok only projects down")
    return {
        "dim": int(m.dim),
        "codebook_size": int(m.codebook_size),
        "codebook_dim": codebook_dim,
        "metric": "cosine" if m.use_cosine_sim else "l2",
        "ema_decay": None if cb.learnable_codebook else float(cb.decay),
        "commitment_weight": float(m.commitment_weight),
        # A module whose k-means has not run yet keeps k-means pending; a trained one is marked initialised.
        "kmeans_init": not bool(cb.initted),
        "kmeans_iters": int(cb.kmeans_iters),
        "dead_code_threshold": float(cb.threshold_ema_dead_code),
        "gradient": "rotation" if m.rotation_trick else "ste",
        "eps": float(cb.eps),
    }


def _vq_state(m: nn.Module, prefix: str = "") -> dict[str, Tensor]:
    cb = m._codebook
    state = {
        f"{prefix}embed": cb.embed[0].detach().clone(),
        f"{prefix}cluster_size": cb.cluster_size[0].detach().clone(),
        f"{prefix}initialized": torch.tensor(bool(cb.initted)),
    }
    if not cb.learnable_codebook:
        state[f"{prefix}embed_sum"] = cb.embed_avg[0].detach().clone()
    _copy_linear(state, f"{prefix}project_in.", _linear(m.project_in, "VectorQuantize.project_in"), "project_in")
    _copy_linear(state, f"{prefix}project_out.", _linear(m.project_out, "VectorQuantize.project_out"), "project_out")
    return state


def _convert_vq(m: nn.Module) -> Quantizer:
    q = create_quantizer(VQTOK_NAMES["vq"], **_vq_kwargs(m))
    return _load(q, _vq_state(m), "VectorQuantize")


def _convert_rvq(m: nn.Module) -> Quantizer:
    _unsupported(
        "ResidualVQ",
        {
            "codebook_size (per-level tuple)": not m.uniform_codebook_size,
            "shared_codebook": getattr(m, "shared_codebook", False) or m.layers[0]._codebook.manual_ema_update,
            "quantize_dropout (vqtok: quantizer_dropout, a per-example probability)": m.quantize_dropout,
            "implicit_neural_codebook": m.implicit_neural_codebook,
            "diveq": getattr(m, "diveq", False),
            "beam_size": m.beam_size,
            "quant_grad_frac": m.quant_grad_frac,
            "accept_image_fmap": m.accept_image_fmap,
        },
    )
    per_level = [_vq_kwargs(layer) for layer in m.layers]
    if any(kw != per_level[0] for kw in per_level[1:]):
        raise ValueError("ResidualVQ levels have different options; vqtok's rvq shares them across levels")
    kwargs = dict(per_level[0])
    kwargs.pop("codebook_dim")  # levels never project inside a ResidualVQ
    kwargs[VQTOK_NAMES["rvq.num_levels"]] = int(m.num_quantizers)
    state: dict[str, Tensor] = {}
    if m.has_projections:
        # ResidualVQ(codebook_dim=d != dim): one projection dim -> d around the whole stack, levels work in d.
        project_in = _linear(m.project_in, "ResidualVQ.project_in")
        kwargs[VQTOK_NAMES["rvq.shared_codebook_dim"]] = kwargs["dim"]
        kwargs["dim"] = int(project_in.in_features)  # ResidualVQ keeps no ``dim`` attribute
        _copy_linear(state, "project_in.", project_in, "project_in")
        _copy_linear(state, "project_out.", _linear(m.project_out, "ResidualVQ.project_out"), "project_out")
    q = create_quantizer(VQTOK_NAMES["rvq"], **kwargs)
    for i, layer in enumerate(m.layers):
        state.update(_vq_state(layer, VQTOK_NAMES["rvq.level_prefix"].format(i=i)))
    return _load(q, state, "ResidualVQ")


# ------------------------------------------------------------------------------------------------ FSQ
def _convert_fsq(m: nn.Module) -> Quantizer:
    _unsupported(
        "FSQ",
        {
            "num_codebooks": m.num_codebooks if m.num_codebooks != 1 else 0,
            "preserve_symmetry": m.preserve_symmetry,
            "noise_dropout": m.noise_dropout,
            "bound_hard_clamp": m.bound_hard_clamp,
            "orthogonal_rotation": m.orthogonal_rotation,
            "channel_first": m.channel_first,
        },
    )
    levels = [int(v) for v in m._levels.tolist()]
    q = create_quantizer(VQTOK_NAMES["fsq"], levels=levels, dim=int(m.dim))
    state: dict[str, Tensor] = {}
    _copy_linear(state, "project_in.", _linear(m.project_in, "FSQ.project_in"), "project_in")
    _copy_linear(state, "project_out.", _linear(m.project_out, "FSQ.project_out"), "project_out")
    return _load(q, state, "FSQ")


# ------------------------------------------------------------------------------------------------ LFQ
def reverse_bits(indices: Tensor, bits: int) -> Tensor:
    """Maps LFQ codes between the two bit orders (an involution): bit ``j`` <-> bit ``bits - 1 - j``."""
    powers = 2 ** torch.arange(bits, device=indices.device)
    digits = (indices[..., None] // powers) % 2
    return (digits * powers.flip(0)).sum(-1)


def _convert_lfq(m: nn.Module, allow_bit_reversed_codes: bool) -> Quantizer:
    _unsupported(
        "LFQ",
        {
            "num_codebooks": m.num_codebooks if m.num_codebooks != 1 else 0,
            "spherical (vqtok: bsq)": m.spherical,
            "soft_clamp_input_value": m.soft_clamp_input_value,
            "straight_through_activation": not isinstance(m.activation, nn.Identity),
            "frac_per_sample_entropy": m.frac_per_sample_entropy if m.frac_per_sample_entropy != 1 else 0,
            "experimental_softplus_entropy_loss": m.experimental_softplus_entropy_loss,
            "orthogonal_rotation": m.orthogonal_rotation,
            "channel_first": m.channel_first,
        },
    )
    bits = int(m.codebook_dim)
    project_in = _linear(m.project_in, "LFQ.project_in (cosine_sim_project_in?)")
    project_out = _linear(m.project_out, "LFQ.project_out")
    if project_in is None and bits > 1 and not allow_bit_reversed_codes:
        raise ValueError(
            "LFQ without projections: vector-quantize-pytorch makes channel 0 the most significant bit, vqtok the "
            "least, so the converted codes would be bit-reversed (outputs are identical). Pass "
            "allow_bit_reversed_codes=True and map codes with vqtok.compat.reverse_bits(indices, bits)"
        )
    q = create_quantizer(
        VQTOK_NAMES["lfq"],
        codebook_size=int(m.codebook_size),
        dim=int(m.dim),
        scale=float(m.codebook_scale),
        # vqp's forward default inv_temperature=100: per-bit logits 4 s z * 100, vqtok's are 4 s z / temperature.
        temperature=0.01,
        entropy_weight=float(m.entropy_loss_weight),
        codebook_entropy_weight=float(m.diversity_gamma),
        commitment_weight=float(m.commitment_loss_weight),
    )
    state: dict[str, Tensor] = {}
    _copy_linear(state, "project_in.", project_in, "project_in")
    _copy_linear(state, "project_out.", project_out, "project_out")
    if project_in is not None:
        # Reverse the code channels so that vqtok's least significant bit is vqp's last channel.
        state["project_in.weight"] = state["project_in.weight"].flip(0)
        state["project_in.bias"] = state["project_in.bias"].flip(0)
        state["project_out.weight"] = state["project_out.weight"].flip(1)
    return _load(q, state, "LFQ")


# --------------------------------------------------------------------------------------------- public
def from_vector_quantize_pytorch(module: nn.Module, *, allow_bit_reversed_codes: bool = False) -> Quantizer:
    """Converts a vector-quantize-pytorch quantizer to the equivalent vqtok quantizer (in eval mode).

    Args:
        module: A ``VectorQuantize``, ``ResidualVQ``, ``FSQ`` or ``LFQ`` instance (trained or not).
        allow_bit_reversed_codes: For an LFQ without projections, accept codes that are the bit reversal
            of the original's (see the module docstring); otherwise such a module is refused.

    Returns:
        A vqtok :class:`~vqtok.quantizers.Quantizer` with the module's weights: on channels-last latents its
        eval ``encode`` equals the module's indices and its eval ``forward(z).quantized`` the module's output.

    Raises:
        TypeError: On a module of another class.
        ValueError: On options without a vqtok equivalent (named in the message).
    """
    converters = {
        "VectorQuantize": _convert_vq,
        "ResidualVQ": _convert_rvq,
        "FSQ": _convert_fsq,
        "LFQ": lambda m: _convert_lfq(m, allow_bit_reversed_codes),
    }
    name = type(module).__name__
    origin = type(module).__module__.split(".")[0]
    if name not in converters or origin != "vector_quantize_pytorch":
        raise TypeError(
            f"cannot convert {type(module).__module__}.{name}: supported are vector_quantize_pytorch's "
            f"{sorted(converters)}"
        )
    with torch.no_grad():
        return converters[name](module)
