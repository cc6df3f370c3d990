"""Speed and memory of Vision Big Bird tiny (arXiv 2311.05988) next to Swin-T, PVTv2-b2, ViT-S/16 and ConvNeXt-T on
the CPU or a CUDA GPU; `--compile`, `--export` and `--profile` add torch.compile, torch.export and profiles. Writes
`benchmark_results.json` and `.md` into `--output_dir`, every timing into `--raw_json`; docs/benchmarks.md says what
is measured and how.

    python scripts/benchmark.py --device cpu --threads 1 --compile --export --profile --output_dir docs
"""

import ctypes
import functools
import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from model_cost import SWIN_SIZES, count_forward_flops
from transformers import AutoConfig, AutoModelForImageClassification, HfArgumentParser

from vision_bigbird_hf.configuration_vision_bigbird import PRESETS  # the package registers its Auto classes

MODELS = {  # name -> (AutoConfig model type, configuration): Vision Big Bird tiny and peers of its size
    "VBB-T": ("vision_bigbird", PRESETS["tiny"]),
    "Swin-T": ("swin", SWIN_SIZES["tiny"]),
    # heads 1-2-5-8, spatial reductions 8-4-2-1 and MLP ratios 8-8-4-4 are PvtV2Config's defaults (b0 to b2)
    "PVTv2-b2": ("pvt_v2", {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3]}),
    # DeiT-small geometry; 12 layers, patch 16 and image size 224 are ViTConfig's defaults
    "ViT-S/16": ("vit", {"hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536}),
    "ConvNeXt-T": ("convnext", {"hidden_sizes": [96, 192, 384, 768], "depths": [3, 3, 9, 3]}),
}
DROP_PATH_RATE = 0.1  # where a model has stochastic depth, so the training step does the same work everywhere
REFERENCE = "Swin-T"
DTYPES = ("float32", "bfloat16")
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
MEMORY_METHOD = {
    "cpu": "VmHWM - VmRSS of one forward, fresh process per model and size, after a 224² warm-up forward and "
    "malloc_trim (weights excluded)",
    "cuda": "torch.cuda.max_memory_allocated() minus memory_allocated() before one forward",
}


@dataclass
class BenchmarkArguments:
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    models: list[str] = field(default_factory=lambda: list(MODELS), metadata={"help": f"Of {list(MODELS)}."})
    quick: bool = field(default=False, metadata={"help": "Two resolutions, two rounds, batch <= 32: a smoke run."})
    compile: bool = field(default=False, metadata={"help": "Also measure torch.compile on Vision Big Bird."})
    export: bool = field(default=False, metadata={"help": "Also measure a dynamic-shape torch.export program."})
    profile: bool = field(default=False, metadata={"help": "Profile batch-1 forwards of VBB-T and Swin-T."})
    batch_size: int | None = field(default=None, metadata={"help": "Throughput batch: 8 on CPU, 256 on CUDA."})
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

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device {self.device!r}: choose cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: torch.cuda.is_available() is False on this machine")
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown:
            raise ValueError(f"--models {unknown}: choose from {list(MODELS)}")
        self.batch_size = self.batch_size or (256 if self.device == "cuda" else 8)
        self.train_batch_size = self.train_batch_size or (64 if self.device == "cuda" else 8)
        if self.quick:
            self.resolutions = sorted({self.resolutions[0], self.resolutions[-1]})
            self.compile_sizes, self.batch_size = self.compile_sizes[:2], min(self.batch_size, 32)
            self.warmup, self.repeats, self.train_repeats, self.latency_repeats = 1, 2, 1, 2


def build(name: str, device: str, channels_last: bool) -> torch.nn.Module:
    """`name` with 1000 labels in eval mode on `device`, with sdpa attention where the model supports it."""
    torch.manual_seed(0)
    model_type, kwargs = MODELS[name]
    extra = {"drop_path_rate": DROP_PATH_RATE} if model_type != "vit" else {}  # transformers' ViT has none
    config = AutoConfig.for_model(model_type, **{**kwargs, **extra}, num_labels=1000)  # the preset's drop path too
    model = AutoModelForImageClassification.from_config(config)
    if model._supports_sdpa:
        model.set_attn_implementation("sdpa")
    if model_type == "vit":  # interpolate the learned position embedding for inputs other than 224 (no-op at 224)
        model.forward = functools.partial(model.forward, interpolate_pos_encoding=True)
    return model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format).eval()


