"""CPU speed and memory of Vision Big Bird (arXiv 2311.05988) against Swin, PVTv2, ViT and ConvNeXt of matched size.

Every model is built from its configuration (random weights, 1000 labels, no downloads) in this process, with sdpa
attention where the model supports it, in eval mode under `torch.inference_mode` (except the training step).
Measurements interleave the models round by round (A B C A B C ...) after warm-up rounds, so drift of a shared
machine hits every model alike; each number is the median over rounds, with min and max in the JSON.

    python scripts/benchmark.py --quick                                # a few minutes
    python scripts/benchmark.py --write_markdown docs/benchmarks.md    # full run, tables into the doc
    python scripts/benchmark.py --sizes tiny small base --compile --profile
    python scripts/benchmark.py --report_from docs/benchmark_results.json --write_markdown docs/benchmarks.md

Measured: parameters; forward GMACs at 224 (scripts/model_cost.py); inference throughput at 224 (batch 8, float32
and bfloat16 autocast, in the same rounds as a 2048x2048 matmul of each dtype); one training step (forward,
backward, AdamW) at 224, batch 8; batch-1 latency at each resolution; peak memory of a batch-1 forward at each
resolution (a fresh subprocess per model and resolution: VmHWM - VmRSS around one forward, after a 224 warm-up
forward and `malloc_trim`, with the peak-RSS counter reset through /proc/self/clear_refs); the fraction of the
matmul rate each forward reaches. With `--compile`: torch.compile's cold compile time and speedup for Vision Big
Bird, default and with inductor freezing. With `--profile`: the top ops by self CPU time and the inclusive time per
module class of Vision Big Bird tiny and Swin-T (forward, 224, batch 8).

On a machine shared with other jobs, `--threads 1` is the robust choice: with every core's OpenMP thread busy,
one descheduled thread stalls each parallel op at its barrier, which inflates models with many small ops.
"""

import copy
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    HfArgumentParser,
    PvtV2Config,
    PvtV2ForImageClassification,
    SwinConfig,
    SwinForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from model_cost import SWIN_SIZES, count_forward_flops, count_parameters
from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


MARKDOWN_BEGIN = "<!-- benchmark.py: generated section begin -->"
MARKDOWN_END = "<!-- benchmark.py: generated section end -->"
MATMUL_SIZE = 2048
DROP_PATH_RATE = 0.1  # where a model has stochastic depth, so the training step does the same work everywhere
SIZE_SUFFIX = {"tiny": "T", "small": "S", "base": "B"}


