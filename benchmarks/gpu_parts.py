"""Measurements behind ``benchmarks/gpu.py``: exact search, the ``vq`` training step, the demo tokenizer's step.

Each ``run_*`` function appends rows to ``out["rows"]`` as it goes and calls ``ctx.save()`` after each, so a
run killed mid-way still leaves its finished rows in the JSON; a row whose measurement fails records the error
instead, and rows past the part's deadline are recorded as skipped.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vqtok.kernels import nearest
from vqtok.quantizers import create
from vqtok.testing.memory import peak_extra_mib
from vqtok.tokenizers import create_tokenizer
from vqtok.train import load_config

GIB = 2.0**30
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Context:
    """What every part needs: device, sizes, the part's deadline and a way to flush the JSON."""

    device: torch.device
    smoke: bool
    sizes: dict[str, Any]
    deadline: float
    save: Callable[[], None]
    triton_interpreted: bool = False

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed(fn: Callable[[], Any], device: torch.device, max_reps: int = 5, min_total: float = 0.3) -> tuple[float, Any]:
    """Best wall time of ``fn`` (already warmed up) over up to ``max_reps`` calls, stopping after ``min_total`` s."""
    times: list[float] = []
    while True:
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= max_reps or sum(times) >= min_total:
            return min(times), out


class Unavailable(RuntimeError):
    """An optional library or feature is missing here: the measurement is recorded as skipped, not failed."""


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def error_text(err: BaseException) -> str:
    return "OOM" if is_oom(err) else f"{type(err).__name__}: {str(err)[:300]}"


