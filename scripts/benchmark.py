"""Speed and memory of Vision Big Bird tiny (arXiv 2311.05988) next to Swin-T, PVTv2-b2, ViT-S/16 and ConvNeXt-T,
on the CPU or a CUDA GPU.

    python scripts/benchmark.py --device cpu --threads 1 --compile --export --profile --output_dir docs  # recorded
    python scripts/benchmark.py --device cpu --threads 1 --quick                           # smoke run, runs/benchmark
    python scripts/benchmark.py --device cuda --output_dir runs/benchmark-cuda

Every model is built from its configuration (random weights, 1000 labels, no downloads), with sdpa attention where
it supports it, moved with `model.to(memory_format=torch.channels_last)` (inputs too), in eval mode under
`torch.inference_mode` except for the training step. Models are called round by round (A B C A B C ...) after
warm-up rounds, so drift of a shared machine hits all alike; numbers are medians with min-max. CPU calls are timed
with `time.perf_counter`, CUDA calls with CUDA events after `torch.cuda.synchronize()`.

Measured: parameters (`model.num_parameters()`), forward GMACs (`FlopCounterMode` with the CPU SDPA kernel counted,
`scripts/model_cost.py`); throughput in float32 and bfloat16 autocast, in the same rounds as a square matmul of each
dtype (CPU: batch 8; CUDA: the largest batch up to 256 that fits); a training step (forward, backward, AdamW);
batch-1 latency and peak memory per resolution (CPU: VmHWM - VmRSS of one forward in a fresh process; CUDA:
`torch.cuda.max_memory_allocated` minus what was allocated before); the fraction of the matmul rate each forward
reaches; the SDPA kernel each attention call runs. `--compile`: graph breaks, compile time per new input size and
the speedup (default, inductor freezing); `--export`: a dynamic-shape `torch.export` program against eager;
`--profile`: self time per op and time per module class of batch-1 forwards. Writes `benchmark_results.json` and
the whole `benchmark_results.md` into `--output_dir`, every single timing into `--raw_json`.
"""

import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, HfArgumentParser

from model_cost import SWIN_SIZES, count_forward_flops
from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


DROP_PATH_RATE = 0.1  # where a model has stochastic depth, so the training step does the same work everywhere
PEERS = {  # name -> (AutoConfig model type, configuration), each of Vision Big Bird tiny's size
    "Swin-T": ("swin", SWIN_SIZES["tiny"]),
    "PVTv2-b2": ("pvt_v2", {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3],
                            "num_attention_heads": [1, 2, 5, 8], "sr_ratios": [8, 4, 2, 1],
                            "mlp_ratios": [8, 8, 4, 4]}),
    "ViT-S/16": ("vit", {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                         "intermediate_size": 1536, "patch_size": 16, "image_size": 224}),
    "ConvNeXt-T": ("convnext", {"hidden_sizes": [96, 192, 384, 768], "depths": [3, 3, 9, 3]}),
}
MODEL_NAMES = ["VBB-T", *PEERS]
REFERENCE = "Swin-T"
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}


