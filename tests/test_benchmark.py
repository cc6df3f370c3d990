"""Tests of scripts/benchmark.py: the interleaved timing helper, the argument checks, the JSON writer, the model
sizes, and a --quick run through the command line (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import benchmark  # scripts/ is on pytest's pythonpath
import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_interleaved_calls_tasks_round_by_round_and_summarises_the_raw_times():
    calls, raw = [], {}
    tasks = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    summaries = benchmark.interleaved(tasks, warmup=2, repeats=4, device="cpu", raw=raw)
    assert calls == ["a", "b", "c"] * 6
    assert {name: len(values) for name, values in raw.items()} == {"a": 4, "b": 4, "c": 4}
    for name, times in raw.items():  # the median of an even count is the mean of the middle two
        middle = sorted(times)[1:3]
        assert summaries[name] == {"median_s": sum(middle) / 2, "min_s": min(times), "max_s": max(times)}


def test_compact_json_round_trips_and_keeps_leaves_on_one_line():
    value = {"a": {"b": {"c": {"d": [1, 2], "e": 0.5}}, "f": "x"}, "g": [1, {"h": 2}]}
    text = benchmark.compact_json(value)
    assert json.loads(text) == value
    assert '"c": {"d": [1, 2], "e": 0.5}' in text  # depth 3 stays inline


@pytest.mark.parametrize(
    "kwargs, message",
    [({"device": "tpu"}, "--device 'tpu'"), ({"models": ["VBB-T", "Swin-X"]}, "Swin-X")],
)
def test_bad_arguments_name_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        benchmark.BenchmarkArguments(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="--device cuda"):
        benchmark.BenchmarkArguments(device="cuda")


def test_quick_keeps_the_smallest_and_largest_resolution():
    args = benchmark.BenchmarkArguments(quick=True, resolutions=[224, 384, 512])
    assert args.resolutions == [224, 512]
    assert (args.warmup, args.repeats, args.batch_size, args.train_batch_size) == (1, 2, 8, 8)


def test_peers_have_the_size_of_vision_bigbird_tiny():
    # VBB-T, Swin-T, PVTv2-b2, ViT-S/16 and ConvNeXt-T: 22-29M parameters (their papers' figures)
    for name in benchmark.MODELS:
        with torch.device("meta"):
            model = benchmark.build(name, "meta", channels_last=False)
        assert 21e6 < model.num_parameters() < 30e6, name


@pytest.mark.slow
def test_quick_run_through_the_command_line(tmp_path):
    command = [
        sys.executable,
        str(SCRIPTS / "benchmark.py"),
        "--device",
        "cpu",
        "--quick",
        "--threads",
        "1",
        "--models",
        "VBB-T",
        "Swin-T",
        "--resolutions",
        "224",
        "256",
        "--batch_size",
        "2",
        "--train_batch_size",
        "1",
        "--output_dir",
        str(tmp_path / "out"),
        "--raw_json",
        str(tmp_path / "raw.json"),
        "--export",
        "--profile",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, cwd=tmp_path, env=environment, capture_output=True, text=True)
    text = (tmp_path / "out" / "benchmark_results.json").read_text()
    results = json.loads(text)
    assert len(text.splitlines()) < 1000
    assert set(results["models"]) == {"VBB-T", "Swin-T"}
    for name in ("VBB-T", "Swin-T"):
        entry = results["throughput"]["float32"][name]
        assert entry["images_per_s"] == pytest.approx(2 / entry["median_s"])
        assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
        assert results["memory"]["256"][name] > 0
        # more pixels, more MACs: 256² has (256/224)² as many tokens, up to the padding of windows
        assert results["latency"]["256"][name]["gmacs"] > results["latency"]["224"][name]["gmacs"]
    assert any("scaled_dot_product" in op for op in results["sdpa_kernels"]["VBB-T"]["float32"])
    assert {row["module"] for row in results["profile"]["VBB-T"]["modules"]} >= {
        "VisionBigBirdRSWinHeads",
        "VisionBigBirdGlobalHeads",
        "VisionBigBirdConvHeads",
    }
    assert set(results["export"]["latency"]) == {"224", "256"}
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert len(raw["throughput"]["float32/VBB-T"]) == results["arguments"]["repeats"]
    markdown = (tmp_path / "out" / "benchmark_results.md").read_text()
    for heading in (
        "## Throughput",
        "## Batch-1 latency",
        "## Batch-1 peak forward memory",
        "## SDPA kernels",
        "## torch.export",
        "## Profile: VBB-T",
    ):
        assert heading in markdown
