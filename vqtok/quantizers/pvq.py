"""Pyramid Vector Quantization.

Fischer, "A Pyramid Vector Quantizer", IEEE Trans. Inf. Theory 32(4), 1986; applied to LLM weights in
van der Ouderaa et al., "Pyramid Vector Quantization for LLMs", arXiv:2410.16926.

A latent ``x`` is split into a direction and a gain. The direction is quantized to a point of the pyramid
``P(D, K) = {y in Z^D : ||y||_1 = K}`` (``K`` = ``pulses``) projected onto the unit sphere; the gain is
quantized to one of ``num_scales`` log-uniform levels. Each token therefore has two indices,
``[point id, scale id]``: the point id is an exact enumeration of the pyramid (Fischer's counting
recursion), so no codebook is ever stored and ``N(D, K)`` may be in the billions.

Written from the papers; no code was taken from other implementations.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._registry import register_quantizer
from .base import Quantizer, QuantizerOutput

__all__ = ["PVQ", "pyramid_size"]

_INT64_MAX = 2**63 - 1
# Rows x candidate moves evaluated at once by the local search, to bound scratch memory.
_REFINE_TILE = 1 << 22


def _count_table(dim: int, pulses: int) -> list[list[int]]:
    """``table[n][k] = N(n, k)``, the number of points of ``Z^n`` with L1 norm ``k``, as exact Python ints.

    Fischer's recursion: ``N(n, k) = N(n-1, k) + N(n-1, k-1) + N(n, k-1)`` with ``N(n, 0) = 1`` and
    ``N(0, k > 0) = 0``.
    """
    table = [[1] + [0] * pulses]
    for n in range(1, dim + 1):
        row = [1] * (pulses + 1)
        prev = table[n - 1]
        for k in range(1, pulses + 1):
            row[k] = prev[k] + prev[k - 1] + row[k - 1]
        table.append(row)
    return table


def pyramid_size(dim: int, pulses: int) -> int:
    """Number of pyramid points ``N(dim, pulses)``, as an exact Python int (may exceed int64)."""
    if dim < 1 or pulses < 1:
        raise ValueError(f"dim and pulses must be >= 1, got dim={dim}, pulses={pulses}")
    return _count_table(dim, pulses)[dim][pulses]


@register_quantizer("pvq", example={"dim": 6, "pulses": 5, "num_scales": 16, "scale_min": 0.1, "scale_max": 20.0})
class PVQ(Quantizer):
    """Pyramid vector quantizer: a pyramid point for the direction and a log-uniform level for the gain.

    Indices have ``index_shape == (2,)``: entry 0 is the point id in ``[0, N(D, K))``, entry 1 the scale
    id in ``[0, num_scales)``. ``codebook_size`` is the larger of the two ranges; the exact per-entry
    ranges come from ``_index_upper_bounds``.

    Encoding is Fischer's projection: scale ``|x|`` to L1 norm ``K``, floor, then add pulses one at a
    time where they raise the cosine to ``x`` most, then move single pulses between coordinates while
    that raises the cosine (at most ``max_refine_moves`` moves). The result is exactly the nearest
    pyramid point by angle in the vast majority of cases and always one that no single pulse move can
    improve. The gain is ``<x, u>`` for the chosen unit direction ``u`` (the least-squares gain), rounded
    to the nearest level in log space.

    Args:
        dim: Latent width D.
        pulses: L1 norm K of the pyramid points; more pulses give a finer direction grid.
        num_scales: Number of gain levels S.
        scale_min: Smallest gain level (> 0).
        scale_max: Largest gain level (>= ``scale_min``).
        max_refine_moves: Upper bound on single-pulse moves of the local search per token; 0 keeps the
            greedy result. Each move costs ``O(D^2)`` per token that still improves.

    Raises:
        ValueError: On non-positive sizes, a bad scale range, or ``N(D, K)`` that does not fit in int64.
    """

    def __init__(
        self,
        dim: int,
        pulses: int,
        num_scales: int = 64,
        scale_min: float = 1e-2,
        scale_max: float = 1e2,
        max_refine_moves: int = 16,
    ) -> None:
        super().__init__()
        if dim < 1 or pulses < 1 or num_scales < 1:
            raise ValueError(f"dim, pulses and num_scales must be >= 1, got {dim}, {pulses}, {num_scales}")
        if not 0 < scale_min <= scale_max or not math.isfinite(scale_max):
            raise ValueError(f"need 0 < scale_min <= scale_max < inf, got {scale_min}, {scale_max}")
        if max_refine_moves < 0:
            raise ValueError(f"max_refine_moves must be >= 0, got {max_refine_moves}")
        table = _count_table(dim, pulses)
        num_points = table[dim][pulses]
        if num_points > _INT64_MAX:
            raise ValueError(
                f"PVQ with dim={dim}, pulses={pulses} has N(D, K) = {num_points} points, which overflows int64; "
                "use fewer pulses or split the latent into groups"
            )
        self.dim = dim
        self.pulses = pulses
        self.num_scales = num_scales
        self.num_points = num_points
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.max_refine_moves = max_refine_moves
        self.codebook_size = max(num_points, num_scales)
        self.index_shape = (2,)

        counts = torch.tensor(table, dtype=torch.long)  # (D + 1, K + 1)
        # prefix[n, t + 1] = sum_{j <= t} N(n, j); bounded by N(n + 1, t + 1) / 2, so it fits in int64 too.
        prefix = torch.cat([torch.zeros(dim + 1, 1, dtype=torch.long), counts.cumsum(1)], 1)  # (D + 1, K + 2)
        levels = torch.logspace(math.log10(scale_min), math.log10(scale_max), num_scales, dtype=torch.float64)
        # Nearest level in log space = bucketize against geometric midpoints.
        boundaries = (levels[:-1] * levels[1:]).sqrt()
        # All derived from the constructor arguments, so none is saved in the state dict.
        self.register_buffer("_counts", counts, persistent=False)
        self.register_buffer("_prefix", prefix, persistent=False)
        self.register_buffer("_levels", levels.float(), persistent=False)
        self.register_buffer("_boundaries", boundaries, persistent=False)
        self.register_buffer("_bounds", torch.tensor([num_points, num_scales], dtype=torch.long), persistent=False)

    @property
    def bits_per_token(self) -> float:
        """``log2 N(D, K) + log2 S``: the two entries have different ranges."""
        return math.log2(self.num_points) + math.log2(self.num_scales)

    def _index_upper_bounds(self) -> Tensor:
        return self._bounds

    # -------------------------------------------------------------------------------- projection
    def project(self, latents: Tensor) -> Tensor:
        """Projects latents onto the pyramid (direction only).

        Args:
            latents: ``(N, D)`` floating point.

        Returns:
            ``(N, D)`` int64 pyramid points ``y`` with ``||y||_1 == pulses`` and the signs of ``latents``.
        """
        a = latents.detach().double().abs()
        # A zero latent has no direction; send it to the first axis so that encoding stays total.
        zero = a.sum(1) == 0
        a[zero, 0] = 1.0
        target = self.pulses * a / a.sum(1, keepdim=True)  # on the positive face of the pyramid
        y = self._fix_pulse_count(target, target.floor().long())
        if self.max_refine_moves:
            y = self._refine(a, y)
        sign = torch.where(latents.detach() < 0, -1, 1)
        return y * sign

    def _fix_pulse_count(self, target: Tensor, y: Tensor) -> Tensor:
        """Largest-remainder rounding: gives the missing pulses to the largest residuals ``target - y``.

        ``y = floor(target)`` sums to at most K (``target`` sums to K up to ~1e-15 relative error, and the
        sum of floors is an integer), and to more than ``K - D``, so at most ``D - 1`` pulses are missing.
        """
        need = (self.pulses - y.sum(1, keepdim=True)).clamp_min(0)  # (N, 1)
        order = (target - y).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(self.dim, device=y.device).expand_as(order))
        return y + (rank < need).long()

    def _refine(self, a: Tensor, y: Tensor) -> Tensor:
        """Local search: repeatedly applies the single pulse move (coordinate i -> j) with the best cosine.

        Only ``i`` with a pulse can give one; a target ``j`` either holds pulses or is empty, and among
        empty targets the largest ``|x_j|`` is always best. So ``min(K, D) * (min(K, D) + 1)`` candidate
        moves per token find the same best move as all ``D^2``.
        """
        c = min(self.pulses, self.dim)
        active = torch.arange(y.shape[0], device=y.device)
        tile = max(1, _REFINE_TILE // (c * (c + 1)))
        for _ in range(self.max_refine_moves):
            if active.numel() == 0:
                break
            improved = []
            for t0 in range(0, active.numel(), tile):
                rows = active[t0 : t0 + tile]
                ar, yr = a[rows], y[rows]
                held, held_pos = yr.topk(c, dim=1)  # (n, c); zeros past the last occupied coordinate
                empty_best = ar.masked_fill(yr > 0, -1.0).argmax(1, keepdim=True)  # (n, 1)
                src_pos = held_pos
                dst_pos = torch.cat([held_pos, empty_best], 1)  # (n, c + 1)
                src_ok = held > 0
                dst_ok = torch.cat([held > 0, (yr == 0).any(1, keepdim=True)], 1)
                a_src, y_src = ar.gather(1, src_pos), yr.gather(1, src_pos)
                a_dst, y_dst = ar.gather(1, dst_pos), yr.gather(1, dst_pos)
                s = (ar * yr).sum(1)
                q = (yr * yr).sum(1).double()
                # Moving a pulse from i to j: s' = s - a_i + a_j, q' = q - 2 y_i + 2 y_j + 2.
                s_new = s[:, None, None] - a_src[:, :, None] + a_dst[:, None, :]  # (n, src, dst)
                q_new = q[:, None, None] - 2 * y_src[:, :, None] + 2 * y_dst[:, None, :] + 2
                allowed = src_ok[:, :, None] & dst_ok[:, None, :] & (src_pos[:, :, None] != dst_pos[:, None, :])
                score = (s_new / q_new.sqrt()).masked_fill(~allowed, -1.0)
                best, arg = score.flatten(1).max(1)
                # Strict relative margin so that float ties cannot make the search cycle.
                better = best > (s / q.sqrt()) * (1 + 1e-12)
                moved = rows[better]
                src = src_pos[better].gather(1, (arg[better] // (c + 1))[:, None])[:, 0]
                dst = dst_pos[better].gather(1, (arg[better] % (c + 1))[:, None])[:, 0]
                y[moved, src] -= 1
                y[moved, dst] += 1
                improved.append(moved)
            active = torch.cat(improved)
        return y

    # ------------------------------------------------------------------------------- enumeration
    def point_to_index(self, points: Tensor) -> Tensor:
        """Exact rank of pyramid points (Fischer's enumeration).

        Coordinates are ranked in order, values ordered ``0, +1, -1, +2, -2, ...``.

        Args:
            points: ``(N, D)`` integer points with ``||y||_1 == pulses``.

        Returns:
            ``(N,)`` int64 ids in ``[0, N(D, K))``.
        """
        points = points.long()
        k = torch.full((points.shape[0],), self.pulses, dtype=torch.long, device=points.device)
        index = torch.zeros_like(k)
        for i in range(self.dim):
            n = self.dim - i
            v = points[:, i]
            m = v.abs()
            index += self._block_start(n, k, m) + torch.where(v < 0, self._counts[n - 1][k - m], 0)
            k = k - m
        return index

    def index_to_point(self, index: Tensor) -> Tensor:
        """Inverse of :meth:`point_to_index`.

        Args:
            index: ``(N,)`` int64 ids in ``[0, N(D, K))``.

        Returns:
            ``(N, D)`` int64 pyramid points.
        """
        r = index.long().clone()
        k = torch.full_like(r, self.pulses)
        steps = max(1, self.pulses.bit_length())
        coords = []
        for i in range(self.dim):
            n = self.dim - i
            # Bisection for the largest magnitude m whose block starts at or before r (starts are monotone).
            lo, hi = torch.zeros_like(k), k.clone()
            for _ in range(steps):
                mid = (lo + hi + 1) // 2
                ok = self._block_start(n, k, mid) <= r
                lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid - 1)
            m = lo
            r = r - self._block_start(n, k, m)
            positive_block = self._counts[n - 1][k - m]
            negative = (m > 0) & (r >= positive_block)
            r = r - torch.where(negative, positive_block, 0)
            coords.append(torch.where(negative, -m, m))
            k = k - m
        return torch.stack(coords, 1)

    def _block_start(self, n: int, k: Tensor, m: Tensor) -> Tensor:
        """First rank, among points of ``n`` coordinates and ``k`` pulses, whose first coordinate is ``+-m``.

        Magnitudes below ``m`` hold ``N(n-1, k) + 2 * sum_{j=1}^{m-1} N(n-1, k-j)`` points.
        """
        below = self._counts[n - 1][k] + 2 * (self._prefix[n - 1][k] - self._prefix[n - 1][(k - m + 1).clamp_min(0)])
        return torch.where(m > 0, below, 0)

    # ----------------------------------------------------------------------------------- contract
    def _encode(self, latents: Tensor, **options: Any) -> Tensor:
        points = self.project(latents)
        direction = F.normalize(points.double(), dim=1)
        gain = (latents.double() * direction).sum(1)  # >= 0: the point carries the latent's signs
        scale_ids = torch.bucketize(gain, self._boundaries)
        return torch.stack([self.point_to_index(points), scale_ids], 1)  # (N, 2)

    def _decode(self, indices: Tensor) -> Tensor:
        points = self.index_to_point(indices[:, 0])
        return self._levels[indices[:, 1]][:, None] * F.normalize(points.float(), dim=1)

    def _quantize(self, latents: Tensor) -> QuantizerOutput:
        indices = self._encode(latents)
        quantized = self._decode(indices)
        cosine = F.cosine_similarity(latents.detach(), quantized, dim=1).mean()
        if self.training:
            # Straight-through: the forward value is the quantized one, the gradient is the identity.
            quantized = latents + (quantized - latents).detach()
        return QuantizerOutput(quantized, indices, latents.new_zeros(()), metrics={"cosine": cosine})

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, pulses={self.pulses}, num_points={self.num_points}, num_scales={self.num_scales}, "
            f"scale_range=({self.scale_min:g}, {self.scale_max:g})"
        )