@dataclass
class BenchmarkArguments:
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    models: list[str] = field(default_factory=lambda: list(MODEL_NAMES), metadata={"help": f"Of {MODEL_NAMES}."})
    quick: bool = field(default=False, metadata={"help": "Two resolutions, two rounds: a smoke run."})
    compile: bool = field(default=False, metadata={"help": "Also measure torch.compile on Vision Big Bird."})
    export: bool = field(default=False, metadata={"help": "Also measure a dynamic-shape torch.export program."})
    profile: bool = field(default=False, metadata={"help": "Profile batch-1 forwards of VBB-T and Swin-T."})
    batch_size: int = field(default=8, metadata={"help": "CPU throughput batch (CUDA: the largest that fits)."})
    max_batch_size: int = field(default=256, metadata={"help": "Largest CUDA throughput batch tried."})
    train_batch_size: int | None = field(default=None, metadata={"help": "Default: 8 on CPU, 64 on CUDA."})
    image_size: int = field(default=224, metadata={"help": "Resolution of throughput, training and profile."})
    resolutions: list[int] = field(default_factory=lambda: [224, 384, 512, 768, 1024], metadata={"help": "Batch-1."})
    compile_sizes: list[int] = field(default_factory=lambda: [224, 256, 288], metadata={"help": "--compile sizes."})
    warmup: int = field(default=2, metadata={"help": "Warm-up rounds before each measurement."})
    repeats: int = field(default=10, metadata={"help": "Rounds of the throughput measurements."})
    train_repeats: int = field(default=6, metadata={"help": "Rounds of the training-step measurement."})
    latency_repeats: int = field(default=5, metadata={"help": "Rounds of each batch-1 latency measurement."})
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (default: torch's)."})
    channels_last: bool = field(default=True, metadata={"help": "model.to(memory_format=torch.channels_last)."})
    output_dir: str = field(default="runs/benchmark", metadata={"help": "benchmark_results.json and .md go here."})
    raw_json: str = field(default="runs/benchmark/raw_timings.json", metadata={"help": "Every timing of every round."})
    memory_probe: str | None = field(default=None, metadata={"help": "Internal: one CPU memory probe (model name)."})
    memory_probe_size: int = field(default=224, metadata={"help": "Internal: resolution of --memory_probe."})

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device {self.device!r}: choose cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: torch.cuda.is_available() is False on this machine")
        unknown = sorted(set(self.models) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"--models {unknown}: choose from {MODEL_NAMES}")
        if self.quick:
            self.resolutions = sorted({self.resolutions[0], self.resolutions[-1]})
            self.compile_sizes = self.compile_sizes[:2]
            self.warmup, self.repeats, self.train_repeats, self.latency_repeats = 1, 2, 1, 2
            self.max_batch_size = min(self.max_batch_size, 32)
        if self.train_batch_size is None:
            self.train_batch_size = 64 if self.device == "cuda" else 8


# ---- Models ----------------------------------------------------------------


def build(name: str, device: str, channels_last: bool) -> nn.Module:
    """`name` in eval mode on `device`, with sdpa attention where the model supports it (PVTv2 has its own)."""
    torch.manual_seed(0)
    if name == "VBB-T":
        config = VisionBigBirdConfig.from_preset("tiny", num_labels=1000, drop_path_rate=DROP_PATH_RATE)
        model = VisionBigBirdForImageClassification(config)
    else:
        model_type, kwargs = PEERS[name]
        extra = {"drop_path_rate": DROP_PATH_RATE} if model_type != "vit" else {}  # transformers' ViT has none
        model = AutoModelForImageClassification.from_config(
            AutoConfig.for_model(model_type, **kwargs, **extra, num_labels=1000)
        )
    if model._supports_sdpa:
        model.set_attn_implementation("sdpa")
    model = model.to(device)
    return (model.to(memory_format=torch.channels_last) if channels_last else model).eval()


def attention_of(model: nn.Module) -> str:
    if not model._supports_sdpa:
        return "own (eager)" if "Pvt" in type(model).__name__ else "none"
    return model.config._attn_implementation


def forward_kwargs(name: str) -> dict:
    """ViT's learned position embedding must be interpolated for inputs other than 224 (a no-op at 224)."""
    return {"interpolate_pos_encoding": True} if name.startswith("ViT") else {}


def images(batch_size: int, size: int, args: BenchmarkArguments) -> torch.Tensor:
    pixel_values = torch.randn(batch_size, 3, size, size, device=args.device)
    return pixel_values.contiguous(memory_format=torch.channels_last) if args.channels_last else pixel_values


# ---- Timing ----------------------------------------------------------------


def timed(task: Callable[[], object], device: str) -> float:
    """Seconds of one call: perf_counter on CPU; on CUDA, events around the call after a synchronisation."""
    if device != "cuda":
        start = time.perf_counter()
        task()
        return time.perf_counter() - start
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    task()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def interleaved_times(tasks: dict, warmup: int, repeats: int, device: str) -> dict[object, list[float]]:
    """Seconds per call of each task, calling the tasks round by round (A B C A B C ...) after `warmup` rounds."""
    for _ in range(warmup):
        for task in tasks.values():
            task()
    times = {key: [] for key in tasks}
    for _ in range(repeats):
        for key, task in tasks.items():
            times[key].append(timed(task, device))
    return times


def summary(times: list[float]) -> dict:
    return {"median_s": float(np.median(times)), "min_s": min(times), "max_s": max(times)}


def interleaved_summaries(tasks: dict, warmup: int, repeats: int, device: str) -> dict[object, dict]:
    return {key: summary(times) for key, times in interleaved_times(tasks, warmup, repeats, device).items()}


def inference_task(model: nn.Module, pixel_values: torch.Tensor, kwargs: dict, bf16: bool = False) -> Callable:
    def task():
        with torch.inference_mode(), torch.autocast(pixel_values.device.type, torch.bfloat16, enabled=bf16):
            return model(pixel_values=pixel_values, **kwargs)

    return task


def matmul_task(dtype: torch.dtype, device: str) -> Callable:
    generator = torch.Generator().manual_seed(0)
    left, right = (torch.randn(MATMUL_SIZE[device], MATMUL_SIZE[device], generator=generator) for _ in range(2))
    left, right = left.to(device, dtype), right.to(device, dtype)
    return lambda: torch.matmul(left, right)


def training_task(model: nn.Module, pixel_values: torch.Tensor, kwargs: dict, bf16: bool) -> Callable:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.randint(0, 1000, (pixel_values.shape[0],), device=pixel_values.device)

    def task():
        with torch.autocast(pixel_values.device.type, torch.bfloat16, enabled=bf16):
            loss = model(pixel_values, labels=labels, **kwargs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return task


# ---- Memory ----------------------------------------------------------------


def read_status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field_name + ":"))


