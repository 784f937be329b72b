"""Encoder forward benchmark: our `VisionEncoder` against transformers' `VJEPA2Model` encoder.

Same config, same weights (loaded from the HF model's `save_pretrained` directory through
`modeling.checkpoints.load_encoder`), same input, one process, inference mode:

* throughput (clips/s): forwards interleaved ours/HF/masked, best of the timed repeats (the
  machine is shared, and outside load only ever adds time; medians are in the JSON too);
  CPU runs with `--threads` threads (default 1) and, with one thread, is timed by process CPU
  time (the cost on a dedicated core; a busy shared box inflates wall time, not CPU time);
* peak memory of one forward, not counting weights and input. On CPU two views:
  - tensor peak: the most bytes of live tensors the forward allocated at once (output
    included), replayed from `torch.profiler` memory events (allocations per op, frees);
    exact and deterministic, blind to allocator overhead and library workspaces;
  - RSS growth: growth of the peak resident set (Linux `VmHWM`, reset through
    `/proc/self/clear_refs` once model and input exist; `ru_maxrss` delta where that is not
    allowed) in a fresh subprocess per measurement: what the OS sees, including glibc
    malloc's caching and fragmentation, so a few MiB either way is allocator noise;
  on CUDA, `torch.cuda.max_memory_allocated` above the allocation before the forward;
* the masked pretraining forward (`context_indices` from the default multi-block masks,
  8 x 0.15 and 2 x 0.7) against the full clip, with the context fraction K / N beside it.

CPU runs always (fp32); CUDA bf16 runs too when `torch.cuda.is_available()`. The last stdout
line is JSON; `ratio` is ours / HF throughput on the headline config (`small` on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.checkpoints import load_encoder
from modeling.encoder import EncoderConfig, VisionEncoder, preset
from modeling.masks import MaskConfig, generate_masks

# name -> (preset, batch, frames, size)
CPU_CASES = {"tiny": ("tiny", 4, 16, 128), "small": ("small", 2, 16, 128)}
CUDA_CASES = {"vitl": ("vitl", 4, 16, 256), "vitg": ("vitg", 2, 16, 256)}
HEADLINE = "small"


def hf_config(config: EncoderConfig, frames: int, size: int) -> Any:
    from transformers import VJEPA2Config

    return VJEPA2Config(
        crop_size=size,
        frames_per_clip=frames,
        hidden_size=config.width,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        mlp_ratio=config.mlp_hidden / config.width,
        pred_num_hidden_layers=1,
    )


def build_pair(name: str, frames: int, size: int) -> tuple[torch.nn.Module, VisionEncoder]:
    """transformers' encoder and ours, with the same weights."""
    from transformers import VJEPA2Model

    torch.manual_seed(0)
    hf = VJEPA2Model(hf_config(preset(name), frames, size)).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = load_encoder(folder)
    return hf.encoder, ours


