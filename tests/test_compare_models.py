"""
Tests of `scripts/compare_models.py`, through its command line: the run list (`--print_commands`) holds the study's
settings and its models (built here from the printed flags) meet the parameter budget and run at 32x32; `--report`
rewrites the committed docs/results.md from docs/results.json alone and computes results.json from hand-made runs;
a tiny real study (slow) resumes.
"""

import json
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageClassification

from vision_bigbird_hf import VisionBigBirdConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "compare_models.py"
NAMES = [
    "vbb",
    "convnext",
    "swin",
    "pvtv2",
    "vbb-no-conv",
    "vbb-no-rswin",
    "vbb-no-global",
    "vbb-grid",
    "vbb-abs-pos",
    "vit",
]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def compare_models(*args: str, cwd: Path = REPO_ROOT) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def flags_of(command: str) -> dict[str, str]:
    """{'--flag': value} of one printed training command (`True` for a flag without a value)."""
    words = shlex.split(command)
    assert words[:2] == ["python", "scripts/train_image_classification.py"]
    flags, words = {}, words[2:]
    for index, word in enumerate(words):
        if word.startswith("--"):
            value = words[index + 1] if index + 1 < len(words) and not words[index + 1].startswith("--") else True
            assert word not in flags, f"{word} given twice"
            flags[word] = value
    return flags


@pytest.fixture(scope="module")
def commands() -> dict[tuple[str, int], dict[str, str]]:
    lines = compare_models("--print_commands", "--output_dir", "runs/study").splitlines()
    by_run = {}
    for line in lines:
        flags = flags_of(line)
        name, seed = Path(flags["--output_dir"]).parts[-2:]
        by_run[(name, int(seed.removeprefix("seed")))] = flags
    return by_run


def build(flags: dict[str, str]) -> torch.nn.Module:
    overrides = json.loads(flags.get("--config_overrides", "{}"))
    if flags["--model_type"] == "vision_bigbird":
        config = VisionBigBirdConfig.from_preset(flags["--model_preset"], num_labels=10, **overrides)
    else:
        config = AutoConfig.for_model(flags["--model_type"], image_size=32, num_labels=10, **overrides)
    return AutoModelForImageClassification.from_config(config)


def test_run_list_is_ten_configurations_times_three_seeds_at_the_study_scale(commands):
    assert sorted(commands) == sorted((name, seed) for name in NAMES for seed in (0, 1, 2))
    for (name, seed), flags in commands.items():
        assert flags["--seed"] == str(seed) and flags["--output_dir"] == f"runs/study/{name}/seed{seed}"
        assert flags["--image_size"] == "32" and flags["--min_crop_scale"] == "0.85"
        assert flags["--max_train_samples"] == "20000" and flags["--num_train_epochs"] == "4"
        assert flags["--per_device_train_batch_size"] == "128" and flags["--learning_rate"] == "0.002"
        assert "--max_predict_samples" not in flags  # the full 10,000-image test set
        assert all(flag in flags for flag in ("--do_train", "--do_eval", "--do_predict"))
    for (name, seed), flags in commands.items():  # Vision Big Bird: the study preset, ablations as overrides
        assert (flags.get("--model_preset") == "study") == (flags["--model_type"] == "vision_bigbird"), name
    assert "--config_overrides" not in commands[("vbb", 0)]
    assert {flags["--model_type"] for flags in commands.values()} == {
        "vision_bigbird",
        "swin",
        "convnext",
        "pvt_v2",
        "vit",
    }


def test_every_model_runs_at_32x32_and_peers_have_vision_bigbirds_parameter_count(commands):
    counts = {}
    for name in NAMES:
        model = build(commands[(name, 0)]).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 3, 32, 32)).logits.shape == (2, 10), name  # Swin: no small-map crash
        counts[name] = sum(parameter.numel() for parameter in model.parameters())
    for name in ("convnext", "swin", "pvtv2", "vit"):
        assert abs(counts[name] / counts["vbb"] - 1) <= 0.10, f"{name}: {counts[name]:,} vs {counts['vbb']:,}"


