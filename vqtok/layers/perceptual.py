"""LPIPS perceptual distance with weights from local files (never downloaded).

Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018,
arXiv:1801.03924, version 0.1 of the ``lpips`` package: a frozen ImageNet backbone (VGG-16 or AlexNet, in
torchvision's layer layout) read at five depths; each feature map is unit-normalised over channels, the squared
difference of the two images' maps is weighted per channel by a learned 1x1 conv ("linear head"), averaged over
space and summed over depths. Written for vqtok after the paper and the package's layout, so the package's
``weights/v0.1/{vgg,alex}.pth`` heads and torchvision's ``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``
backbones load as they are; nothing here imports torchvision or touches the network.

Feature networks are pluggable: :func:`register_feature_net` adds a backbone (a ``features`` ``nn.Sequential``, the
slice boundaries and the channels of each slice).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LPIPS", "FeatureNet", "lpips_head_file", "register_feature_net", "list_feature_nets"]


@dataclass(frozen=True)
class FeatureNet:
    """A backbone read at several depths.

    Attributes:
        build: ``() -> nn.Sequential`` with torchvision's layer indices (randomly initialised).
        bounds: End index (exclusive) of each slice in ``features``.
        channels: Channels of each slice's output.
    """

    build: Callable[[], nn.Sequential]
    bounds: tuple[int, ...]
    channels: tuple[int, ...]


_NETS: dict[str, FeatureNet] = {}


def register_feature_net(name: str, net: FeatureNet) -> None:
    """Makes ``net`` available as ``LPIPS(net=name)``."""
    if name in _NETS:
        raise ValueError(f"feature net {name!r} is already registered")
    _NETS[name] = net


def list_feature_nets() -> list[str]:
    """Registered feature networks."""
    return sorted(_NETS)


def _vgg16() -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
            c = int(v)
    return nn.Sequential(*layers)


def _alexnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )  # fmt: skip


register_feature_net("vgg", FeatureNet(_vgg16, (4, 9, 16, 23, 30), (64, 128, 256, 512, 512)))
register_feature_net("alex", FeatureNet(_alexnet, (2, 5, 8, 10, 12), (64, 192, 384, 256, 256)))


def lpips_head_file(net: str) -> Path:
    """The linear-head weights shipped inside the installed ``lpips`` package (found without importing it).

    Raises:
        FileNotFoundError: When the package (or its file) is not installed.
    """
    spec = importlib.util.find_spec("lpips")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "weights" / "v0.1" / f"{net}.pth"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"LPIPS head weights for {net!r} not found: name a file (lpips 'weights/v0.1/{net}.pth') or install the "
        "'lpips' package (pip install --no-deps lpips), which ships them"
    )


def _read_weights(path: str | os.PathLike[str], what: str) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} not found (weights are never downloaded; name a local file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise ValueError(f"{what} {str(path)!r} is not a readable torch state dict: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{what} {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


class LPIPS(nn.Module):
    """Frozen LPIPS distance between two image batches in ``[0, 1]``; gradients reach the inputs only.

    Args:
        net: Registered feature network (``"vgg"``, ``"alex"``).
        backbone: Path of the backbone's ``state_dict``: torchvision's (``features.N.weight`` keys; the classifier
            is ignored), or the bare ``features`` (``N.weight``). Required: random backbone features are no metric.
        head: Path of the linear heads (``lin{k}.model.1.weight``); ``None``: the ``lpips`` package's file.

    Raises:
        FileNotFoundError: Naming the missing file.
        ValueError: When a file does not fit the architecture.
    """

    def __init__(
        self, net: str = "vgg", backbone: str | os.PathLike[str] = "", head: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__()
        if net not in _NETS:
            raise ValueError(f"unknown LPIPS feature net {net!r}; registered: {list_feature_nets()}")
        spec = _NETS[net]
        self.bounds = spec.bounds
        self.features = spec.build()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in spec.channels)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        if not backbone:
            raise FileNotFoundError(
                f"LPIPS needs the {net!r} backbone weights: name a local file (torchvision's state dict, e.g. "
                "vgg16-397923af.pth); they are never downloaded"
            )
        self._load_backbone(_read_weights(backbone, f"LPIPS {net} backbone weights"), str(backbone))
        head_path = Path(head) if head else lpips_head_file(net)
        self._load_heads(_read_weights(head_path, f"LPIPS {net} head weights"), str(head_path))
        self.requires_grad_(False)
        self.eval()

    def _load_backbone(self, state: dict[str, Tensor], source: str) -> None:
        if any(k.startswith("features.") for k in state):
            state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        self._strict_load(self.features, state, source)

    def _load_heads(self, state: dict[str, Tensor], source: str) -> None:
        renamed = {f"{k[3]}.weight": v for k, v in state.items() if k.startswith("lin") and k.endswith(".weight")}
        self._strict_load(self.heads, renamed, source)

    @staticmethod
    def _strict_load(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
        own = module.state_dict()
        bad = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
        if bad:
            raise ValueError(f"{source!r} does not fit the LPIPS architecture (keys/shapes: {bad[:6]})")
        module.load_state_dict(state)

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode: a frozen metric has no training behaviour."""
        return super().train(False)

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` (1-channel images are repeated to RGB) -> ``(B,)`` distances."""
        if recon.shape != target.shape or recon.ndim != 4 or recon.shape[1] not in (1, 3):
            raise ValueError(
                f"LPIPS compares two (B, 3, H, W) (or 1-channel) batches, got {tuple(recon.shape)} and "
                f"{tuple(target.shape)}"
            )
        b = recon.shape[0]
        x = torch.cat([recon, target]).expand(-1, 3, -1, -1)
        h = (x * 2 - 1 - self.shift) / self.scale
        total = x.new_zeros(b, dtype=torch.float32)
        start = 0
        for end, head in zip(self.bounds, self.heads, strict=True):
            h = self.features[start:end](h)
            start = end
            f = h.float()
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            diff = (f[:b] - f[b:]).pow(2)
            total = total + F.conv2d(diff, head.weight.float()).mean((1, 2, 3))
        return total