def peak_rss_kib() -> int:
    """Peak resident set since the last reset (VmHWM), else the process' ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS; where not allowed the delta is against the peak so far."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def memory_child(case: str, impl: str) -> None:
    """Run in a subprocess: print the peak-RSS growth (KiB) of one forward."""
    name, batch, frames, size = CPU_CASES[case]
    torch.manual_seed(0)
    if impl == "hf":
        from transformers import VJEPA2Model

        model: Callable[..., Any] = (
            VJEPA2Model(hf_config(preset(name), frames, size)).eval().encoder
        )
    else:
        model = VisionEncoder(preset(name)).eval()
    video = torch.randn(batch, 3, frames, size, size)
    indices = context_indices(model, video) if impl == "ours-context" else None
    with torch.inference_mode():
        reset_peak_rss()
        before = peak_rss_kib()
        run_once(model, impl, video, indices)
        print(peak_rss_kib() - before)


def context_indices(model: Any, video: torch.Tensor) -> torch.Tensor:
    grid = model.grid(video.shape)
    pairs = generate_masks(MaskConfig(), video.shape[0], grid, seed=0)
    return pairs[0].context  # (B, K): the 8 x 0.15 family, the larger context of the two


def run_once(model: Any, impl: str, video: torch.Tensor, indices: torch.Tensor | None) -> Any:
    if impl == "hf":
        return model(pixel_values_videos=video.transpose(1, 2)).last_hidden_state
    return model(video, indices)


def child_memory_mib(case: str, impl: str, threads: int) -> float:
    command = [sys.executable, __file__, "--memory-child", case, impl, "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def timed(fn: Callable[[], Any], sync: Callable[[], None], clock: Callable[[], float]) -> float:
    sync()
    start = clock()
    fn()
    sync()
    return clock() - start


def time_runs(
    runs: dict[str, Callable[[], Any]], repeats: int, device: str
) -> tuple[dict[str, list[float]], str]:
    """Seconds per call of every run, interleaved; and the clock used."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # on CPU with one thread, process CPU time is what the forward costs on a dedicated core;
    # other tenants' load inflates wall time far more than it does CPU time
    cpu_clock = device == "cpu" and torch.get_num_threads() == 1
    clock = time.process_time if cpu_clock else time.perf_counter
    times: dict[str, list[float]] = {key: [] for key in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(repeats):
        for key, fn in runs.items():
            times[key].append(timed(fn, sync, clock))
    return times, "process_time" if cpu_clock else "wall"


def measure_case(case: tuple[str, int, int, int], device: str, repeats: int) -> dict[str, Any]:
    """Throughput of HF / ours full / ours masked forwards on one config."""
    name, batch, frames, size = case
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    hf, ours = build_pair(name, frames, size)
    hf, ours = hf.to(device, dtype), ours.to(device, dtype)
    video = torch.randn(batch, 3, frames, size, size, device=device, dtype=dtype)
    hf_video = video.transpose(1, 2).contiguous()  # (B, T, C, H, W) as transformers takes it
    grid = ours.grid(video.shape)
    contexts = [p.context.to(device) for p in generate_masks(MaskConfig(), batch, grid, seed=0)]
    runs: dict[str, Callable[[], Any]] = {
        "hf": lambda: hf(pixel_values_videos=hf_video),
        "ours": lambda: ours(video),
    }
    for number, context in enumerate(contexts):
        runs[f"ours_context{number}"] = partial(ours, video, context)
    with torch.inference_mode():
        difference = (hf(pixel_values_videos=hf_video).last_hidden_state - ours(video)).abs().max()
        times, clock = time_runs(runs, repeats, device)
    best = {key: min(values) for key, values in times.items()}
    medians = {key: statistics.median(values) for key, values in times.items()}
    num_tokens = grid[0] * grid[1] * grid[2]
    result: dict[str, Any] = {
        "batch": batch,
        "frames": frames,
        "size": size,
        "tokens": num_tokens,
        "dtype": str(dtype).replace("torch.", ""),
        "clock": clock,
        "max_abs_diff": float(difference),
        "hf_clips_per_s": batch / best["hf"],
        "ours_clips_per_s": batch / best["ours"],
        "ratio": best["hf"] / best["ours"],
        "ratio_median": medians["hf"] / medians["ours"],
        "context": [
            {
                "context_fraction": context.shape[1] / num_tokens,
                "time_fraction": best[f"ours_context{i}"] / best["ours"],
                "clips_per_s": batch / best[f"ours_context{i}"],
            }
            for i, context in enumerate(contexts)
        ],
    }
    if device == "cuda":
        result.update(cuda_memory(hf, ours, video, hf_video, contexts[0]))
    else:
        for key in ("hf", "ours", "ours_context0"):
            label = key.replace("ours_context0", "ours_context")
            result[f"{label}_tensor_peak_mib"] = tensor_peak_mib(runs[key])
    return result


def tensor_peak_mib(fn: Callable[[], Any]) -> float:
    """Most MiB of live tensors allocated by `fn` at once, from profiler memory events."""
    from torch.profiler import ProfilerActivity, profile

    with (
        torch.inference_mode(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda event: event.time_range.start):
        live += event.self_cpu_memory_usage  # + own allocations of an op, - a free
        peak = max(peak, live)
    return peak / 2**20


def cuda_memory(
    hf: Any, ours: VisionEncoder, video: torch.Tensor, hf_video: torch.Tensor, context: torch.Tensor
) -> dict[str, float]:
    """Peak CUDA memory allocated by one forward above what was allocated before it (MiB)."""
    runs = {
        "hf": lambda: hf(pixel_values_videos=hf_video),
        "ours": lambda: ours(video),
        "ours_context": lambda: ours(video, context),
    }
    out = {}
    with torch.inference_mode():
        for key, fn in runs.items():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            out[f"{key}_peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return out


def print_table(device: str, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n{device}: encoder forward, inference mode")
    header = f"{'config':<7} {'input':<16} {'dtype':<9} {'HF clips/s':>11} {'ours clips/s':>13} {'ours/HF':>8} {'max|diff|':>10}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        shape = f"{r['batch']}x{r['frames']}x{r['size']}px"
        print(
            f"{name:<7} {shape:<16} {r['dtype']:<9} {r['hf_clips_per_s']:>11.2f} "
            f"{r['ours_clips_per_s']:>13.2f} {r['ratio']:>7.2f}x {r['max_abs_diff']:>10.1e}"
        )
    print(f"\n{device}: masked pretraining forward vs full clip (ours)")
    print(f"{'config':<7} {'mask family':<14} {'K/N':>6} {'time/full':>10} {'clips/s':>9}")
    for name, r in results.items():
        for family, c in zip(("8 x 0.15", "2 x 0.7"), r["context"], strict=True):
            print(
                f"{name:<7} {family:<14} {c['context_fraction']:>6.2f} "
                f"{c['time_fraction']:>10.2f} {c['clips_per_s']:>9.2f}"
            )
    print_memory(device, results)


MEMORY_VIEWS = {
    "tensor_peak_mib": "tensor peak",
    "rss_peak_mib": "RSS growth",
    "peak_mib": "CUDA allocated peak",
}


def print_memory(device: str, results: dict[str, dict[str, Any]]) -> None:
    """One table per memory view present in the results (MiB, weights and input excluded)."""
    first = next(iter(results.values()))
    for suffix, title in MEMORY_VIEWS.items():
        keys = [f"{impl}_{suffix}" for impl in ("hf", "ours", "ours_context")]
        if keys[0] not in first:
            continue
        print(f"\n{device}: peak memory of one forward, {title} (MiB)")
        print(f"{'config':<7} {'HF':>10} {'ours':>10} {'ours masked':>12}")
        for name, r in results.items():
            print(f"{name:<7} {r[keys[0]]:>10.1f} {r[keys[1]]:>10.1f} {r[keys[2]]:>12.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per variant")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--cases", default=",".join(CPU_CASES), help="CPU cases to run")
    parser.add_argument("--no-cuda", action="store_true", help="skip CUDA even when available")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    summary: dict[str, Any] = {"threads": torch.get_num_threads()}
    cpu: dict[str, dict[str, Any]] = {}
    for name in args.cases.split(","):
        cpu[name] = measure_case(CPU_CASES[name], "cpu", args.repeats)
        for impl in ("hf", "ours", "ours-context"):
            cpu[name][f"{impl.replace('-', '_')}_rss_peak_mib"] = child_memory_mib(
                name, impl, args.threads
            )
    print_table("cpu", cpu)
    summary["cpu"] = cpu
    if torch.cuda.is_available() and not args.no_cuda:
        cuda = {name: measure_case(case, "cuda", args.repeats) for name, case in CUDA_CASES.items()}
        print_table(f"cuda ({torch.cuda.get_device_name()})", cuda)
        summary["cuda"] = cuda
        summary["cuda_ratio"] = {name: r["ratio"] for name, r in cuda.items()}
    headline = HEADLINE if HEADLINE in cpu else next(iter(cpu))
    summary["headline"] = f"cpu/{headline}"
    summary["ratio"] = cpu[headline]["ratio"]
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