def test_a_four_stage_swin_with_window_4_fails_at_32x32(commands):
    """Guards the transformers behaviour that gives the run list's Swin two stages (docs/results.md, *Setup*)."""
    flags = dict(commands[("swin", 0)])
    overrides = {**json.loads(flags["--config_overrides"]), "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]}
    flags["--config_overrides"] = json.dumps(overrides)
    with pytest.raises(RuntimeError):
        build(flags).eval()(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("group", ["conv_heads", "rswin_heads", "global_heads"])
def test_each_ablation_removes_one_head_group_and_keeps_the_heads(commands, group):
    name = {"conv_heads": "vbb-no-conv", "rswin_heads": "vbb-no-rswin", "global_heads": "vbb-no-global"}[group]
    full, ablated = build(commands[("vbb", 0)]).config, build(commands[(name, 0)]).config
    assert ablated.hidden_sizes == full.hidden_sizes and ablated.num_heads == full.num_heads
    assert getattr(ablated, group) == [0, 0, 0, 0] and all(getattr(full, group))
    for stage, heads in enumerate(full.num_heads):
        assert sum(getattr(ablated, other)[stage] for other in ("conv_heads", "rswin_heads", "global_heads")) == heads


def test_other_ablations_change_one_field(commands):
    full = build(commands[("vbb", 0)]).config.to_dict()
    changes = (("vbb-grid", "rswin_sampling", "grid"), ("vbb-abs-pos", "use_absolute_embeddings", True))
    for name, field, value in changes:
        ablated = build(commands[(name, 0)]).config.to_dict()
        assert ablated[field] == value != full[field]
        assert {key for key in full if full[key] != ablated[key]} == {field}


def test_report_rewrites_the_committed_results_md_from_results_json_alone(tmp_path):
    shutil.copy(REPO_ROOT / "docs" / "results.json", tmp_path / "results.json")
    compare_models("--report", "--output_dir", str(tmp_path / "no-runs"), "--results_dir", str(tmp_path))
    with Image.open(tmp_path / "results.png") as figure:  # drawn beside it (pixels differ across matplotlib builds)
        assert figure.width > 300 and figure.height > 300
    assert (tmp_path / "results.md").read_text() == (REPO_ROOT / "docs" / "results.md").read_text(), (
        "docs/results.md is stale: run `python scripts/compare_models.py --report`"
    )
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(
        (REPO_ROOT / "docs" / "results.json").read_text()
    )


def test_report_computes_results_json_from_finished_runs(tmp_path):
    """Hand-made runs (all_results.json + config.json) of three configurations, with 3, 2 and 1 seeds."""
    made_up = {"vbb": {0: 0.90, 1: 0.904, 2: 0.897}, "pvtv2": {0: 0.91, 2: 0.915}, "vbb-no-conv": {1: 0.883}}
    config = VisionBigBirdConfig.from_preset("study", num_labels=10)
    for name, per_seed in made_up.items():
        for seed, accuracy in per_seed.items():
            run_dir = tmp_path / "runs" / name / f"seed{seed}"
            config.save_pretrained(run_dir)
            results = {"test_accuracy": accuracy, "eval_accuracy": accuracy - 0.01, "train_runtime": 60.0 * (seed + 1)}
            (run_dir / "all_results.json").write_text(json.dumps(results))
    compare_models("--report", "--output_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "docs"))
    study = json.loads((tmp_path / "docs" / "results.json").read_text())
    entries = {entry["name"]: entry for entry in study["configurations"]}

    assert list(entries) == NAMES and study["finished_runs"] == 6 and study["planned_runs"] == 30
    expected_params = sum(
        parameter.numel() for parameter in AutoModelForImageClassification.from_config(config).parameters()
    )
    for name, per_seed in made_up.items():
        tests = [100 * value for value in per_seed.values()]
        entry = entries[name]
        assert entry["n_seeds"] == len(tests) and entry["params"] == expected_params
        assert entry["test_accuracy_per_seed"] == {str(seed): pytest.approx(100 * v) for seed, v in per_seed.items()}
        assert entry["test_accuracy_mean"] == pytest.approx(statistics.mean(tests))
        assert entry["test_accuracy_sd"] == (pytest.approx(statistics.stdev(tests)) if len(tests) > 1 else None)
        assert entry["validation_accuracy_mean"] == pytest.approx(statistics.mean(tests) - 1)
        assert entry["train_minutes_mean"] == pytest.approx(statistics.mean(seed + 1 for seed in per_seed))
    assert entries["vit"]["n_seeds"] == 0 and entries["vit"]["test_accuracy_mean"] is None
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| `vit` | " in text and "| not run | — |" in text
    assert f"{entries['vbb']['test_accuracy_mean']:.2f} ± {entries['vbb']['test_accuracy_sd']:.2f} (n=3)" in text
    # vbb - pvtv2 per shared seed (0 and 2): -1.00 and -1.80, the same sign for both
    best_peer = next(line for line in text.splitlines() if "Against the best same-size peer" in line)
    assert "`pvtv2` 91.25%" in best_peer and "per seed -1.00, -1.80; the same sign" in best_peer
    assert "**does not hold**" in best_peer


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_file(), reason="Fashion-MNIST: sudo apt-get install dataset-fashion-mnist")
def test_tiny_study_runs_resumes_and_reports(tmp_path):
    """Two configurations for two steps each through the training script, then a second invocation skips both."""
    tiny = (
        "--extra_args=--max_steps 2 --max_train_samples 64 --max_eval_samples 32 --max_predict_samples 32 "
        "--per_device_train_batch_size 16 --eval_strategy no --save_strategy no"
    )
    common = ["--only", "vbb", "swin", "--seeds", "0", "--workers", "2", "--output_dir", str(tmp_path / "runs"), tiny]
    first = compare_models(*common)
    assert first.count("start") == 2 and "2 of 2 runs finished" in first
    for name in ("vbb", "swin"):
        results = json.loads((tmp_path / "runs" / name / "seed0" / "all_results.json").read_text())
        assert 0 <= results["test_accuracy"] <= 1
    second = compare_models(*common)
    assert second.count("skip") == 2 and "start" not in second
    compare_models(
        "--report", "--output_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "docs"), "--seeds", "0"
    )
    study = json.loads((tmp_path / "docs" / "results.json").read_text())
    assert study["finished_runs"] == 2