def cpu_memory_probe(name: str, resolution: int, args: BenchmarkArguments) -> float:
    """MiB of resident memory one batch-1 forward adds, in this fresh process: a 224x224 forward initialises the
    libraries, `malloc_trim` returns the freed heap, the peak-RSS counter (VmHWM) is reset, one forward runs."""
    model = build(name, "cpu", args.channels_last)
    inference_task(model, images(1, 224, args), forward_kwargs(name))()
    task = inference_task(model, images(1, resolution, args), forward_kwargs(name))
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")                                # resets VmHWM to the current RSS
    before_kib = read_status_kib("VmRSS")
    task()
    return (read_status_kib("VmHWM") - before_kib) / 1024


def peak_memory_mib(name: str, model: nn.Module, resolution: int, args: BenchmarkArguments) -> float:
    if args.device == "cuda":
        task = inference_task(model, images(1, resolution, args), forward_kwargs(name))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        task()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    command = [sys.executable, __file__, "--memory_probe", name, "--memory_probe_size", str(resolution),
               "--channels_last", str(args.channels_last)] + (["--threads", str(args.threads)] if args.threads else [])
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])


# ---- Measurements ----------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def largest_batch(name: str, model: nn.Module, args: BenchmarkArguments) -> int:
    """CPU: --batch_size. CUDA: the largest of --max_batch_size, half of it, ... whose float32 forward fits."""
    if args.device != "cuda":
        return args.batch_size
    batch_size = args.max_batch_size
    while batch_size > 1:
        try:
            inference_task(model, images(batch_size, args.image_size, args), forward_kwargs(name))()
            return batch_size
        except torch.cuda.OutOfMemoryError:
            batch_size //= 2
        finally:
            torch.cuda.empty_cache()
    return 1