def images(batch_size: int, size: int, args: BenchmarkArguments) -> torch.Tensor:
    pixel_values = torch.randn(batch_size, 3, size, size, device=args.device)
    return pixel_values.contiguous(memory_format=torch.channels_last) if args.channels_last else pixel_values


def inference_task(model: torch.nn.Module, pixel_values: torch.Tensor, bf16: bool = False):
    def task():
        with torch.inference_mode(), torch.autocast(pixel_values.device.type, torch.bfloat16, enabled=bf16):
            return model(pixel_values=pixel_values)

    return task


def training_task(model: torch.nn.Module, pixel_values: torch.Tensor, bf16: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.randint(0, 1000, (pixel_values.shape[0],), device=pixel_values.device)

    def task():
        with torch.autocast(pixel_values.device.type, torch.bfloat16, enabled=bf16):
            loss = model(pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return task


def timed(task, device: str) -> float:
    """Seconds of one call: perf_counter on CPU; on CUDA, events around the call after a synchronisation."""
    if device == "cpu":
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


def interleaved(tasks: dict, warmup: int, repeats: int, device: str, raw: dict | None = None) -> dict[str, dict]:
    """Median and min-max seconds per call of each task, called round by round (A B C A B C ...) after warm-ups."""
    for task in list(tasks.values()) * warmup:
        task()
    times = {key: [] for key in tasks}
    for _ in range(repeats):
        for key, task in tasks.items():
            times[key].append(timed(task, device))
    if raw is not None:
        raw.update(times)
    return {key: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)} for key, ts in times.items()}