# ------------------------------------------------------------------------------------------- search
def bf16_matmul_peak(device: torch.device, n: int) -> float:
    """TFLOP/s of an ``n x n x n`` bf16 matmul (best of 10 after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    t, _ = timed(lambda: a @ b, device, max_reps=10, min_total=math.inf)
    return 2 * n**3 / t / 1e12


def chunked_torch(x: torch.Tensor, c: torch.Tensor, chunk_bytes: int = 2**31) -> torch.Tensor:
    """argmin of ``||c||^2 - 2 x c^T`` in the inputs' dtype, row chunks of at most ``chunk_bytes`` of distances."""
    cn = (c.float() ** 2).sum(-1).to(c.dtype)
    rows = max(1, chunk_bytes // (c.shape[0] * x.element_size()))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for r0 in range(0, x.shape[0], rows):
        out[r0 : r0 + rows] = torch.addmm(cn, x[r0 : r0 + rows], c.T, alpha=-2.0).argmin(1)
    return out


def faiss_search(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """faiss brute-force k=1 on the GPU (fp32 copies); in smoke mode its CPU ``knn``, to exercise the path."""
    try:
        import faiss  # noqa: PLC0415 - optional
    except ImportError as err:
        raise Unavailable(f"faiss not importable ({err})") from err
    if x.device.type == "cuda":
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            raise Unavailable("faiss is installed without GPU support")
        import faiss.contrib.torch_utils  # noqa: F401, PLC0415 - lets knn_gpu take torch tensors

        res = faiss.StandardGpuResources()
        _, idx = faiss.knn_gpu(res, x.float().contiguous(), c.float().contiguous(), 1)
        return idx[:, 0].long()
    _, idx = faiss.knn(x.float().numpy(), c.float().numpy(), 1)
    return torch.from_numpy(idx[:, 0]).long()


class RecheckCounter:
    """Counts the latents the Triton path searches again in fp32 (its near-tie re-check), by wrapping the fp32
    search it calls; ``rows`` is ``None`` when that helper is not where this benchmark expects it."""

    def __init__(self) -> None:
        # Not `import vqtok.kernels.nearest`: the package re-exports the function under the module's name.
        module = importlib.import_module("vqtok.kernels.nearest")
        self.module, self.rows = module, None
        self.real = getattr(module, "_search_top1", None)

    def __enter__(self) -> RecheckCounter:
        if self.real is not None:
            real = self.real

            def counting(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                self.rows = (self.rows or 0) + x.shape[0]
                return real(x, *args, **kwargs)

            self.module._search_top1 = counting
        return self

    def __exit__(self, *exc: object) -> None:
        if self.real is not None:
            self.module._search_top1 = self.real

    def reset(self) -> None:
        self.rows = 0 if self.real is not None else None


def _agreement(idx: torch.Tensor, ref: torch.Tensor, sub: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> dict:
    """Fraction of subsampled rows whose index equals the fp32 reference, and the worst fp64 regret of the others
    relative to ``||x||^2 + max ||c||^2`` (negative: the method found a closer code than the fp32 reference)."""
    got = idx[sub]
    same = got == ref
    out: dict[str, Any] = {"agreement": float(same.float().mean())}
    bad = (~same).nonzero().squeeze(1)
    if bad.numel():
        xs = x[sub][bad].double()
        d_got = ((xs - c[got[bad]].double()) ** 2).sum(-1)
        d_ref = ((xs - c[ref[bad]].double()) ** 2).sum(-1)
        scale = (xs**2).sum(-1) + float((c.double() ** 2).sum(-1).max())
        out["worst_relative_regret"] = float(((d_got - d_ref) / scale).max())
    return out


def run_search(ctx: Context, out: dict) -> None:
    s, dev = ctx.sizes, ctx.device
    peak = bf16_matmul_peak(dev, s["peak_n"])
    out["bf16_peak_tflops"] = peak
    out["rows"] = rows = []
    ctx.save()
    has_triton = importlib.util.find_spec("triton") is not None
    g = torch.Generator(device=dev).manual_seed(0)
    n = s["n"]
    for dim, k in itertools.product(s["dims"], s["codebook_sizes"]):
        x32 = torch.randn(n, dim, device=dev, generator=g)
        c32 = torch.randn(k, dim, device=dev, generator=g)
        sub = torch.randperm(n, device=dev, generator=g)[: s["ref_rows"]]
        for dname in s["dtypes"]:
            row: dict[str, Any] = {"dtype": dname, "dim": dim, "codebook_size": k, "n": n}
            rows.append(row)
            if ctx.left() <= 0:
                row["skipped"] = "budget"
                continue
            x, c = x32.to(_DTYPES[dname]), c32.to(_DTYPES[dname])
            # The fp32 argmin of the inputs as given (bf16 values upcast exactly), full fp32 products (no TF32).
            ref = chunked_torch(x[sub].float(), c.float())
            flops = 2.0 * n * k * dim
            recheck = RecheckCounter()

            def triton(xs: torch.Tensor, c: torch.Tensor = c, recheck: RecheckCounter = recheck) -> torch.Tensor:
                recheck.reset()  # so that it holds the last call's count
                with recheck:
                    return nearest(xs, c, backend="triton")[1]

            methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
                "triton": triton,
                "torch": lambda xs, c=c: chunked_torch(xs, c),
                "faiss": lambda xs, c=c: faiss_search(xs, c),
            }
            for name, fn in methods.items():
                if name == "triton" and not has_triton:
                    row[name] = {"skipped": "triton not importable"}
                    continue
                if name == "triton" and ctx.triton_interpreted and dname == "bf16":
                    row[name] = {"skipped": "Triton's interpreter computes bf16 tl.dot wrongly"}
                    continue
                try:
                    fn(x[:8192])  # warm-up on a slice: Triton JIT, cuBLAS heuristics, faiss resources
                    t, idx = timed(lambda fn=fn, x=x: fn(x), dev)
                    tflops = flops / t / 1e12
                    row[name] = {"seconds": t, "tflops": tflops, "fraction_of_bf16_peak": tflops / peak}
                    row[name].update(_agreement(idx, ref, sub, x, c))
                    if name == "triton" and recheck.rows is not None:
                        # Latents whose low-precision best and second-best were too close to trust: searched
                        # again with the fp32 torch path inside the timed call.
                        row[name]["recheck_fraction"] = recheck.rows / n
                except Unavailable as err:
                    row[name] = {"skipped": str(err)}
                except Exception as err:  # noqa: BLE001 - recorded, the run goes on
                    row[name] = {"error": error_text(err)}
                free_memory(dev)
            if "seconds" in row.get("triton", {}) and "seconds" in row.get("torch", {}):
                row["triton_speedup_over_torch"] = row["torch"]["seconds"] / row["triton"]["seconds"]
            ctx.save()
        del x32, c32
        free_memory(dev)


# -------------------------------------------------------------------------------------- train step
def _step_stats(step: Callable[[], None], device: torch.device, reps: int) -> dict[str, Any]:
    """Seconds (best of ``reps`` after one warm-up) and peak memory over all the steps.

    ``peak_gib`` is everything allocated at the peak, the latents and the quantizer included;
    ``peak_extra_gib`` is the part the step itself added.
    """
    free_memory(device)
    if device.type != "cuda":
        stats = {"peak_extra_rss_gib": peak_extra_mib(step) / 1024}  # the warm-up step
        stats["seconds"] = timed(step, device, max_reps=reps, min_total=0.0 if reps == 1 else 0.5)[0]
        return stats
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()  # warm-up: Triton JIT, codebook initialisation
    seconds = timed(step, device, max_reps=reps, min_total=0.0 if reps == 1 else 0.5)[0]
    peak = torch.cuda.max_memory_allocated(device)
    return {"seconds": seconds, "peak_gib": peak / GIB, "peak_extra_gib": (peak - base) / GIB}


def _vqtok_step(dim: int, k: int, latents: torch.Tensor) -> Callable[[], None]:
    q = create("vq", dim=dim, codebook_size=k, kmeans_init=False, ema_decay=0.99).to(latents.device).train()

    def step() -> None:
        out = q(latents.detach().requires_grad_(True))
        (out.quantized.sum() + out.loss).backward()

    return step


def _vqp_step(dim: int, k: int, latents: torch.Tensor) -> Callable[[], None]:
    from vector_quantize_pytorch import VectorQuantize  # noqa: PLC0415 - optional

    vqp = VectorQuantize(dim=dim, codebook_size=k, decay=0.99, kmeans_init=False).to(latents.device).train()

    def step() -> None:
        quantized, _, loss = vqp(latents[None].detach().requires_grad_(True))
        (quantized.sum() + loss.sum()).backward()

    return step


def _fit_rows(device: torch.device, n: int, k: int, limit: float | None) -> int:
    """Largest power of two <= n whose four (n, K) fp32 matrices (vqp's search peak) fit in ``limit`` bytes
    (default: half the free GPU memory)."""
    if limit is None:
        limit = torch.cuda.mem_get_info(device)[0] / 2 if device.type == "cuda" else 4 * GIB
    rows = 1 << int(math.log2(n))
    while rows > 1 and 16 * rows * k > limit:
        rows //= 2
    return rows


def run_train_step(ctx: Context, out: dict) -> None:
    s, dev = ctx.sizes, ctx.device
    out["rows"] = rows = []
    try:
        import vector_quantize_pytorch  # noqa: F401, PLC0415

        vqp_missing = None
    except ImportError as err:
        vqp_missing = f"vector_quantize_pytorch not importable ({err})"
        out["vqp"] = vqp_missing
    n = s["n"]
    for dim, k in itertools.product(s["dims"], s["codebook_sizes"]):
        small = _fit_rows(dev, n, k, s.get("vqp_fit_bytes"))
        plan = [("vqtok", n), ("vqp", n)] + ([("vqtok", small), ("vqp", small)] if small < n else [])
        for impl, rows_n in plan:
            row: dict[str, Any] = {"impl": impl, "dim": dim, "codebook_size": k, "n": rows_n}
            rows.append(row)
            if ctx.left() <= 0:
                row["skipped"] = "budget"
                continue
            if impl == "vqp" and vqp_missing:
                row["skipped"] = vqp_missing
                continue
            make = _vqtok_step if impl == "vqtok" else _vqp_step
            # Latents made per row, so that each row's peak holds its own inputs and nothing else.
            torch.manual_seed(0)
            try:
                row.update(_step_stats(make(dim, k, torch.randn(rows_n, dim, device=dev)), dev, s["reps"]))
            except Exception as err:  # noqa: BLE001 - OOM and friends are results here
                row["error"] = error_text(err)
            free_memory(dev)
            ctx.save()


# --------------------------------------------------------------------------------------------- demo
def run_demo(ctx: Context, out: dict, config: Path) -> None:
    s, dev = ctx.sizes, ctx.device
    cfg = load_config(config)
    out["config"] = str(config)
    out["rows"] = rows = []
    torch.manual_seed(0)
    fresh = create_tokenizer(cfg.tokenizer, **cfg.model)
    shape = (cfg.model["in_channels"], *cfg.model["image_size"])
    # "compile_without_quantizer" compiles the encoder and decoder and leaves the quantizer eager; "compile" is the
    # whole model, whose quantizer's host-side floats (e.g. the search's overflow check) make dynamo recompile
    # on new values until its cache limit, so it runs at the first batch size only.
    modes = [("eager", b) for b in s["batch_sizes"]] + [("compile_without_quantizer", b) for b in s["batch_sizes"]]
    modes += [("compile", s["batch_sizes"][0])] if s["full_compile"] else []
    for mode, batch in modes:
        row: dict[str, Any] = {"mode": mode, "batch_size": batch, "autocast": "bf16"}
        rows.append(row)
        if ctx.left() <= 0:
            row["skipped"] = "budget"
            continue
        try:
            row.update(_demo_throughput(fresh, cfg, mode, batch, shape, ctx))
        except Exception as err:  # noqa: BLE001 - e.g. torch.compile failing on this setup
            row["error"] = error_text(err)
        free_memory(dev)
        ctx.save()


def _demo_throughput(fresh: torch.nn.Module, cfg: Any, mode: str, batch: int, shape: tuple, ctx: Context) -> dict:
    dev, s = ctx.device, ctx.sizes
    model = copy.deepcopy(fresh).to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas)
    info: dict[str, Any] = {}
    forward: torch.nn.Module = model
    if mode != "eager":
        if mode == "compile_without_quantizer":
            model.quantizer.forward = torch.compiler.disable(model.quantizer.forward)
        # In smoke mode the "eager" compile backend traces with dynamo but skips codegen (seconds, not minutes).
        info["compile_backend"] = "eager" if ctx.smoke else "inductor"
        # Each graph break (host syncs in the quantizer's checks and search) logs a warning per call site.
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        forward = torch.compile(model, backend=info["compile_backend"])
    images = [torch.rand(batch, *shape, device=dev) for _ in range(4)]

    def step(i: int) -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = forward(images[i % 4]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()
        float(loss.detach())  # the trainer logs every step, which syncs once per step too

    t0 = time.perf_counter()
    for i in range(s["warmup_steps"]):  # k-means init on the first batch; compilation
        step(i)
    sync(dev)
    info["warmup_s"] = time.perf_counter() - t0
    done, t0 = 0, time.perf_counter()
    while done < s["steps"] and (done < 3 or ctx.left() > 0):
        step(done)
        done += 1
    sync(dev)
    elapsed = time.perf_counter() - t0
    info.update(steps=done, step_ms=1e3 * elapsed / done, images_per_s=batch * done / elapsed)
    if mode != "eager":
        info["unique_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        info["graph_breaks"] = sum(torch._dynamo.utils.counters["graph_break"].values())
    return info