def measure_throughput(models: dict, args: BenchmarkArguments, raw: dict) -> dict:
    """Forward time per batch in float32 and under bfloat16 autocast, and of a square matmul in each dtype, all in
    the same rounds, so the bf16/fp32 ratios and the matmul-rate fractions compare calls made moments apart."""
    batch_sizes = {name: largest_batch(name, model, args) for name, model in models.items()}
    log(f"throughput fp32 + bf16 autocast, batch {batch_sizes}: {args.warmup} warm-up + {args.repeats} rounds")
    tasks = {}
    for name, model in models.items():
        pixel_values = images(batch_sizes[name], args.image_size, args)
        for dtype in ("float32", "bfloat16"):
            tasks[(dtype, name)] = inference_task(model, pixel_values, forward_kwargs(name), dtype == "bfloat16")
    for dtype in ("float32", "bfloat16"):
        tasks[("matmul", dtype)] = matmul_task(getattr(torch, dtype), args.device)
    times = interleaved_times(tasks, args.warmup, args.repeats, args.device)
    raw["throughput"] = {"/".join(key): value for key, value in times.items()}
    results = {"batch_size": batch_sizes, "matmul": {}, "float32": {}, "bfloat16": {}}
    for dtype in ("float32", "bfloat16"):
        entry = summary(times.pop(("matmul", dtype)))
        results["matmul"][dtype] = {**entry, "gflops": 2 * MATMUL_SIZE[args.device] ** 3 / entry["median_s"] / 1e9}
    for (dtype, name), model_times in times.items():
        entry = results[dtype][name] = summary(model_times)
        entry["images_per_s"] = batch_sizes[name] / entry["median_s"]
        log(f"  {name} {dtype}: {entry['images_per_s']:.1f} img/s")
    return results


def measure_training(models: dict, args: BenchmarkArguments, raw: dict) -> dict:
    """Seconds per training step (float32 on CPU, bfloat16 autocast on CUDA); models are in eval mode after."""
    bf16 = args.device == "cuda"
    log(f"train step, batch {args.train_batch_size}, bf16 {bf16}: {args.warmup} + {args.train_repeats} rounds")
    pixel_values = images(args.train_batch_size, args.image_size, args)
    tasks = {name: training_task(model.train(), pixel_values, forward_kwargs(name), bf16) 
             for name, model in models.items()}
    times = raw["train_step"] = interleaved_times(tasks, args.warmup, args.train_repeats, args.device)
    for model in models.values():
        model.eval().zero_grad(set_to_none=True)
    return {name: summary(model_times) for name, model_times in times.items()}


def measure_resolution(models: dict, resolution: int, args: BenchmarkArguments, raw: dict) -> tuple[dict, dict]:
    """Batch-1 latency (with the forward's FLOPs) and peak memory of every model at `resolution`."""
    log(f"latency and memory {resolution}: 1 warm-up + {args.latency_repeats} rounds")
    pixel_values = images(1, resolution, args)
    tasks = {name: inference_task(model, pixel_values, forward_kwargs(name)) for name, model in models.items()}
    times = raw.setdefault("latency", {})[resolution] = interleaved_times(tasks, 1, args.latency_repeats, args.device)
    latency, memory = {}, {}
    for name, model in models.items():
        flops = count_forward_flops(model, pixel_values, **forward_kwargs(name))
        latency[name] = {**summary(times[name]), "gmacs": flops / 2e9}
        memory[name] = peak_memory_mib(name, model, resolution, args)
        log(f"  {name}: {latency[name]['median_s'] * 1e3:.1f} ms, {memory[name]:.0f} MiB")
    return latency, memory


def sdpa_kernels(models: dict, args: BenchmarkArguments) -> dict:
    """Which SDPA kernel (aten op) each model's attention calls run, per dtype: ops of one batch-1 forward at
    --image_size, from torch.profiler (flash, efficient, cudnn, math or the CPU flash kernel; PVTv2: none)."""
    kernels = {}
    for name, model in models.items():
        kernels[name] = {}
        for dtype in ("float32", "bfloat16"):
            task = inference_task(model, images(1, args.image_size, args), forward_kwargs(name), dtype == "bfloat16")
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
                task()
            kernels[name][dtype] = {event.key: event.count for event in profiler.key_averages()
                                    if event.key.startswith("aten::_scaled_dot_product")}
    return kernels