def profiled(task, device: str, iterations: int = 1):
    """torch.profiler's per-op averages over `iterations` calls of `task` (CPU activity, and CUDA's on CUDA)."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA][: 1 + (device == "cuda")]
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(iterations):
            task()
    return profiler.key_averages()


def peak_memory_mib(name: str, resolution: int, args: BenchmarkArguments, model=None) -> float:
    """MiB one batch-1 forward adds (MEMORY_METHOD). CUDA: the allocator's peak over what was allocated before. CPU:
    this function without `model`, in a spawned process: a 224x224 forward initialises the libraries, `malloc_trim`
    returns the freed heap, the peak-RSS counter (VmHWM) is reset, one forward runs."""
    if args.device == "cuda":
        task = inference_task(model, images(1, resolution, args))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        task()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if model is not None:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh_process:
            return fresh_process.submit(peak_memory_mib, name, resolution, args).result()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model = build(name, "cpu", args.channels_last)
    inference_task(model, images(1, 224, args))()
    task = inference_task(model, images(1, resolution, args))
    status_kib = lambda key: int(Path("/proc/self/status").read_text().split(key)[1].split()[0])
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before_kib = status_kib("VmRSS:")
    task()
    return (status_kib("VmHWM:") - before_kib) / 1024


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure_throughput(models: dict, args: BenchmarkArguments, raw: dict) -> dict:
    """Seconds per forward in float32 and in bfloat16 autocast, and per square matmul of each, in the same rounds."""
    log(f"throughput fp32 + bf16 autocast, batch {args.batch_size}: {args.warmup} warm-up + {args.repeats} rounds")
    tasks, pixel_values, size = {}, images(args.batch_size, args.image_size, args), MATMUL_SIZE[args.device]
    for name, model in models.items():
        tasks |= {f"{dtype}/{name}": inference_task(model, pixel_values, dtype == "bfloat16") for dtype in DTYPES}
    for dtype in DTYPES:
        matrices = torch.randn(2, size, size, generator=torch.Generator().manual_seed(0))
        tasks[f"matmul/{dtype}"] = functools.partial(torch.matmul, *matrices.to(args.device, getattr(torch, dtype)))
    times = interleaved(tasks, args.warmup, args.repeats, args.device, raw["throughput"])
    results = {"batch_size": dict.fromkeys(models, args.batch_size), "matmul": {}, "float32": {}, "bfloat16": {}}
    for key, entry in times.items():
        group, item = key.split("/", 1)  # "float32/ViT-S/16" -> "float32", "ViT-S/16"; "matmul/float32"
        work, unit = (2 * size**3 / 1e9, "gflops") if group == "matmul" else (args.batch_size, "images_per_s")
        results[group][item] = {**entry, unit: work / entry["median_s"]}
        log(f"  {key}: {work / entry['median_s']:.1f} {unit}")
    return results


def measure_compile(model: torch.nn.Module, args: BenchmarkArguments) -> dict:
    """Graphs and graph breaks of the eval forward; under `torch.compile(model)` the first call of each new input
    size; static-shape compiles (default, inductor freezing) against eager. Each on an empty inductor cache."""
    from torch._dynamo.utils import counters
    from torch._inductor.utils import fresh_inductor_cache

    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(images(2, args.image_size, args))
    results = {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count, "calls": []}
    results |= {"break_reasons": [str(reason.reason) for reason in explained.break_reasons], "variants": {}}
    with fresh_inductor_cache():  # torch.compile(model) as its user sees it at each new input size
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model)
        for size in args.compile_sizes:
            pixel_values = images(1, size, args)
            seconds = timed(inference_task(compiled, pixel_values), args.device)
            compiled_logits, logits = (inference_task(m, pixel_values)().logits for m in (compiled, model))
            difference, graphs = (compiled_logits - logits).abs().max().item(), counters["stats"]["unique_graphs"]
            call = {"size": size, "first_call_s": seconds, "max_abs_logit_diff": difference, "graphs": graphs}
            results["calls"].append(call)
            log(f"  compile, new size {size}: {seconds:.1f} s, {graphs} graphs")
    batch = images(args.batch_size, args.image_size, args)
    for variant, options in (("default", {}), ("freezing", {"freezing": True})):  # static shapes
        with fresh_inductor_cache():
            torch._dynamo.reset()
            compiled = torch.compile(model, dynamic=False, options=options)
            compile_seconds = timed(inference_task(compiled, batch), args.device)
            tasks = {"eager": inference_task(model, batch), "compiled": inference_task(compiled, batch)}
            times = interleaved(tasks, args.warmup, args.repeats, args.device)
        speedup = times["eager"]["median_s"] / times["compiled"]["median_s"]
        results["variants"][variant] = {"compile_s": compile_seconds, **times, "speedup": speedup}
        log(f"  compile {variant}: {compile_seconds:.0f} s, {speedup:.2f}x")
    torch._dynamo.reset()
    return results


def measure_export(model: torch.nn.Module, args: BenchmarkArguments) -> dict:
    """Batch-1 latency of a `torch.export` program with dynamic batch, height and width against eager."""
    Dim = torch.export.Dim
    dims = {0: Dim("batch", min=1, max=64), 2: Dim("height", min=33, max=1024), 3: Dim("width", min=33, max=1024)}
    start, example = time.perf_counter(), {"pixel_values": images(2, args.image_size, args)}
    exported = torch.export.export(model, (), example, dynamic_shapes={"pixel_values": dims}).module()
    results = {"export_s": time.perf_counter() - start, "latency": {}}
    for size in args.resolutions[:2]:
        pixel_values = images(1, size, args)
        tasks = {"eager": inference_task(model, pixel_values), "exported": inference_task(exported, pixel_values)}
        times = results["latency"][size] = interleaved(tasks, 1, args.latency_repeats, args.device)
        times["ratio"] = times["exported"]["median_s"] / times["eager"]["median_s"]
    return results


def profile(model: torch.nn.Module, args: BenchmarkArguments, iterations: int = 3, limit: int = 25) -> dict:
    """Per batch-1 forward at --image_size: self time per op (CPU time on CPU, CUDA time on CUDA) and inclusive time
    per module class (a `record_function` range around every module's call, from global module hooks)."""
    ranges, hooks, task = [], torch.nn.modules.module, inference_task(model, images(1, args.image_size, args))
    record = lambda module: torch.profiler.record_function(f"module::{type(module).__name__}")
    enter = lambda module, _: ranges.append(record(module).__enter__())  # None: the input stays
    task(), task()
    handles = [hooks.register_module_forward_pre_hook(enter)]  # on every module's call until removed
    handles.append(hooks.register_module_forward_hook(lambda *_: ranges.pop().__exit__(None, None, None)))
    events = profiled(task, args.device, iterations)
    for handle in handles:
        handle.remove()
    on = "device" if args.device == "cuda" else "cpu"
    self_ms = lambda event: getattr(event, f"self_{on}_time_total") / 1e3 / iterations
    total_ms = lambda event: getattr(event, f"{on}_time_total") / 1e3 / iterations
    ops = sorted((event for event in events if not event.key.startswith("module::")), key=self_ms, reverse=True)
    modules = sorted((event for event in events if event.key.startswith("module::")), key=total_ms, reverse=True)
    whole, calls = sum(map(self_ms, ops)), lambda event: event.count // iterations
    return {
        "iterations": iterations,
        "total_self_ms": whole,
        "ops": [
            {"op": op.key, "self_ms": self_ms(op), "percent": 100 * self_ms(op) / whole, "calls": calls(op)}
            for op in ops[:limit]
        ],
        "modules": [
            {"module": module.key.removeprefix("module::"), "ms": total_ms(module), "calls": calls(module)}
            for module in modules
        ],
    }


def machine(device: str) -> str:
    if device == "cuda":
        gpu, precision = torch.cuda.get_device_properties(0), torch.backends.cuda.matmul.fp32_precision
        return (
            f"{gpu.name} ({gpu.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}; float32 precision of "
            f"matmuls {precision}, of cuDNN convolutions {torch.backends.cudnn.conv.fp32_precision}"
        )
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = dict(map(str.strip, line.split(":", 1)) for line in lines if ":" in line)  # the last CPU's entries
    flags, threads = cpu.get("flags", "").split(), torch.get_num_threads()
    isa = " ".join(flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags)
    return f"{cpu.get('model name', '?')} ({isa}), {os.cpu_count()} logical CPUs, {threads} torch threads"


def run(args: BenchmarkArguments) -> tuple[dict, dict]:
    """Every measurement: the results and every single timing."""
    cuda = args.device == "cuda"
    context = {
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(args.device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git": subprocess.getoutput("git rev-parse --short HEAD 2>/dev/null") or "unknown",
        "load_before": os.getloadavg()[0],
        "train_dtype": "bfloat16 autocast" if cuda else "float32",
        "memory_method": MEMORY_METHOD[args.device],
    }
    log(f"context: {json.dumps(context)}")
    models = {name: build(name, args.device, args.channels_last) for name in args.models}
    raw = {"context": context, "configs": {name: model.config.to_dict() for name, model in models.items()}}
    raw["throughput"], raw["train_step"], raw["latency"] = {}, {}, {}
    results = {"arguments": asdict(args), "context": context, "models": {}, "sdpa_kernels": {}}
    for name, model in models.items():
        attention = model.config._attn_implementation if model._supports_sdpa else "none"
        gmacs = count_forward_flops(model, images(1, args.image_size, args)) / 2e9
        results["models"][name] = {
            "class": type(model).__name__,
            "params": model.num_parameters(),
            "gmacs": gmacs,
            "attention": "own (eager)" if name.startswith("PVT") else attention,
        }
        log(f"{name}: {model.num_parameters() / 1e6:.2f}M params, {gmacs:.2f} GMACs")
        kernels = results["sdpa_kernels"][name] = {}  # the SDPA kernels (aten ops) of a batch-1 forward, and calls
        for dtype in DTYPES:
            events = profiled(inference_task(model, images(1, args.image_size, args), dtype == "bfloat16"), "cpu")
            kernels[dtype] = {e.key: e.count for e in events if e.key.startswith("aten::_scaled_dot_product")}
    results["throughput"] = measure_throughput(models, args, raw)

    log(f"train step ({context['train_dtype']}), batch {args.train_batch_size}: {args.train_repeats} rounds")
    pixel_values = images(args.train_batch_size, args.image_size, args)
    tasks = {name: training_task(model.train(), pixel_values, cuda) for name, model in models.items()}
    results["train_step"] = interleaved(tasks, args.warmup, args.train_repeats, args.device, raw["train_step"])
    for model in models.values():
        model.eval().zero_grad(set_to_none=True)
    gc.collect()

    results["latency"], results["memory"] = {}, {}
    for size in args.resolutions:  # batch-1 latency, with the forward's GMACs, and peak memory
        log(f"latency and memory {size}: 1 warm-up + {args.latency_repeats} rounds")
        pixel_values = images(1, size, args)
        tasks = {name: inference_task(model, pixel_values) for name, model in models.items()}
        latency = interleaved(tasks, 1, args.latency_repeats, args.device, raw["latency"].setdefault(size, {}))
        results["latency"][str(size)], memory = latency, results["memory"].setdefault(str(size), {})
        for name, model in models.items():
            latency[name]["gmacs"] = count_forward_flops(model, pixel_values) / 2e9
            memory[name] = peak_memory_mib(name, size, args, model)
            log(f"  {name}: {latency[name]['median_s'] * 1e3:.1f} ms, {memory[name]:.0f} MiB")
    if args.profile:
        results["profile"] = {name: profile(models[name], args) for name in ("VBB-T", REFERENCE) if name in models}
    if args.compile and "VBB-T" in models:
        results["compile"] = measure_compile(models["VBB-T"], args)
    if args.export and "VBB-T" in models:
        results["export"] = measure_export(models["VBB-T"], args)
    context["load_after"] = os.getloadavg()[0]
    return results, raw


def ms(entry: dict) -> str:
    return f"{entry['median_s'] * 1e3:.1f} ({entry['min_s'] * 1e3:.1f}-{entry['max_s'] * 1e3:.1f})"


def table(rows: list[dict]) -> list[str]:
    """A blank line and a markdown table of `rows` (column -> value); a timing is shown as median (min-max) in ms."""

    def cell(value) -> str:
        if isinstance(value, dict):
            return ms(value) if "median_s" in value else ", ".join(f"`{op}` ×{n}" for op, n in value.items()) or "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["", "| " + " | ".join(rows[0]) + " |", "|---|" + "---:|" * (len(rows[0]) - 1)]
    return lines + ["| " + " | ".join(map(cell, row.values())) + " |" for row in rows]


def markdown_report(results: dict) -> str:
    args, context, models, throughput = (results[key] for key in ("arguments", "context", "models", "throughput"))
    names, latency, memory, train = list(models), results["latency"], results["memory"], results["train_step"]
    fp32, bf16 = ({name: throughput[dtype][name]["images_per_s"] for name in names} for dtype in DTYPES)
    train_s = {name: entry["median_s"] for name, entry in train.items()}
    vs_ref = lambda values, name: f"{values[name] / values[REFERENCE]:.2f}x" if REFERENCE in names else "-"
    rate = lambda gmacs, seconds: f"{200 * gmacs / seconds / throughput['matmul']['float32']['gflops']:.0f}%"
    lines = [f"# Benchmark results ({args['device']})", ""]
    lines += [
        (
            f"Written by `scripts/benchmark.py` (`docs/benchmarks.md` reads it). Models and inputs "
            f"channels-last: {args['channels_last']}; float32 unless stated; models interleaved round by round "
            "after warm-up rounds; timings in ms, median (min-max) over the rounds."
        ),
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in context.items()]
    lines += [
        f"- {MATMUL_SIZE[args['device']]}² matmul in the throughput rounds, GFLOP/s: "
        + ", ".join(f"{dtype} {entry['gflops']:.1f}" for dtype, entry in throughput["matmul"].items())
    ]
    lines += ["", f"## Throughput at {args['image_size']}², training step (batch {args['train_batch_size']})"]
    lines += table(
        [
            {
                "model": name,
                "attention": model["attention"],
                "params (M)": f"{model['params'] / 1e6:.1f}",
                "GMACs": f"{model['gmacs']:.2f}",
                "batch": throughput["batch_size"][name],
                "fp32 img/s": f"{fp32[name]:.1f}",
                "fp32 × Swin-T": vs_ref(fp32, name),
                "bf16 img/s": f"{bf16[name]:.1f}",
                "bf16 × Swin-T": vs_ref(bf16, name),
                "bf16/fp32": f"{bf16[name] / fp32[name]:.2f}x",
                "fwd % of matmul rate": rate(model["gmacs"] * fp32[name], 1),
                "train step": train[name],
                "train × Swin-T": vs_ref(train_s, name),
            }
            for name, model in models.items()
        ]
    )
    lines += ["", "Forward timings per batch:"]
    lines += table([{"model": name, **{dtype: throughput[dtype][name] for dtype in DTYPES}} for name in names])
    by_size = lambda cell: table([{"model": name, **{size: cell(size, name) for size in latency}} for name in names])
    with_ref = lambda values, name: f" ({vs_ref(values, name)})" if name != REFERENCE else ""
    medians = {size: {name: entry["median_s"] for name, entry in latency[size].items()} for size in latency}
    lines += ["", "## Batch-1 latency, ms (× Swin-T)"]
    lines += by_size(lambda size, name: ms(latency[size][name]) + with_ref(medians[size], name))
    lines += ["", "## Batch-1 peak forward memory, MiB (× Swin-T)"]
    lines += by_size(lambda size, name: f"{memory[size][name]:.1f}" + with_ref(memory[size], name))
    lines += ["", "Fraction of the float32 matmul rate reached by each batch-1 forward (FLOPs / latency / rate):"]
    lines += by_size(lambda size, name: rate(latency[size][name]["gmacs"], latency[size][name]["median_s"]))
    lines += ["", f"## SDPA kernels (aten op × calls in one batch-1 forward at {args['image_size']}²)"]
    lines += table([{"model": name, **calls} for name, calls in results["sdpa_kernels"].items()])
    if "compile" in results:
        compiled, breaks = results["compile"], "; ".join(results["compile"]["break_reasons"])
        lines += ["", "## torch.compile (VBB-T, each compile on an empty inductor cache)", ""]
        lines += [
            (
                f"`torch._dynamo.explain`, eval forward: {compiled['graphs']} graph(s), "
                f"{compiled['graph_breaks']} graph break(s) {breaks}"
            ),
            "",
        ]
        lines += ["`torch.compile(model)`, first call of each new input size (batch 1):"] + table(compiled["calls"])
        lines += ["", f"Static-shape compile at {args['image_size']}², batch {args['batch_size']}:"]
        lines += table([{"mode": mode, **entry} for mode, entry in compiled["variants"].items()])
    if "export" in results:
        export_s = results["export"]["export_s"]
        lines += ["", f"## torch.export, dynamic batch, height and width (VBB-T, batch 1; export {export_s:.0f} s)"]
        lines += table([{"input": size, **entry} for size, entry in results["export"]["latency"].items()])
    for name, entry in results.get("profile", {}).items():
        lines += [
            "",
            (
                f"## Profile: {name}, batch 1, {args['image_size']}², per forward ({entry['iterations']} "
                f"forwards; {entry['total_self_ms']:.1f} ms of self time)"
            ),
        ]
        lines += table(entry["ops"]) + table(entry["modules"])
    return "\n".join(lines) + "\n"


def compact_json(value, depth: int = 0) -> str:
    """JSON with one line per leaf entry: dicts are indented down to the third level, deeper values stay inline."""
    if not isinstance(value, dict) or depth >= 3:
        return json.dumps(value, default=str)
    items = [f"{json.dumps(str(key))}: {compact_json(item, depth + 1)}" for key, item in value.items()]
    return "{\n" + ",\n".join(" " * (depth + 1) + item for item in items) + "\n" + " " * depth + "}"


def main():
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, raw = run(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "benchmark_results.json").write_text(compact_json(results) + "\n")
    (output_dir / "benchmark_results.md").write_text(markdown_report(results))
    Path(args.raw_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.raw_json).write_text(json.dumps(raw, indent=1, default=str))
    log(f"wrote {output_dir / 'benchmark_results.json'}, {output_dir / 'benchmark_results.md'}, {args.raw_json}")


if __name__ == "__main__":
    main()
