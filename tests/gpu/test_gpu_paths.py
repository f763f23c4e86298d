"""Every GPU path: the Triton search against fp64 (ties, bf16/fp16 inputs, large offsets), every registered
quantizer's contract on CUDA, and the trainer's bf16 step (alone, under a one-rank NCCL group, under torchrun).

All tests are marked ``gpu`` and skip without CUDA (``tests/conftest.py``). ``VQTOK_GPU_TESTS_ON_CPU=1`` dry-runs
them on CPU at smaller sizes, with the Triton kernel under its interpreter when triton is installed; the
interpreter computes bf16 ``tl.dot`` wrongly (triton 3.9), so the bf16 Triton cases skip there.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

from vqtok.kernels import nearest
from vqtok.quantizers import create, example_config, list_quantizers
from vqtok.quantizers.base import QuantizerOutput
from vqtok.testing import contract
from vqtok.testing.configs import tiny_image_run
from vqtok.testing.nearest import reference_distances
from vqtok.train import Trainer, load_config

pytestmark = pytest.mark.gpu

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a real CUDA device, not the CPU dry run")
# Regret bound against fp64, relative to ||x||^2 + max ||c||^2 (as tests/kernels/test_nearest.py).
_TOL = 1e-5
# Ragged sizes (not multiples of the 128-wide tiles); smaller in the CPU dry run, where Triton is interpreted.
_N, _K = (3001, 5003) if CUDA else (301, 503)


def _skip_interpreted_bf16(dtype: torch.dtype) -> None:
    if not CUDA and dtype == torch.bfloat16:
        pytest.skip("Triton's interpreter computes bf16 tl.dot wrongly; bf16 runs on a real GPU only")


def _assert_fp32_exact(x: Tensor, c: Tensor, metric: str, dist_: Tensor, idx: Tensor) -> None:
    """The chosen code is within fp32 rounding of the fp64 best; clear winners are found exactly."""
    assert dist_.dtype == torch.float32 and idx.dtype == torch.int64 and idx.shape == (x.shape[0],)
    ref = reference_distances(x, c, metric)
    two = ref.topk(2, dim=1, largest=False).values
    if metric == "cosine":
        bound = torch.full_like(two[:, 0], 2 * _TOL)
    else:
        bound = _TOL * ((x.double() ** 2).sum(-1) + (c.double() ** 2).sum(-1).max())
    chosen = ref.gather(1, idx[:, None])[:, 0]
    regret = chosen - two[:, 0]
    assert bool((regret <= bound).all()), f"worst regret {float((regret / bound).max()):.3g} x the bound"
    clear = (two[:, 1] - two[:, 0]) > bound
    assert torch.equal(idx[clear], ref.argmin(1)[clear])
    assert torch.allclose(dist_.double(), chosen, rtol=0, atol=float(bound.max()))


@needs_triton
@pytest.mark.parametrize(
    "dtype,metric,dim",
    [(dt, "l2", d) for dt in (torch.float32, torch.bfloat16, torch.float16) for d in (8, 64, 130)]
    + [(dt, m, 64) for dt in (torch.float32, torch.bfloat16, torch.float16) for m in ("cosine", "ip")],
)
def test_triton_matches_fp64_reference(dtype: torch.dtype, metric: str, dim: int) -> None:
    _skip_interpreted_bf16(dtype)
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(_N, dim, generator=g)
    c = torch.randn(_K, dim, generator=g)
    c[_K - 100 :] = c[:100]  # duplicates across tiles: exact ties the near-tie re-check must resolve
    x[:100] = c[:100] + 1e-3 * torch.randn(100, dim, generator=g)
    x, c = x.to(dtype).to(DEVICE), c.to(dtype).to(DEVICE)
    dist_, idx = nearest(x, c, metric, backend="triton")
    _assert_fp32_exact(x.cpu(), c.cpu(), metric, dist_.cpu(), idx.cpu())
    assert bool((idx[:100] < _K - 100).all()), "a duplicate code won over its lower-indexed twin"


@needs_triton
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_triton_runs_on_the_tensors_device() -> None:
    """Inputs on cuda:1 while cuda:0 is current: the kernel must run where the data is."""
    g = torch.Generator().manual_seed(3)
    x, c = torch.randn(_N, 64, generator=g), torch.randn(_K, 64, generator=g)
    with torch.cuda.device(0):
        dist_, idx = nearest(x.to("cuda:1"), c.to("cuda:1"), "l2", backend="triton")
    assert idx.device == torch.device("cuda:1")
    _assert_fp32_exact(x, c, "l2", dist_.cpu(), idx.cpu())


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_triton_ties_take_lowest_index(dtype: torch.dtype) -> None:
    _skip_interpreted_bf16(dtype)
    # Small integers and half-integers are exact in every input dtype and their products exact in fp32, so
    # every distance is computed exactly and ties are real ties.
    g = torch.Generator().manual_seed(3)
    c = torch.randint(-3, 4, (700, 16), generator=g).float()
    c[400:500] = c[:100]  # twins across 128-wide tiles
    c[140:150] = c[130:140]  # twins inside one tile
    midpoints = (c[200:260] + c[261:321]) / 2  # equidistant from two distinct codes
    x = torch.cat([c[400:500], c[140:150], midpoints, torch.randint(-3, 4, (300, 16), generator=g).float()])
    x, c = x.to(dtype), c.to(dtype)
    expected = reference_distances(x, c, "l2").argmin(1)  # argmin returns the first of equal minima
    _, idx = nearest(x.to(DEVICE), c.to(DEVICE), backend="triton")
    assert torch.equal(idx.cpu(), expected)
    _, idx_torch = nearest(x.to(DEVICE), c.to(DEVICE), backend="torch")
    assert torch.equal(idx_torch.cpu(), expected)


@needs_triton
def test_tf32_error_within_the_kernels_bound() -> None:
    """The near-tie margin assumes tf32 operands rounded to nearest (unit roundoff 2^-11). Operands whose 13 low
    mantissa bits are all set are where truncation (error 2^-10 per operand) would exceed it: the raw kernel's
    approximate distances must stay within the margin ``triton_nearest`` uses."""
    from vqtok.kernels import _triton_nearest as tn

    n, dim = 128, 64
    x = torch.full((n, dim), 1.0 + 2.0**-10 - 2.0**-23, device=DEVICE)
    c = x.clone()  # 128 identical codes: one full code tile
    cn = (c * c).sum(-1)
    best, second = torch.empty(n, device=DEVICE), torch.empty(n, device=DEVICE)
    index = torch.empty(n, dtype=torch.int32, device=DEVICE)
    tn._nearest_kernel[(1,)](
        x, c, cn, best, second, index, n, n, dim, x.stride(0), c.stride(0),
        BLOCK_M=128, BLOCK_N=128, BLOCK_D=64, INPUT_PRECISION="tf32",
    )  # fmt: skip
    exact = cn.double() - 2 * (x.double() * c.double()).sum(-1)
    # The margin of triton_nearest for fp32 inputs, as computed there.
    u, acc_err = tn._UNIT_ROUNDOFF[torch.float32], dim * 2.0**-22
    c_max = float(c.norm(dim=-1).max())
    margin = (4 * u + acc_err) * x.norm(dim=-1).double() * c_max + acc_err * c_max * c_max
    err = (best.double() - exact).abs()
    assert bool((err <= margin).all()), (
        f"tf32 distance error {float(err.max()):.4g} exceeds the kernel's bound {float(margin.min()):.4g}: the "
        "tensor cores truncate tf32 operands here, so _UNIT_ROUNDOFF[torch.float32] must be 2^-10"
    )


@needs_triton
@needs_cuda
def test_auto_backend_uses_triton_on_cuda(monkeypatch) -> None:
    from vqtok.kernels import _triton_nearest

    calls = []
    real = _triton_nearest.triton_nearest

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(_triton_nearest, "triton_nearest", spy)
    x, c = torch.randn(500, 32, device=DEVICE), torch.randn(900, 32, device=DEVICE)
    _, idx = nearest(x, c)
    assert calls, "backend='auto' did not run the Triton kernel on CUDA"
    assert torch.equal(idx, nearest(x, c, backend="torch")[1])


@needs_cuda
def test_topk_on_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(700, 24, generator=g), torch.randn(3000, 24, generator=g)
    c[2000:2100] = c[:100]
    d_cpu, i_cpu = nearest(x, c, k=4, backend="torch")
    d_gpu, i_gpu = nearest(x.to(DEVICE), c.to(DEVICE), k=4)
    assert (i_gpu.cpu() == i_cpu).float().mean() > 0.999
    torch.testing.assert_close(d_gpu.cpu(), d_cpu, rtol=1e-4, atol=1e-4)


@needs_triton
@needs_cuda
def test_triton_rows_beyond_int32_offsets() -> None:
    # N * D >= 2^31 elements: row offsets must be computed in int64 inside the kernel.
    n, dim = 2**25 + 5, 64
    if torch.cuda.mem_get_info()[0] < 40 * 2**30:
        pytest.skip("needs 40 GiB of free GPU memory")
    c = torch.randn(16, dim, device=DEVICE)
    x = torch.randn(n, dim, device=DEVICE)
    planted = torch.arange(2048, device=DEVICE) % 16
    x[-2048:] = c[planted]
    _, idx = nearest(x, c, backend="triton")
    assert torch.equal(idx[-2048:], planted)
    rows = torch.randint(0, n, (8192,), device=DEVICE)
    assert torch.equal(idx[rows], nearest(x[rows], c, backend="torch")[1])
    del x, idx
    torch.cuda.empty_cache()


# --------------------------------------------------------------------------------- quantizers on CUDA
class _OnDevice(nn.Module):
    """Runs ``inner`` on ``device`` for the CPU-side contract checks: inputs move there, outputs come back.

    The moves are differentiable, so gradients reach the caller's latents through the CUDA computation.
    """

    def __init__(self, inner: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.inner = inner.to(device)
        self.device = device
        self.dim, self.codebook_size, self.index_shape = inner.dim, inner.codebook_size, inner.index_shape
        self.has_learned_codebook = inner.has_learned_codebook
        # Class-level flags the contract reads (token-wise masking; channels-first layout).
        self.token_wise, self.channel_first = inner.token_wise, inner.channel_first

    @property
    def bits_per_token(self) -> float:
        return self.inner.bits_per_token

    def forward(self, latents: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        out = self.inner(latents.to(self.device), None if mask is None else mask.to(self.device))
        cpu = {k: v.cpu() for k, v in out.metrics.items()}
        losses = {k: v.cpu() for k, v in out.losses.items()}
        return QuantizerOutput(out.quantized.cpu(), out.indices.cpu(), out.loss.cpu(), losses, cpu)

    def encode(self, latents: Tensor, **options) -> Tensor:
        return self.inner.encode(latents.to(self.device), **options).cpu()

    def decode(self, indices: Tensor) -> Tensor:
        return self.inner.decode(indices.to(self.device)).cpu()

    def _index_upper_bounds(self):
        upper = self.inner._index_upper_bounds()
        return upper.cpu() if isinstance(upper, Tensor) else upper


NAMES = list_quantizers()
_CHECKS = ["shapes", "dtypes", "round_trip", "encode_is_pure", "gradient", "mask", "bad_inputs", "codebook_learns"]


def _build(name: str):
    torch.manual_seed(0)
    return create(name, **example_config(name))


@pytest.mark.parametrize("check", _CHECKS)
@pytest.mark.parametrize("name", NAMES)
def test_quantizer_contract_on_cuda(name: str, check: str) -> None:
    q = _OnDevice(_build(name), DEVICE)
    if check == "codebook_learns" and not q.has_learned_codebook:
        pytest.skip(f"{name} has no learned codebook")
    getattr(contract, f"check_{check}")(q)


@pytest.mark.parametrize("name", NAMES)
def test_quantizer_state_dict_on_cuda(name: str) -> None:
    contract.check_state_dict(_OnDevice(_build(name), DEVICE), _OnDevice(_build(name), DEVICE))


@pytest.mark.parametrize("name", NAMES)
def test_quantizer_under_cuda_autocast_and_against_cpu(name: str) -> None:
    cpu_q = _build(name).eval()
    q = copy.deepcopy(cpu_q).to(DEVICE)
    x = contract.make_latents(cpu_q, 512, seed=11)
    xd = x.to(DEVICE)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        out = q(xd)
    assert out.quantized.dtype == torch.float32, "autocast leaked into the quantizer"
    assert torch.equal(out.indices, q.encode(xd))
    # Both devices return the fp32 argmin; they may differ only on fp32 near-ties (vanishingly rare here).
    i_cpu, i_dev = cpu_q.encode(x), q.encode(xd).cpu()
    same = (i_cpu == i_dev).reshape(x.shape[0], -1).all(1)
    assert same.float().mean() >= 0.98, f"only {float(same.float().mean()):.3f} of tokens agree with the CPU"
    torch.testing.assert_close(q.decode(i_cpu.to(DEVICE)).cpu(), cpu_q.decode(i_cpu), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ trainer
_TINY = tiny_image_run("optim.lr=0.003", f"device={DEVICE.type}")


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_trainer_bf16_step(tmp_path) -> None:
    run = tmp_path / "run"
    cfg = load_config(None, [*_TINY, "precision=bf16", f"run_dir={run}", "steps=40", "batch_size=32", "log_every=10"])
    conv_dtypes: set[torch.dtype] = set()

    def record(module: nn.Module, args, output) -> None:
        if isinstance(module, nn.Conv2d) and module.training:
            conv_dtypes.add(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        trainer = Trainer(cfg, progress=False)
        result = trainer.fit()
    finally:
        handle.remove()
    assert conv_dtypes == {torch.bfloat16}, f"training convs ran in {conv_dtypes}, expected bf16 autocast"
    assert result.step == 40 and result.model_dir is not None
    params = list(trainer.model.parameters())
    assert all(p.device.type == DEVICE.type and p.dtype == torch.float32 for p in params), "master weights not fp32"
    assert trainer.model.quantizer.codebook.dtype == torch.float32
    log = _log(run)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    # Looser than the CPU fp32 test's 0.5: bf16 and the CUDA RNG (k-means seeding) change the trajectory.
    assert log[-1]["recon_l2"] < 0.7 * log[0]["recon_l2"], log
    assert 0 < log[-1]["usage"] <= 1
    # The checkpoint restores onto the training device.
    state = torch.load(run / "checkpoint.pt", map_location=DEVICE, weights_only=False)
    assert state["step"] == 40
    if CUDA:
        assert "cuda" in state["rng"][0], "the checkpoint lacks the CUDA RNG state"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trainer_under_one_rank_process_group(tmp_path) -> None:
    # NCCL on CUDA (gloo in the dry run): the codebook-usage all-reduce goes through the process group.
    backend = "nccl" if CUDA else "gloo"
    if not dist.is_available() or (CUDA and not dist.is_nccl_available()):
        pytest.skip(f"{backend} is not available")
    if CUDA:
        torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        run = tmp_path / "run"
        overrides = [*_TINY, "precision=auto", f"run_dir={run}", "steps=10", "batch_size=16", "log_every=5"]
        result = Trainer(load_config(None, overrides), progress=False).fit()
    finally:
        dist.destroy_process_group()
    assert result.step == 10
    log = _log(run)
    assert [r["step"] for r in log] == [5, 10] and all(0 < r["usage"] <= 1 for r in log)


_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    from vqtok.train import Trainer, load_config
    out, overrides = sys.argv[1], sys.argv[2:]
    trainer = Trainer(load_config(None, overrides), progress=False)
    trainer.fit()
    state = {k: v.cpu() for k, v in trainer.model.state_dict().items()}
    torch.save(state, os.path.join(out, f"rank{os.environ['RANK']}.pt"))
    """
)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices (NCCL refuses two ranks on one)")
def test_torchrun_nccl_two_ranks_identical_codebooks(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    overrides = [*_TINY, "precision=bf16", f"run_dir={tmp_path / 'run'}", "steps=20", "batch_size=16", "log_every=10"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run([*cmd, str(tmp_path), *overrides], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    s0, s1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert any(k.startswith("quantizer.") for k in s0)
    for k in s0:
        assert torch.equal(s0[k], s1[k]), f"{k} differs between ranks"
