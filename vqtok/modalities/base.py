"""The modality descriptor: everything vqtok needs to know about one kind of signal, in one object.

A :class:`Modality` holds the file formats a modality is read from (one reader per suffix), the rule that
turns a raw array into the float layout its tokenizers take, the per-example fidelity metrics, the raw bit
depth used for compression ratios and the report panels. The trainer, the CLI, the exporter and
:class:`~vqtok.vocab.MultimodalVocab` look a descriptor up by the tokenizer's ``modality`` name and call it;
none of them branches on modality names. Adding a modality is one module plus :func:`register_modality`.

Layering: this package sits above ``metrics`` (it calls the metric and report functions) and below ``data``,
``vocab``, ``train`` and ``cli``; it never imports from them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..metrics.report import Panel

__all__ = ["Modality", "Panel", "ReadOptions", "Reader", "batch_from_array", "pixel_modality"]


@dataclass(frozen=True)
class ReadOptions:
    """What a reader needs to know about the model that will take the signal.

    Attributes:
        channels: Channels the tokenizer expects (``None``: keep the file's own).
        sample_rate: Required sample rate in Hz of audio (``None``: any; no resampling is ever done).
    """

    channels: int | None = None
    sample_rate: int | None = None


#: ``reader(data, source, options) -> one example`` in the modality's layout (no batch dimension);
#: ``source`` names the file in error messages.
Reader = Callable[[bytes, str, ReadOptions], Tensor]


@dataclass(frozen=True)
class Modality:
    """One kind of signal.

    Attributes:
        name: Registry name, the value of ``Tokenizer.modality`` (``"image"``, ``"audio"`` ...).
        example_ndim: Dimensions of one example without the batch, channels first (``(C, H, W)``: 3).
        readers: Lower-case file suffix -> reader. ``.npy`` is not listed: every modality reads arrays
            through :meth:`from_array`.
        from_array: ``(array, source) -> tensor`` (float32 signals; int64 graph node ids): the modality's stated
            rule for raw numbers
            (which dtypes are accepted and how they are scaled); raises ``ValueError``/``TypeError``
            naming ``source``.
        value_range: Closed range every value read by :attr:`readers` or :attr:`from_array` lies in (``None``:
            any finite float32).
        metrics: ``(recon, target) -> {name: (B,) tensor}`` fidelity metrics, or ``None``.
        raw_bits_per_value: Bits of one raw value (8 for uint8 pixels), for the compression ratio.
        report: ``(directory, originals, recons, context) -> [Panel]``: writes the modality's report files.
        read_options: ``tokenizer config -> ReadOptions``: what the readers need to know about a model.
        sniff: ``(first bytes) -> suffix or None``: recognises the modality's files by content, for data
            without a trustworthy file name (Parquet byte columns).
        model_metrics: ``(model, recon, target) -> {name: (B,) tensor}``: per-example metrics that need the
            model (a sample rate); NaN marks an example where the metric is undefined (left out of its mean).
        model_summary: ``model -> {name: float}``: per-model figures for ``vqtok eval`` (bitrate, latency, speed).
    """

    name: str
    example_ndim: int
    readers: Mapping[str, Reader]
    from_array: Callable[[np.ndarray, str], Tensor]
    value_range: tuple[float, float] | None = None
    metrics: Callable[[Tensor, Tensor], dict[str, Tensor]] | None = None
    raw_bits_per_value: float | None = None
    report: Callable[[Path, Tensor, Tensor, Mapping[str, Any]], list[Panel]] | None = None
    read_options: Callable[[Any], ReadOptions] = field(default=lambda config: ReadOptions())
    sniff: Callable[[bytes], str | None] = field(default=lambda head: None)
    model_metrics: Callable[[Any, Tensor, Tensor], dict[str, Tensor]] | None = None
    model_summary: Callable[[Any], dict[str, float]] | None = None

    @property
    def suffixes(self) -> tuple[str, ...]:
        """File suffixes this modality reads, lower case, sorted (``.npy`` excluded)."""
        return tuple(sorted(self.readers))

    def read_bytes(self, data: bytes, source: str, options: ReadOptions | None = None, suffix: str = "") -> Tensor:
        """Decodes one file's bytes to one example (no batch dimension).

        The reader is chosen by ``suffix`` when it is one of :attr:`suffixes`, else by content (:attr:`sniff`),
        else the first reader registered (the modality's main format) is tried.

        Raises:
            ValueError: On an empty, truncated or unreadable file; the message names ``source``.
        """
        options = options or ReadOptions()
        if not data:
            raise ValueError(f"{source}: the file is empty (0 bytes)")
        suffix = suffix.lower()
        if not self.readers:
            raise ValueError(f"{source}: {self.name} signals are read from .npy arrays only, not from files")
        if suffix not in self.readers:
            suffix = self.sniff(data[:64]) or next(iter(self.readers))
        return self.readers[suffix](data, source, options)

    def read_file(self, path: str | os.PathLike[str], options: ReadOptions | None = None) -> Tensor:
        """Reads one file of this modality as one example (no batch dimension).

        Raises:
            FileNotFoundError: When ``path`` is missing.
            ValueError: On a folder, an unsupported suffix or an unreadable file; the message names ``path``.
        """
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder, not a {self.name} file")
        if not path.is_file():
            raise FileNotFoundError(f"input {str(path)!r} not found")
        suffix = path.suffix.lower()
        if suffix not in self.readers:
            raise ValueError(
                f"{str(path)!r}: {suffix or 'no suffix'} is not a {self.name} format; expected one of "
                f"{', '.join(self.suffixes)} or .npy"
            )
        return self.read_bytes(path.read_bytes(), repr(str(path)), options, suffix)

    def write_report(
        self,
        directory: str | os.PathLike[str],
        metrics: dict[str, float],
        originals: Tensor | None = None,
        recons: Tensor | None = None,
        counts: Tensor | None = None,
        title: str = "vqtok evaluation",
        **context: Any,
    ) -> Path:
        """Writes the modality's panels and the report page (:func:`vqtok.metrics.report.write_report`).

        Args:
            directory: Report folder (created).
            metrics: Scalar metrics for the table.
            originals: Inputs in the tokenizer's layout, e.g. ``(N, C, H, W)``.
            recons: Their reconstructions, same shape.
            counts: ``(V,)`` code histogram.
            title: Page title.
            **context: What the panels may use, e.g. ``sample_rate`` and ``audio_examples`` for audio.

        Returns:
            Path of ``index.html``.
        """
        from ..metrics.report import write_report

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        panels: list[Panel] = []
        if self.report is not None and originals is not None and recons is not None and originals.numel():
            panels = self.report(directory, originals, recons, context)
        return write_report(directory, metrics, counts, title, panels)


def batch_from_array(modality: Modality, arr: np.ndarray, source: str, channels: int | None) -> Tensor:
    """A batch ``(N, C, ...)`` from an array that holds one example or many, by one rule for every modality.

    With ``n = modality.example_ndim`` (channels first): an ``n + 1``-D array is a batch; an ``n``-D array is
    one example when its first axis equals ``channels`` (or ``channels`` is unknown), else, for single-channel
    models, a batch of single-channel examples; an ``(n - 1)``-D array is one single-channel example.
    Values go through ``modality.from_array`` (dtype and scaling rule: float32 for signals, int64 for node ids).

    Raises:
        ValueError: On an empty array, an array with another number of dimensions or channels.
    """
    x = modality.from_array(arr, source)
    n = modality.example_ndim
    if x.numel() == 0:
        raise ValueError(f"{source}: the array is empty (shape {tuple(x.shape)})")
    if x.ndim == n - 1:
        x = x[None, None]
    elif x.ndim == n:
        single = n == 0 or channels is None or x.shape[0] == channels or channels != 1
        x = x[None] if single else x[:, None]
    if x.ndim != n + 1 or (channels is not None and n >= 1 and x.shape[1] != channels):
        want = f"{channels} channel(s)" if channels is not None else "a channel axis"
        raise ValueError(
            f"{source}: cannot read an array of shape {tuple(arr.shape)} as {modality.name} examples with {want} "
            f"(expected {n + 1} dimensions (N, C, ...) or one example without N)"
        )
    return x


def pixel_modality(**fields: Any) -> Modality:
    """A :class:`Modality` of 8-bit pixels scaled to ``[0, 1]`` (images, videos), read for a model's ``in_channels``.

    Args:
        **fields: The other :class:`Modality` fields (``name``, ``example_ndim``, ``readers`` ...).
    """
    return Modality(
        value_range=(0.0, 1.0),
        raw_bits_per_value=8.0,
        read_options=lambda config: ReadOptions(channels=getattr(config, "in_channels", None)),
        **fields,
    )