def measure_compile(model: nn.Module, args: BenchmarkArguments) -> dict:
    """torch.compile on Vision Big Bird, each compile on an empty inductor cache: graphs and graph breaks of the eval
    forward (dynamo.explain); the first call of each --compile_sizes input under the default `torch.compile(model)`
    (compile + run, batch 1; graphs compiled so far; largest |compiled - eager| logit); then, for the default mode and
    inductor freezing, a static-shape compile at --image_size, batch --batch_size: compile time and forward time,
    interleaved with eager."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    from torch._inductor import config as inductor_config

    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(images(2, args.image_size, args))
    results = {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count,
               "break_reasons": [str(reason.reason) for reason in explained.break_reasons], "calls": [],
               "variants": {}}
    for variant, options in (("sizes", {}), ("default", {}), ("freezing", {"freezing": True})):
        with tempfile.TemporaryDirectory() as cache_dir, inductor_config.patch(options):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
            torch._dynamo.reset()
            counters.clear()
            if variant == "sizes":                      # what a user of torch.compile(model) sees per new size
                compiled = torch.compile(model)
                for size in args.compile_sizes:
                    pixel_values = images(1, size, args)
                    seconds = timed(inference_task(compiled, pixel_values, {}), args.device)
                    with torch.inference_mode():
                        logits = compiled(pixel_values=pixel_values).logits
                        difference = (logits - model(pixel_values=pixel_values).logits).abs().max().item()
                    results["calls"].append({"size": size, "first_call_s": seconds, "max_abs_logit_diff": difference,
                                             "graphs": counters["stats"]["unique_graphs"]})
                    log(f"  compile, new size {size}: {seconds:.1f} s, {results['calls'][-1]['graphs']} graphs")
                continue
            compiled = torch.compile(model, dynamic=False)
            batch = images(args.batch_size, args.image_size, args)
            compile_seconds = timed(inference_task(compiled, batch, {}), args.device)
            tasks = {"eager": inference_task(model, batch, {}), "compiled": inference_task(compiled, batch, {})}
            times = interleaved_summaries(tasks, args.warmup, args.repeats, args.device)
        results["variants"][variant] = {"compile_s": compile_seconds, **times,
                                        "speedup": times["eager"]["median_s"] / times["compiled"]["median_s"]}
        log(f"  compile {variant}: {compile_seconds:.0f} s, {results['variants'][variant]['speedup']:.2f}x")
    os.environ.pop("TORCHINDUCTOR_CACHE_DIR")
    torch._dynamo.reset()
    return results


def measure_export(model: nn.Module, args: BenchmarkArguments) -> dict:
    """Batch-1 latency of a `torch.export` program with dynamic batch, height and width against eager."""
    from torch.export import Dim, export

    shapes = {"pixel_values": {0: Dim("batch", min=1, max=64), 2: Dim("height", min=33, max=1024),
                               3: Dim("width", min=33, max=1024)}}
    start = time.perf_counter()
    exported = export(model, (), {"pixel_values": images(2, args.image_size, args)}, dynamic_shapes=shapes).module()
    results = {"export_s": time.perf_counter() - start, "latency": {}}
    for size in args.resolutions[:2]:
        pixel_values = images(1, size, args)
        tasks = {"eager": inference_task(model, pixel_values, {}),
                 "exported": inference_task(exported, pixel_values, {})}
        times = interleaved_summaries(tasks, 1, args.latency_repeats, args.device)
        results["latency"][size] = {**times, "ratio": times["exported"]["median_s"] / times["eager"]["median_s"]}
    return results


def profile(model: nn.Module, name: str, args: BenchmarkArguments, iterations: int = 3, limit: int = 25) -> dict:
    """Self time per op and inclusive time per module class (a `record_function` range around every module's
    forward) of batch-1 forwards at --image_size, per forward: self CPU time on CPU, self CUDA time on CUDA."""
    task = inference_task(model, images(1, args.image_size, args), forward_kwargs(name))
    ranges = []

    def enter(module, _):
        ranges.append(torch.profiler.record_function(f"module::{type(module).__name__}").__enter__())

    handles = [module.register_forward_pre_hook(enter) for module in model.modules()]
    handles += [module.register_forward_hook(lambda *_: ranges.pop().__exit__(None, None, None))
                for module in model.modules()]
    activities = [torch.profiler.ProfilerActivity.CPU]
    activities += [torch.profiler.ProfilerActivity.CUDA] if args.device == "cuda" else []
    task(), task()
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(iterations):
            task()
    for handle in handles:
        handle.remove()
    events = profiler.key_averages()
    on = "device" if args.device == "cuda" else "cpu"
    self_ms = lambda event: getattr(event, f"self_{on}_time_total") / 1e3  # noqa: E731
    total_ms = lambda event: getattr(event, f"{on}_time_total") / 1e3  # noqa: E731
    ops = [event for event in events if not event.key.startswith("module::")]
    modules = [event for event in events if event.key.startswith("module::")]
    whole = sum(self_ms(event) for event in ops)
    return {
        "iterations": iterations,
        "total_self_ms": whole / iterations,
        "ops": [{"op": event.key, "self_ms": self_ms(event) / iterations, "percent": 100 * self_ms(event) / whole,
                 "calls": event.count // iterations} for event in sorted(ops, key=self_ms, reverse=True)[:limit]],
        "modules": [{"module": event.key.removeprefix("module::"), "ms": total_ms(event) / iterations,
                     "calls": event.count // iterations} for event in sorted(modules, key=total_ms, reverse=True)],
    }


# ---- Report ----------------------------------------------------------------


def machine(device: str) -> str:
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        precision = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
        return (f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}; "
                f"float32 precision of matmuls {precision[0]}, of cuDNN convolutions {precision[1]}")
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    names = sorted({line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")})
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    isa = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    threads = torch.get_num_threads()
    return f"{', '.join(names)} ({' '.join(isa)}), {os.cpu_count()} logical CPUs, {threads} torch threads"


def git_revision() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:                                    # no git on the machine
        return "unknown"
    return result.stdout.strip() or "unknown"


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)] + [
        "| " + " | ".join(str(cell) for cell in row) + " |" for row in rows
    ]


def markdown_report(results: dict) -> str:
    context, models, throughput = results["context"], results["models"], results["throughput"]
    matmul = throughput["matmul"]
    names, sizes = list(models), [str(size) for size in context["resolutions"]]
    reference = REFERENCE if REFERENCE in names else None
    times = lambda entry: f"{entry['median_s'] * 1e3:.1f} ({entry['min_s'] * 1e3:.1f}-{entry['max_s'] * 1e3:.1f})"
    vs = lambda value, base: f"{value / base:.2f}x" if base else "-"
    rate = lambda gmacs, seconds: f"{100 * gmacs * 2 / seconds / matmul['float32']['gflops']:.0f}%"
    lines = [
        f"# Benchmark results ({context['device']})", "",
        f"Generated by `{context['command']}` on {context['date']}; the whole file is written by "
        "`scripts/benchmark.py` (`docs/benchmarks.md` reads it).", "",
        f"- machine: {context['machine']}; load average (1 min) {context['load_before']:.2f} before, "
        f"{context['load_after']:.2f} after",
        f"- python {context['python']}, torch {context['torch']}, transformers {context['transformers']}, "
        f"repo {context['git']}",
        f"- every model and input channels-last: {context['channels_last']}; float32 unless stated; "
        f"{context['warmup']} warm-up rounds, then {context['repeats']} rounds (training {context['train_repeats']}, "
        f"latency {context['latency_repeats']}), models interleaved round by round; median (min-max)",
        f"- {context['matmul_size']}² matmul in the throughput rounds: {matmul['float32']['gflops']:.1f} GFLOP/s "
        f"float32, {matmul['bfloat16']['gflops']:.1f} GFLOP/s bfloat16",
        f"- peak memory: {context['memory_method']}", "",
        f"## Throughput at {context['image_size']}², training step (batch {context['train_batch_size']}, "
        f"{context['train_dtype']})", "",
    ]
    base = lambda entries, key: entries[reference][key] if reference else None
    rows = []
    for name in names:
        fp32, bf16 = (throughput[dtype][name]["images_per_s"] for dtype in ("float32", "bfloat16"))
        train = results["train_step"][name]["median_s"]
        rows.append([name, models[name]["attention"], f"{models[name]['params'] / 1e6:.1f}",
                     f"{models[name]['gmacs']:.2f}", throughput["batch_size"][name],
                     f"{fp32:.1f}", vs(fp32, base(throughput["float32"], "images_per_s")),
                     f"{bf16:.1f}", vs(bf16, base(throughput["bfloat16"], "images_per_s")), f"{bf16 / fp32:.2f}x",
                     rate(models[name]["gmacs"] * fp32, 1),
                     f"{train * 1e3:.0f}", vs(train, base(results["train_step"], "median_s"))])
    lines += table(["model", "attention", "params (M)", "GMACs", "batch", "fp32 img/s", "× Swin-T", "bf16 img/s",
                    "× Swin-T", "bf16/fp32", "fwd % of matmul rate", "train step ms", "× Swin-T"], rows)
    lines += ["", "Timings, ms per batch:", ""] + table(["model", "fp32 forward", "bf16 forward", "train step"], [
        [name, *(times(entries[name]) for entries in (throughput["float32"], throughput["bfloat16"],
                                                       results["train_step"]))] for name in names])
    latency = lambda size, name: results["latency"][size][name]["median_s"] * 1e3
    memory = lambda size, name: results["memory"][size][name]
    for title, value in (("Batch-1 latency, ms", latency), ("Batch-1 peak forward memory, MiB", memory)):
        lines += ["", f"## {title} (× Swin-T)", ""] + table(["model"] + sizes, [
            [name] + [f"{value(size, name):.1f}" + (f" ({vs(value(size, name), value(size, reference))})"
                                                   if reference and name != reference else "") for size in sizes]
            for name in names])
    lines += ["", "Batch-1 latency, min-max over rounds, ms:", ""] + table(["model"] + sizes, [
        [name] + [times(results["latency"][size][name]).split(" ", 1)[1] for size in sizes] for name in names])
    lines += ["", "Fraction of the float32 matmul rate reached by each batch-1 forward (FLOPs / latency / rate):", ""]
    lines += table(["model"] + sizes, [[name] + [rate(results["latency"][size][name]["gmacs"],
                                                      results["latency"][size][name]["median_s"]) for size in sizes]
                                       for name in names])
    lines += ["", f"## SDPA kernels (aten op × calls in one batch-1 forward at {context['image_size']}²)", ""]
    lines += table(["model", "float32", "bfloat16 autocast"], [
        [name] + [", ".join(f"`{op}` ×{count}" for op, count in kernels[dtype].items()) or "no SDPA call"
                  for dtype in ("float32", "bfloat16")] for name, kernels in results["sdpa_kernels"].items()])
    if "compile" in results:
        compiled = results["compile"]
        lines += ["", "## torch.compile (VBB-T, each compile on an empty inductor cache)", "",
                  f"`torch._dynamo.explain`, eval forward: {compiled['graphs']} graph(s), {compiled['graph_breaks']} "
                  f"graph break(s) {'; '.join(compiled['break_reasons'])}", "",
                  "`torch.compile(model)`, first call of each new input size (batch 1):", ""]
        lines += table(["input", "compile + run, s", "graphs compiled so far", "max abs logit diff vs eager"], [
            [f"{call['size']}²", f"{call['first_call_s']:.1f}", call["graphs"], f"{call['max_abs_logit_diff']:.1e}"]
            for call in compiled["calls"]])
        lines += ["", f"Static-shape compile at {context['image_size']}², batch {context['batch_size']}:", ""]
        lines += table(["mode", "compile s", "eager ms", "compiled ms", "speedup"], [
            [variant, f"{entry['compile_s']:.0f}", times(entry["eager"]), times(entry["compiled"]),
             f"{entry['speedup']:.2f}x"] for variant, entry in compiled["variants"].items()])
    if "export" in results:
        lines += ["", f"## torch.export with dynamic batch, height and width (VBB-T, batch 1; export "
                  f"{results['export']['export_s']:.0f} s)", ""]
        lines += table(["input", "eager ms", "exported ms", "exported / eager"], [
            [f"{size}²", times(entry["eager"]), times(entry["exported"]), f"{entry['ratio']:.2f}x"]
            for size, entry in results["export"]["latency"].items()])
    for name, entry in results.get("profile", {}).items():
        lines += ["", f"## Profile: {name}, batch 1, {context['image_size']}², per forward ({entry['iterations']} "
                  f"forwards; {entry['total_self_ms']:.1f} ms of self time)", ""]
        lines += table(["op", "self ms", "%", "calls"], [
            [f"`{op['op']}`", f"{op['self_ms']:.2f}", f"{op['percent']:.1f}", op["calls"]] for op in entry["ops"]])
        lines += [""] + table(["module class", "inclusive ms", "calls"], [
            [module["module"], f"{module['ms']:.2f}", module["calls"]] for module in entry["modules"]])
    return "\n".join(lines) + "\n"


def compact_json(value, depth: int = 0) -> str:
    """JSON with one line per leaf entry: dicts are indented down to the third level, deeper values stay inline."""
    if not isinstance(value, dict) or depth >= 3:
        return json.dumps(value, default=str)
    indent = " " * (depth + 1)
    items = [f"{indent}{json.dumps(str(key))}: {compact_json(item, depth + 1)}" for key, item in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"


# ---- Run -------------------------------------------------------------------


def run(args: BenchmarkArguments) -> tuple[dict, dict]:
    context = {
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "device": args.device, "machine": machine(args.device), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__, "git": git_revision(),
        "load_before": os.getloadavg()[0], "channels_last": args.channels_last, "image_size": args.image_size,
        "batch_size": args.batch_size, "train_batch_size": args.train_batch_size,
        "train_dtype": "bfloat16 autocast" if args.device == "cuda" else "float32", "resolutions": args.resolutions,
        "warmup": args.warmup, "repeats": args.repeats, "train_repeats": args.train_repeats,
        "latency_repeats": args.latency_repeats, "matmul_size": MATMUL_SIZE[args.device],
        "memory_method": "torch.cuda.max_memory_allocated() minus memory_allocated() before one forward"
        if args.device == "cuda" else "VmHWM - VmRSS of one forward, fresh process per model and size, after a "
        "224² warm-up forward and malloc_trim (weights excluded)",
    }
    log(f"context: {json.dumps(context)}")
    raw = {"context": context}
    models = {name: build(name, args.device, args.channels_last) for name in args.models}
    results = {"context": context, "models": {}}
    for name, model in models.items():
        flops = count_forward_flops(model, images(1, args.image_size, args), **forward_kwargs(name))
        results["models"][name] = {"class": type(model).__name__, "attention": attention_of(model),
                                   "params": model.num_parameters(), "gmacs": flops / 2e9}
        raw.setdefault("configs", {})[name] = model.config.to_dict()
        log(f"{name}: {model.num_parameters() / 1e6:.2f}M params, {flops / 2e9:.2f} GMACs")
    results["sdpa_kernels"] = sdpa_kernels(models, args)
    results["throughput"] = measure_throughput(models, args, raw)
    results["train_step"] = measure_training(models, args, raw)
    gc.collect()
    results["latency"], results["memory"] = {}, {}
    for resolution in args.resolutions:
        latency, memory = measure_resolution(models, resolution, args, raw)
        results["latency"][str(resolution)], results["memory"][str(resolution)] = latency, memory
    if args.profile:
        results["profile"] = {name: profile(models[name], name, args) for name in ("VBB-T", REFERENCE)
                              if name in models}
    if args.compile and "VBB-T" in models:
        results["compile"] = measure_compile(models["VBB-T"], args)
    if args.export and "VBB-T" in models:
        results["export"] = measure_export(models["VBB-T"], args)
    context["load_after"] = os.getloadavg()[0]
    return results, raw


def main():
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(cpu_memory_probe(args.memory_probe, args.memory_probe_size, args))
        return
    results, raw = run(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "benchmark_results.json").write_text(compact_json({"arguments": asdict(args), **results}) + "\n")
    (output_dir / "benchmark_results.md").write_text(markdown_report(results))
    Path(args.raw_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.raw_json).write_text(json.dumps(raw, indent=1, default=str))
    log(f"wrote {output_dir / 'benchmark_results.json'}, {output_dir / 'benchmark_results.md'}, {args.raw_json}")


if __name__ == "__main__":
    main()