@dataclass
class BenchmarkArguments:
    sizes: list[str] = field(
        default_factory=lambda: ["tiny"],
        metadata={"help": "Vision Big Bird presets; tiny runs against Swin-T, PVTv2-b2, ViT-S/16, ConvNeXt-T, "
                  "small/base against Swin-S/B."},
    )
    quick: bool = field(default=False, metadata={"help": "Few repeats and resolutions: a few minutes."})
    compile: bool = field(default=False, metadata={"help": "Also measure torch.compile for Vision Big Bird."})
    profile: bool = field(default=False, metadata={"help": "Profile VBB-T and Swin-T forwards (224, batch size)."})
    batch_size: int = field(default=8, metadata={"help": "Batch of the throughput and training measurements."})
    image_size: int = field(default=224, metadata={"help": "Resolution of throughput, training, profile."})
    resolutions: list[int] = field(
        default_factory=lambda: [224, 384, 512, 768, 1024], metadata={"help": "Batch-1 latency/memory sizes."}
    )
    warmup: int = field(default=2, metadata={"help": "Warm-up rounds before each measurement."})
    repeats: int = field(default=10, metadata={"help": "Rounds of the throughput measurements."})
    train_repeats: int = field(default=6, metadata={"help": "Rounds of the training-step measurement."})
    latency_repeats: int = field(default=5, metadata={"help": "Rounds of each batch-1 latency measurement."})
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (default: torch's)."})
    output_json: str = field(default="docs/benchmark_results.json", metadata={"help": "Raw numbers."})
    plot: str = field(default="docs/benchmark_scaling.png", metadata={"help": "Latency/memory vs pixels plot."})
    write_markdown: str | None = field(
        default=None, metadata={"help": "Replace the generated section of this markdown file with the tables."}
    )
    report_from: str | None = field(
        default=None, metadata={"help": "Rebuild the report, plot and markdown from this results JSON; no measuring."}
    )
    memory_probe: str | None = field(default=None, metadata={"help": "Internal: measure one model's memory."})
    memory_probe_size: int = field(default=224, metadata={"help": "Internal: resolution of --memory_probe."})

    def __post_init__(self):
        if self.quick:
            self.resolutions = [224, 512, 1024]
            self.warmup, self.repeats, self.train_repeats, self.latency_repeats = 1, 3, 2, 2
        unknown = sorted(set(self.sizes) - set(SIZE_SUFFIX))
        if unknown:
            raise ValueError(f"--sizes {unknown}: choose from {sorted(SIZE_SUFFIX)}")


# ---- Models ----------------------------------------------------------------


def model_builders(sizes: list[str]) -> dict[str, Callable[[], nn.Module]]:
    """Name -> constructor of every model of the run, in table order (references first after each VBB)."""
    builders = {}
    for size in sizes:
        suffix = SIZE_SUFFIX[size]
        builders[f"VBB-{suffix}"] = lambda size=size: VisionBigBirdForImageClassification(
            VisionBigBirdConfig.from_preset(size, num_labels=1000, drop_path_rate=DROP_PATH_RATE)
        )
        builders[f"Swin-{suffix}"] = lambda size=size: SwinForImageClassification(
            SwinConfig(**SWIN_SIZES[size], num_labels=1000, drop_path_rate=DROP_PATH_RATE)
        )
        if size == "tiny":
            builders["PVTv2-b2"] = lambda: PvtV2ForImageClassification(
                PvtV2Config(
                    hidden_sizes=[64, 128, 320, 512],
                    depths=[3, 4, 6, 3],
                    num_attention_heads=[1, 2, 5, 8],
                    sr_ratios=[8, 4, 2, 1],
                    mlp_ratios=[8, 8, 4, 4],
                    num_labels=1000,
                    drop_path_rate=DROP_PATH_RATE,
                )
            )
            builders["ViT-S/16"] = lambda: ViTForImageClassification(
                ViTConfig(
                    hidden_size=384,
                    num_hidden_layers=12,
                    num_attention_heads=6,
                    intermediate_size=1536,
                    patch_size=16,
                    image_size=224,
                    num_labels=1000,
                )
            )
            builders["ConvNeXt-T"] = lambda: ConvNextForImageClassification(
                ConvNextConfig(
                    hidden_sizes=[96, 192, 384, 768],
                    depths=[3, 3, 9, 3],
                    num_labels=1000,
                    drop_path_rate=DROP_PATH_RATE,
                )
            )
    return builders


def reference_of(name: str) -> str:
    """The Swin each model is compared with: a VBB preset with the Swin of its size, every other model with Swin-T."""
    return f"Swin-{name.split('-')[1]}" if name.startswith("VBB-") else "Swin-T"


def build(builder: Callable[[], nn.Module]) -> nn.Module:
    """Build in eval mode, with sdpa attention where the model supports it (PVTv2 has its own attention)."""
    torch.manual_seed(0)
    model = builder()
    if model._supports_sdpa:
        model.set_attn_implementation("sdpa")
    return model.eval()


def attention_of(model: nn.Module) -> str:
    if not model._supports_sdpa:
        return "own (eager)" if "Pvt" in type(model).__name__ else "none"
    return model.config._attn_implementation


def forward_kwargs(name: str) -> dict:
    """ViT's learned position embedding must be interpolated for inputs other than 224 (a no-op at 224)."""
    return {"interpolate_pos_encoding": True} if name.startswith("ViT") else {}


# ---- Timing ----------------------------------------------------------------


def interleaved_times(tasks: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each task, calling the tasks round by round (A B C A B C ...) after `warmup` rounds."""
    for _ in range(warmup):
        for task in tasks.values():
            task()
    times = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict:
    return {"median_s": float(np.median(times)), "min_s": min(times), "max_s": max(times), "times_s": times}


def inference_task(model: nn.Module, pixel_values: torch.Tensor, kwargs: dict, bf16: bool = False) -> Callable:
    def task():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(pixel_values, **kwargs)

    return task


def matmul_task(dtype: torch.dtype) -> Callable:
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator).to(dtype)
    right = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator).to(dtype)
    return lambda: torch.matmul(left, right)


def training_task(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> Callable:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def task():
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return task


# ---- Memory: one fresh process per (model, resolution) ----------------------


def read_status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def memory_probe(name: str, resolution: int, sizes: list[str]) -> dict:
    """Peak resident memory added by one batch-1 forward of `name` at `resolution`, in this (fresh) process:
    a 224x224 forward first initialises the libraries (smaller inputs trip transformers' Swin sdpa path),
    `malloc_trim` returns the freed heap to the OS, the kernel's peak-RSS counter (VmHWM) is reset, and the peak is
    read after the forward. Then the forward's FLOPs."""
    model = build(model_builders(sizes)[name])
    kwargs = forward_kwargs(name)
    with torch.inference_mode():
        model(torch.randn(1, 3, 224, 224), **kwargs)
    pixel_values = torch.randn(1, 3, resolution, resolution)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")                                                  # resets VmHWM to the current RSS
    before_kib = read_status_kib("VmRSS")
    with torch.inference_mode():
        model(pixel_values, **kwargs)
    peak_kib = read_status_kib("VmHWM")
    return {
        "peak_delta_mib": (peak_kib - before_kib) / 1024,
        "rss_before_mib": before_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
        "forward_flops": count_forward_flops(model, pixel_values, **kwargs),
    }


def run_memory_probe(name: str, resolution: int, args: BenchmarkArguments) -> dict:
    command = [sys.executable, __file__, "--memory_probe", name, "--memory_probe_size", str(resolution), "--sizes"]
    command += args.sizes + (["--threads", str(args.threads)] if args.threads else [])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- Profile ---------------------------------------------------------------


def module_class_times(model: nn.Module, task: Callable, iterations: int) -> list[dict]:
    """Inclusive wall time per module class (forward hooks; CPU ops are synchronous), per forward."""
    starts, totals, calls = {}, defaultdict(float), defaultdict(int)

    def pre_hook(module, _):
        starts[id(module)] = time.perf_counter()

    def post_hook(module, _, __):
        totals[type(module).__name__] += time.perf_counter() - starts.pop(id(module))
        calls[type(module).__name__] += 1

    handles = [module.register_forward_pre_hook(pre_hook) for module in model.modules()]
    handles += [module.register_forward_hook(post_hook) for module in model.modules()]
    try:
        for _ in range(iterations):
            task()
    finally:
        for handle in handles:
            handle.remove()
    whole = totals[type(model).__name__]
    rows = [
        {
            "module": name,
            "ms": total / iterations * 1e3,
            "percent": 100 * total / whole,
            "calls": calls[name] // iterations,
        }
        for name, total in totals.items()
    ]
    return sorted(rows, key=lambda row: -row["ms"])


def top_ops(task: Callable, iterations: int, limit: int = 15) -> list[dict]:
    """Top aten ops by self CPU time per forward (torch.profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(iterations):
            task()
    events = profiler.key_averages()
    total_us = sum(event.self_cpu_time_total for event in events)
    rows = [
        {
            "op": event.key,
            "self_ms": event.self_cpu_time_total / iterations / 1e3,
            "percent": 100 * event.self_cpu_time_total / total_us,
            "calls": event.count // iterations,
        }
        for event in events
    ]
    return sorted(rows, key=lambda row: -row["self_ms"])[:limit]


# ---- Report ----------------------------------------------------------------


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        lines = cpuinfo.read().splitlines()
    names = {line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")}
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    isa = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    family = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("cpu family")), "?")
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model\t")), "?")
    return f"{', '.join(sorted(names))} (family {family} model {model}; {' '.join(isa)})"


def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
        return revision.stdout.strip() + ("+uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def fit_exponent(resolutions: list[int], values: list[float]) -> float:
    """Slope of log(value) against log(pixels)."""
    pixels = np.array(resolutions, dtype=float) ** 2
    return float(np.polyfit(np.log(pixels), np.log(np.array(values, dtype=float)), 1)[0])


def fmt_ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x"


def markdown_report(results: dict) -> str:
    context, models = results["context"], results["models"]
    names = list(models)
    matmul = results["matmul"]
    lines = [
        f"Generated by `{context['command']}` on {context['date']}.",
        "",
        f"- machine: {context['cpu']}, {context['logical_cpus']} logical CPUs, torch threads {context['threads']}; "
        f"load average (1 min) {context['load_before'][0]:.2f} before, {context['load_after'][0]:.2f} after "
        "(the cores are shared); at the start of each phase: "
        + ", ".join(f"{phase} {load[0]:.2f}" for phase, load in results["load"].items()),
        f"- software: python {context['python']}, torch {context['torch']}, transformers {context['transformers']}, "
        f"repo {context['git']}",
        f"- float32 unless stated; throughput and training at {context['image_size']}x{context['image_size']}, "
        f"batch {context['batch_size']}; latency and memory at batch 1; warm-up {context['warmup']} rounds, "
        f"{context['repeats']} rounds (training {context['train_repeats']}, latency {context['latency_repeats']}), "
        "models interleaved round by round; medians",
        f"- {MATMUL_SIZE}x{MATMUL_SIZE} matmul, measured in the same rounds as the throughput: "
        f"{matmul['float32']['gflops']:.1f} GFLOP/s float32, {matmul['bfloat16']['gflops']:.1f} GFLOP/s bfloat16 "
        f"(its time per call ranged {matmul['float32']['min_s'] * 1e3:.0f}-{matmul['float32']['max_s'] * 1e3:.0f} ms "
        "over the rounds: the spread shows how much of the machine the run got)",
        "- peak memory: extra resident memory (VmHWM - VmRSS) of one batch-1 forward in a fresh process per model and "
        "resolution, after a 224x224 warm-up forward and malloc_trim (weights excluded: they are resident before)",
        "",
        "### Cost and throughput (ratios against the Swin of the same size)",
        "",
        "| model | attention | params (M) | GMACs @224 | fp32 img/s | × Swin | bf16 img/s | × Swin | bf16/fp32 "
        "| train step (s) | × Swin | fwd % of matmul rate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fp32, bf16, train = results["throughput_fp32"], results["throughput_bf16"], results["train_step"]
    for name in names:
        ref = reference_of(name)
        lines.append(
            f"| {name} | {models[name]['attention']} | {models[name]['params'] / 1e6:.1f} "
            f"| {models[name]['gmacs'][str(context['image_size'])]:.2f} "
            f"| {fp32[name]['images_per_s']:.1f} | {fmt_ratio(fp32[name]['images_per_s'], fp32[ref]['images_per_s'])} "
            f"| {bf16[name]['images_per_s']:.1f} | {fmt_ratio(bf16[name]['images_per_s'], bf16[ref]['images_per_s'])} "
            f"| {bf16[name]['images_per_s'] / fp32[name]['images_per_s']:.2f}x "
            f"| {train[name]['median_s']:.2f} | {fmt_ratio(train[name]['median_s'], train[ref]['median_s'])} "
            f"| {100 * fp32[name]['matmul_fraction']:.0f}% |"
        )
    lines += [
        "",
        "Spread (min-max over rounds) of the batch timings, seconds:",
        "",
        "| model | fp32 forward | bf16 forward | train step |",
        "|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {fp32[name]['median_s']:.3f} ({fp32[name]['min_s']:.3f}-{fp32[name]['max_s']:.3f}) "
            f"| {bf16[name]['median_s']:.3f} ({bf16[name]['min_s']:.3f}-{bf16[name]['max_s']:.3f}) "
            f"| {train[name]['median_s']:.2f} ({train[name]['min_s']:.2f}-{train[name]['max_s']:.2f}) |"
        )

    resolutions = context["resolutions"]
    header = "| model | " + " | ".join(str(r) for r in resolutions) + " | exponent | exponent ≥512 |"
    rule = "|---|" + "---:|" * (len(resolutions) + 2)
    for title, key, unit_format in (
        ("Batch-1 latency, ms (× Swin)", "latency", lambda entry: entry["median_s"] * 1e3),
        ("Batch-1 peak forward memory, MiB (× Swin)", "memory", lambda entry: entry["peak_delta_mib"]),
    ):
        lines += ["", f"### {title}", "", header, rule]
        for name in names:
            ref = reference_of(name)
            cells = []
            for resolution in resolutions:
                value = unit_format(results[key][str(resolution)][name])
                ref_value = unit_format(results[key][str(resolution)][ref])
                cells.append(f"{value:.0f} ({fmt_ratio(value, ref_value)})" if name != ref else f"{value:.0f}")
            exponents = results["exponents"][name]
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {exponents[key]:.2f} | {exponents[key + '_high']:.2f} |"
            )
    lines += [
        "",
        "Exponent: slope of log(value) vs log(pixels) over all resolutions above (1.0 = linear in pixels); "
        "'≥512': over the resolutions from 512 up.",
        "",
        "Fraction of the float32 matmul rate reached by each batch-1 forward (forward FLOPs / latency / matmul rate):",
        "",
        "| model | " + " | ".join(str(r) for r in resolutions) + " |",
        "|---|" + "---:|" * len(resolutions),
    ]
    for name in names:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * results['latency'][str(r)][name]['matmul_fraction']:.0f}%" for r in resolutions)
            + " |"
        )
    if "compile" in results:
        compiled = results["compile"]
        lines += [
            "",
            "### torch.compile (Vision Big Bird, float32, 224, batch "
            f"{context['batch_size']})",
            "",
            "| model | torch.compile | compile time (s) | eager img/s | compiled img/s | speedup |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, entry in compiled.items():
            for mode, variant in entry["variants"].items():
                lines.append(
                    f"| {name} | {mode} | {variant['compile_s']:.0f} | {variant['eager_images_per_s']:.1f} "
                    f"| {variant['images_per_s']:.1f} | {variant['speedup']:.2f}x |"
                )
    lines += ["", "### Targets (Vision Big Bird tiny)", "", "| target | measured | met |", "|---|---|---|"]
    for target in results["targets"]:
        lines.append(f"| {target['target']} | {target['measured']} | {'yes' if target['met'] else '**no**'} |")
    if "profile" in results:
        for name, profile in results["profile"].items():
            lines += [
                "",
                f"### Profile: {name} forward, float32, {context['image_size']}, batch {context['batch_size']}",
                "",
                f"Top ops by self CPU time (torch.profiler, {profile['iterations']} forwards; per forward):",
                "",
                "| op | self ms | % | calls |",
                "|---|---:|---:|---:|",
            ]
            lines += [
                f"| `{row['op']}` | {row['self_ms']:.1f} | {row['percent']:.1f} | {row['calls']} |"
                for row in profile["ops"]
            ]
            lines += [
                "",
                "Inclusive time per module class (forward hooks; nested classes are inside their parents):",
                "",
                "| module class | ms | % of forward | calls |",
                "|---|---:|---:|---:|",
            ]
            lines += [
                f"| {row['module']} | {row['ms']:.1f} | {row['percent']:.1f} | {row['calls']} |"
                for row in profile["modules"]
            ]
    lines += ["", f"![latency and memory vs pixels]({Path(context['plot']).name})"]
    return "\n".join(lines)


def evaluate_targets(results: dict) -> list[dict]:
    """The project's targets for Vision Big Bird tiny, each with the measured value and whether it is met."""
    if "VBB-T" not in results["models"]:
        return []
    fp32, bf16, train = results["throughput_fp32"], results["throughput_bf16"], results["train_step"]
    resolutions = [str(r) for r in results["context"]["resolutions"]]
    latency = {
        r: results["latency"][r]["VBB-T"]["median_s"] / results["latency"][r]["Swin-T"]["median_s"]
        for r in resolutions
    }
    memory = {
        r: results["memory"][r]["VBB-T"]["peak_delta_mib"] / results["memory"][r]["Swin-T"]["peak_delta_mib"]
        for r in resolutions
    }
    vs_swin = fp32["VBB-T"]["images_per_s"] / fp32["Swin-T"]["images_per_s"]
    vs_convnext = fp32["VBB-T"]["images_per_s"] / fp32["ConvNeXt-T"]["images_per_s"]
    largest = resolutions[-1]
    vs_vit = results["latency"][largest]["VBB-T"]["median_s"] / results["latency"][largest]["ViT-S/16"]["median_s"]
    bf16_speedup = bf16["VBB-T"]["images_per_s"] / fp32["VBB-T"]["images_per_s"]
    train_ratio = train["VBB-T"]["median_s"] / train["Swin-T"]["median_s"]
    exponent = results["exponents"]["VBB-T"]["memory"]
    matmul_fraction = fp32["VBB-T"]["matmul_fraction"]

    def per_size(ratios):
        return ", ".join(f"{r}: {ratio:.2f}" for r, ratio in ratios.items())

    def target(text: str, measured: str, met: bool) -> dict:
        return {"target": text, "measured": measured, "met": bool(met)}

    return [
        target("fp32 throughput (224, b8) ≥ 1.15x Swin-T", f"{vs_swin:.3f}x", vs_swin >= 1.15),
        target("fp32 throughput ≥ ConvNeXt-T", f"{vs_convnext:.3f}x", vs_convnext >= 1.0),
        target("forward ≥ 75% of matmul rate", f"{100 * matmul_fraction:.1f}%", matmul_fraction >= 0.75),
        target("batch-1 latency ≤ 0.85x Swin-T at every size", per_size(latency), max(latency.values()) <= 0.85),
        target(f"far ahead of ViT-S/16 at {largest} (read as ≤ 0.5x its latency)", f"{vs_vit:.2f}x", vs_vit <= 0.5),
        target("bf16 autocast ≥ 2x fp32 throughput", f"{bf16_speedup:.3f}x", bf16_speedup >= 2.0),
        target("training step ≤ 0.9x Swin-T", f"{train_ratio:.3f}x", train_ratio <= 0.9),
        target("peak memory ≤ Swin-T at every size", per_size(memory), max(memory.values()) <= 1.0),
        target("memory exponent vs pixels ≤ 1.1", f"{exponent:.2f}", exponent <= 1.1),
    ]


def write_markdown_section(path: str, section: str) -> None:
    """Replace the text between the generated-section markers of `path` (append the markers if absent)."""
    document = Path(path).read_text() if Path(path).exists() else ""
    block = f"{MARKDOWN_BEGIN}\n{section}\n{MARKDOWN_END}"
    if MARKDOWN_BEGIN in document and MARKDOWN_END in document:
        head, rest = document.split(MARKDOWN_BEGIN, 1)
        document = head + block + rest.split(MARKDOWN_END, 1)[1]
    else:
        document = document + ("\n" if document else "") + block + "\n"
    Path(path).write_text(document)


def plot_scaling(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    resolutions = results["context"]["resolutions"]
    pixels = np.array(resolutions, dtype=float) ** 2
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, key, label, value_of in (
        (axes[0], "latency", "batch-1 latency (ms)", lambda entry: entry["median_s"] * 1e3),
        (axes[1], "memory", "batch-1 peak forward memory (MiB)", lambda entry: entry["peak_delta_mib"]),
    ):
        for name in results["models"]:
            values = [value_of(results[key][str(r)][name]) for r in resolutions]
            axis.plot(pixels, values, marker="o", label=f"{name} (slope {results['exponents'][name][key]:.2f})")
        reference = "Swin-T" if "Swin-T" in results["models"] else next(iter(results["models"]))
        start = value_of(results[key][str(resolutions[0])][reference])
        axis.plot(pixels, start * pixels / pixels[0], "k:", label=f"linear in pixels (from {reference})")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(pixels, [f"{r}²" for r in resolutions])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xlabel("input pixels")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    context = results["context"]
    threads = f"{context['threads']} thread" + ("s" if context["threads"] != 1 else "")
    figure.suptitle(f"CPU ({threads}), float32, batch 1, torch {context['torch']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---- Run -------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_context(args: BenchmarkArguments) -> dict:
    return {
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git": git_revision(),
        "load_before": os.getloadavg(),
        "dtype": "float32 (bfloat16 autocast where stated)",
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "resolutions": args.resolutions,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "train_repeats": args.train_repeats,
        "latency_repeats": args.latency_repeats,
        "plot": args.plot,
        "drop_path_rate": DROP_PATH_RATE,
    }


def measure_cost(models: dict[str, nn.Module], image_size: int) -> dict:
    """Parameters and forward FLOPs (batch 1, `image_size`) of every model."""
    image = torch.randn(1, 3, image_size, image_size)
    costs = {}
    for name, model in models.items():
        flops = count_forward_flops(model, image, **forward_kwargs(name))
        costs[name] = {
            "class": type(model).__name__,
            "attention": attention_of(model),
            "params": count_parameters(model),
            "gmacs": {str(image_size): flops / 2e9},
            "forward_flops": {str(image_size): flops},
            "config": model.config.to_dict(),
        }
        log(f"{name}: {costs[name]['params'] / 1e6:.2f}M params, {flops / 2e9:.2f} GMACs")
    return costs


def measure_throughput(models: dict[str, nn.Module], batch: torch.Tensor, costs: dict, args) -> dict:
    """Forward time per batch of every model in float32 and under bfloat16 autocast, and of a square matmul in
    each dtype, all in the same rounds (model by model, float32 then bfloat16, then the matmuls), so the
    bf16/fp32 ratios and the matmul-rate fractions compare calls made moments apart."""
    log(f"throughput fp32 + bf16 autocast: {args.warmup} warm-up + {args.repeats} rounds")
    tasks = {}
    for name, model in models.items():
        tasks[(name, "float32")] = inference_task(model, batch, forward_kwargs(name), bf16=False)
        tasks[(name, "bfloat16")] = inference_task(model, batch, forward_kwargs(name), bf16=True)
    for dtype in (torch.float32, torch.bfloat16):
        tasks[("matmul", str(dtype).removeprefix("torch."))] = matmul_task(dtype)
    times = interleaved_times(tasks, args.warmup, args.repeats)
    matmul = {}
    for dtype in ("float32", "bfloat16"):
        entry = summary(times.pop(("matmul", dtype)))
        entry["gflops"] = 2 * MATMUL_SIZE**3 / entry["median_s"] / 1e9
        matmul[dtype] = entry
    entries = {"float32": {}, "bfloat16": {}, "matmul": matmul}
    for (name, dtype), model_times in times.items():
        entry = summary(model_times)
        entry["images_per_s"] = args.batch_size / entry["median_s"]
        flops = args.batch_size * costs[name]["forward_flops"][str(args.image_size)]
        entry["matmul_fraction"] = flops / entry["median_s"] / (matmul[dtype]["gflops"] * 1e9)
        entries[dtype][name] = entry
        log(f"  {name} {dtype}: {entry['images_per_s']:.1f} img/s ({entry['min_s']:.3f}-{entry['max_s']:.3f} s/batch)")
    return entries


def measure_training(models: dict[str, nn.Module], batch: torch.Tensor, args) -> dict:
    """Seconds per training step (forward with loss, backward, AdamW step); models are back in eval mode after."""
    log(f"train step: {args.warmup} warm-up + {args.train_repeats} rounds")
    labels = torch.randint(0, 1000, (batch.shape[0],))
    tasks = {name: training_task(model.train(), batch, labels) for name, model in models.items()}
    times = interleaved_times(tasks, args.warmup, args.train_repeats)
    entries = {name: summary(model_times) for name, model_times in times.items()}
    for name, model in models.items():
        model.eval().zero_grad(set_to_none=True)
        log(f"  {name}: {entries[name]['median_s']:.2f} s")
    return entries


def measure_latency(models: dict[str, nn.Module], resolution: int, repeats: int) -> dict:
    log(f"latency {resolution}: 1 warm-up + {repeats} rounds")
    pixel_values = torch.randn(1, 3, resolution, resolution)
    tasks = {name: inference_task(model, pixel_values, forward_kwargs(name)) for name, model in models.items()}
    times = interleaved_times(tasks, 1, repeats)
    return {name: summary(model_times) for name, model_times in times.items()}


def measure_compile(model: nn.Module, batch: torch.Tensor, args) -> dict:
    """For torch.compile's default mode and with inductor's `freezing` (weights become constants, so oneDNN
    prepacks convolution and linear weights once instead of reordering them at every call; inference only): the
    cold compile time (first call, empty inductor cache directory, dynamo reset) and the forward time, interleaved
    with eager in its own rounds. Dynamo's cache would otherwise serve one variant's code to the other."""
    import torch._dynamo
    from torch._inductor import config as inductor_config

    previous_cache_dir = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    entries = {}
    try:
        for name, config in (("default", {}), ("freezing", {"freezing": True})):
            # the config stays patched while timing too, so a recompilation would get the same options
            with tempfile.TemporaryDirectory(prefix="benchmark_inductor_") as cache_dir, inductor_config.patch(config):
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
                torch._dynamo.reset()
                compiled = torch.compile(model)
                start = time.perf_counter()
                inference_task(compiled, batch, {})()
                compile_seconds = time.perf_counter() - start
                tasks = {"eager": inference_task(model, batch, {}), name: inference_task(compiled, batch, {})}
                times = interleaved_times(tasks, args.warmup, args.repeats)
            eager, entry = summary(times["eager"]), summary(times[name])
            entries[name] = {
                **entry,
                "compile_s": compile_seconds,
                "images_per_s": args.batch_size / entry["median_s"],
                "eager": eager,
                "eager_images_per_s": args.batch_size / eager["median_s"],
                "speedup": eager["median_s"] / entry["median_s"],
            }
    finally:
        torch._dynamo.reset()
        if previous_cache_dir is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous_cache_dir
    return {"variants": entries}


def run(args: BenchmarkArguments) -> dict:
    context = run_context(args)
    log(f"context: {json.dumps(context)}")
    models = {name: build(builder) for name, builder in model_builders(args.sizes).items()}
    results = {"context": context, "models": measure_cost(models, args.image_size), "load": {}}
    batch = torch.randn(args.batch_size, 3, args.image_size, args.image_size)

    results["load"]["throughput"] = os.getloadavg()
    throughput = measure_throughput(models, batch, results["models"], args)
    results["throughput_fp32"], results["throughput_bf16"] = throughput["float32"], throughput["bfloat16"]
    results["matmul"] = throughput["matmul"]
    fp32_rate = results["matmul"]["float32"]["gflops"] * 1e9
    results["load"]["train_step"] = os.getloadavg()
    results["train_step"] = measure_training(models, batch, args)
    gc.collect()

    results["load"]["latency"] = os.getloadavg()
    results["latency"] = {str(r): measure_latency(models, r, args.latency_repeats) for r in args.resolutions}
    results["load"]["memory"] = os.getloadavg()
    results["memory"] = {}
    for resolution in args.resolutions:
        results["memory"][str(resolution)] = {}
        for name in models:
            probe = run_memory_probe(name, resolution, args)
            results["memory"][str(resolution)][name] = probe
            results["models"][name]["forward_flops"][str(resolution)] = probe["forward_flops"]
            results["models"][name]["gmacs"][str(resolution)] = probe["forward_flops"] / 2e9
            latency = results["latency"][str(resolution)][name]
            latency["matmul_fraction"] = probe["forward_flops"] / latency["median_s"] / fp32_rate
            log(f"  {name} @ {resolution}: {latency['median_s'] * 1e3:.0f} ms, {probe['peak_delta_mib']:.0f} MiB")

    high = [r for r in args.resolutions if r >= 512] or args.resolutions
    results["exponents"] = {}
    for name in models:
        latencies = {r: results["latency"][str(r)][name]["median_s"] for r in args.resolutions}
        memories = {r: results["memory"][str(r)][name]["peak_delta_mib"] for r in args.resolutions}
        results["exponents"][name] = {
            "latency": fit_exponent(args.resolutions, [latencies[r] for r in args.resolutions]),
            "memory": fit_exponent(args.resolutions, [memories[r] for r in args.resolutions]),
            "latency_high": fit_exponent(high, [latencies[r] for r in high]),
            "memory_high": fit_exponent(high, [memories[r] for r in high]),
        }

    if args.profile:
        results["profile"] = {}
        for name in [name for name in ("VBB-T", "Swin-T") if name in models]:
            log(f"profile {name}")
            task = inference_task(models[name], batch, forward_kwargs(name))
            task()
            iterations = 3
            results["profile"][name] = {
                "iterations": iterations,
                "ops": top_ops(task, iterations),
                "modules": module_class_times(models[name], task, iterations),
            }

    if args.compile:
        results["load"]["compile"] = os.getloadavg()
        results["compile"] = {}
        for name in [name for name in models if name.startswith("VBB-")]:
            log(f"torch.compile {name}")
            results["compile"][name] = measure_compile(models[name], batch, args)
            for mode, variant in results["compile"][name]["variants"].items():
                log(f"  {mode}: compile {variant['compile_s']:.0f} s, {variant['speedup']:.2f}x")

    context["load_after"] = os.getloadavg()
    results["targets"] = evaluate_targets(results)
    return results


def main():
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.memory_probe_size, args.sizes)))
        return
    if args.report_from:
        with open(args.report_from) as handle:
            results = json.load(handle)
        results["targets"] = evaluate_targets(results)
    else:
        results = run(args)
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output_json, "w") as handle:
            json.dump({"arguments": asdict(args), **results}, handle, indent=2, default=str)
    report = markdown_report(results)
    print(report)
    plot_scaling(results, args.plot)
    if args.write_markdown:
        write_markdown_section(args.write_markdown, report)
    written = ([] if args.report_from else [args.output_json]) + [args.plot]
    written += [args.write_markdown] if args.write_markdown else []
    log(f"wrote {', '.join(written)}")


if __name__ == "__main__":
    main()
