"""
Tests of `scripts/compare_models.py`: the peers' parameter budget and the ablations' head splits (models built, not
trained), a `--smoke` study of a few configurations on the real Fashion-MNIST (per-run metrics, a second invocation
that skips finished runs and restarts an interrupted one, the report), the job order, and the report's reading of
the numbers and its results.json on hand-made runs.
"""

import json
import os
import statistics
import sys
from pathlib import Path

import pytest

from vision_bigbird_hf import VisionBigBirdConfig
from vision_bigbird_hf.fashion_mnist import DEFAULT_FASHION_MNIST_DIR


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import compare_models  # noqa: E402
import train_image_classification  # noqa: E402
from model_cost import count_parameters  # noqa: E402


CONFIGS = compare_models.CONFIGS
requires_fashion_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason=f"Fashion-MNIST not in {DEFAULT_FASHION_MNIST_DIR}: `sudo apt-get install dataset-fashion-mnist`",
)


def vbb_config(name: str) -> VisionBigBirdConfig:
    overrides = train_image_classification.parse_config_overrides(CONFIGS[name].vbb_overrides)
    return VisionBigBirdConfig.from_preset("tiny", **overrides)


def test_every_peer_has_the_parameter_count_of_vision_bigbird():
    counts = compare_models.check_parameter_budget()
    labels = compare_models.FASHION_MNIST_CLASSES
    vbb = count_parameters(CONFIGS["vbb"].build(labels)[0])
    peers = [name for name, config in CONFIGS.items() if config.kind == "peer"]
    assert sorted(peers) == ["convnext", "pvtv2", "swin", "vit"]
    for name in peers:
        count = count_parameters(CONFIGS[name].build(labels)[0])
        assert counts[name] == count
        assert abs(count / vbb - 1) <= 0.10, f"{name}: {count:,} parameters vs Vision Big Bird's {vbb:,}"


def test_parameter_budget_check_fails_loudly(monkeypatch):
    def oversized_swin(labels):
        return compare_models.SwinForImageClassification(
            compare_models.SwinConfig(image_size=32, embed_dim=48, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                                      window_size=4, num_labels=len(labels))
        )

    oversized = compare_models.dataclasses.replace(CONFIGS["swin"], build_peer=oversized_swin)
    monkeypatch.setitem(CONFIGS, "swin", oversized)
    with pytest.raises(ValueError, match=r"swin .*\(\+\d+\.\d%\)"):
        compare_models.check_parameter_budget(["swin"])


def test_swin_runs_on_maps_smaller_than_its_window():
    import torch

    model = CONFIGS["swin"].build(compare_models.FASHION_MNIST_CLASSES)[0].eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 32, 32), output_hidden_states=True)
    assert outputs.logits.shape == (2, 10)
    # stem then stages: 8x8, 4x4, 2x2, 1x1 tokens, the grid Vision Big Bird's stages have at 32x32
    assert [state.shape[1] for state in outputs.hidden_states] == [64, 16, 4, 1, 1]


@pytest.mark.parametrize("group", ["conv_heads", "rswin_heads", "global_heads"])
def test_each_ablation_removes_one_head_group_and_keeps_the_width(group):
    name = {"conv_heads": "vbb-no-conv", "rswin_heads": "vbb-no-rswin", "global_heads": "vbb-no-global"}[group]
    full, ablated = vbb_config("vbb"), vbb_config(name)
    assert ablated.hidden_sizes == full.hidden_sizes and ablated.num_heads == full.num_heads
    assert getattr(ablated, group) == [0, 0, 0, 0]
    assert all(getattr(full, group)), "the full model must have every group in every stage"
    for stage, heads in enumerate(full.num_heads):
        others = [getattr(ablated, other)[stage] for other in ("conv_heads", "rswin_heads", "global_heads")]
        assert sum(others) == heads
        assert max(others) - min(count for count in others if count) <= 1 + heads % 2  # dealt out evenly


def test_other_ablations_change_one_field():
    full = vbb_config("vbb").to_dict()
    changes = (("vbb-grid", "rswin_sampling", "grid"), ("vbb-abs-pos", "use_absolute_embeddings", True))
    for name, field, value in changes:
        ablated = vbb_config(name).to_dict()
        assert ablated[field] == value != full[field]
        assert {key for key in full if full[key] != ablated[key]} == {field}


def test_jobs_put_vbb_and_hierarchical_peers_first_then_ablations_then_vit_then_more_seeds():
    jobs = compare_models.job_order(list(CONFIGS), [0, 1])
    seed0, seed1 = jobs[: len(CONFIGS)], jobs[len(CONFIGS) :]
    assert {seed for _, seed in seed0} == {0} and {seed for _, seed in seed1} == {1}
    assert [name for name, _ in seed0] == [name for name, _ in seed1]
    kinds = [CONFIGS[name].kind for name, _ in seed0]
    assert kinds == ["vbb"] + ["peer"] * 3 + ["ablation"] * 5 + ["peer"]
    assert seed0[-1] == ("vit", 0)


def test_makespan_fills_free_workers_in_order():
    assert compare_models.makespan([3, 1, 1, 1], workers=2) == 3
    assert compare_models.makespan([1, 1, 1, 3], workers=2) == 4  # the 3 starts when the first worker frees up, at 1
    assert compare_models.makespan([2, 2], workers=1) == 4


@requires_fashion_mnist
def test_smoke_study_writes_metrics_resumes_and_reports(tmp_path):
    output_dir, results = tmp_path / "runs", tmp_path / "docs" / "results.md"
    common = ["--smoke", "--seeds", "0", "--workers", "1", "--threads", "1", "--output_dir", str(output_dir),
              "--results_md", str(results)]

    first = compare_models.main(common + ["--only", "vbb-no-global", "swin"])
    assert sorted(first["trained"]) == [("swin", 0), ("vbb-no-global", 0)]
    assert first["skipped"] == [] and first["failed"] == []
    mtimes = {}
    for name in ("vbb-no-global", "swin"):
        run_dir = output_dir / name / "seed0"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["name"] == name and metrics["seed"] == 0 and metrics["scale"] == "smoke"
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and 0.0 <= metrics["eval_accuracy"] <= 1.0
        assert metrics["params"] == compare_models.model_cost(CONFIGS[name])["params"]
        assert metrics["global_steps"] == 4  # 192 images, batch 48, one epoch
        assert json.loads((run_dir / "test_results.json").read_text())["test_samples"] == 128
        log_history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
        assert any("eval_accuracy" in entry for entry in log_history) and any("loss" in entry for entry in log_history)
        assert not list(run_dir.glob("checkpoint-*")), "checkpoints are removed once the run is finished"
        mtimes[name] = (run_dir / "metrics.json").stat().st_mtime_ns

    # an interrupted run (no metrics, no checkpoint) restarts; finished runs are skipped untouched
    interrupted = output_dir / "vbb" / "seed0"
    interrupted.mkdir(parents=True)
    (interrupted / "partial.txt").write_text("left by a killed job")
    second = compare_models.main(common + ["--only", "vbb-no-global", "swin", "vbb"])
    assert sorted(second["skipped"]) == [("swin", 0), ("vbb-no-global", 0)]
    assert second["trained"] == [("vbb", 0)]
    assert not (interrupted / "partial.txt").exists() and (interrupted / "metrics.json").is_file()
    for name, mtime in mtimes.items():
        assert (output_dir / name / "seed0" / "metrics.json").stat().st_mtime_ns == mtime

    results.unlink()
    assert compare_models.main(common + ["--report"]) is None
    text = results.read_text()
    for name in CONFIGS:
        assert sum(line.startswith(f"| `{name}` |") for line in text.splitlines()) == 1, name
    assert "(n=1)" in text and "not run" in text
    assert (results.parent / "results_curves.png").stat().st_size > 0


@requires_fashion_mnist
def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(compare_models.SCALES, "smoke", compare_models.dataclasses.replace(
        compare_models.SCALES["smoke"], num_train_epochs=2
    ))  # 8 steps, a checkpoint after each epoch
    save_checkpoint = compare_models.Trainer._save_checkpoint

    def save_then_stop(trainer, *args, **kwargs):
        save_checkpoint(trainer, *args, **kwargs)
        raise KeyboardInterrupt("the study was stopped")

    monkeypatch.setattr(compare_models.Trainer, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        compare_models.run_job("vbb-grid", 0, "smoke", tmp_path)
    run_dir = tmp_path / "vbb-grid" / "seed0"
    assert [path.name for path in run_dir.iterdir()] == ["checkpoint-4"]

    monkeypatch.setattr(compare_models.Trainer, "_save_checkpoint", save_checkpoint)
    metrics = compare_models.run_job("vbb-grid", 0, "smoke", tmp_path)
    assert metrics["resumed_from"] == str(run_dir / "checkpoint-4")
    assert metrics["global_steps"] == 8
    log_history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    assert {entry["step"] for entry in log_history if "loss" in entry} >= {1, 8}  # the first attempt's logs are kept


def fake_run(output_dir: Path, name: str, seed: int, test_accuracy: float, eval_accuracy: float | None = None,
             train_runtime: float = 60.0, params: int = 1_000_000):
    run_dir = compare_models.run_dir_of(output_dir, name, seed)
    run_dir.mkdir(parents=True)
    metrics = {
        "name": name, "seed": seed, "test_accuracy": test_accuracy,
        "eval_accuracy": test_accuracy if eval_accuracy is None else eval_accuracy,
        "train_runtime": train_runtime, "job_wall_seconds": 70.0, "resumed_from": None, "params": params,
        "macs": 4_000_000, "torch_threads": 1,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_report_reads_the_claims_from_the_numbers(tmp_path):
    accuracy = {  # percent, seeds 0 and 1
        "vbb": (90.0, 90.4), "swin": (90.8, 91.0), "convnext": (89.0, 89.2), "vbb-abs-pos": (90.9, 90.9),
        "vbb-no-conv": (88.0, 88.4), "vbb-no-global": (90.5, 90.1),
    }
    for name, values in accuracy.items():
        for seed, value in enumerate(values):
            fake_run(tmp_path, name, seed, value / 100)
    text = compare_models.write_report(tmp_path, tmp_path / "results.md", "study", [0, 1], 2)
    assert "90.20 ± 0.28 (n=2)" in text  # vbb: mean and sample standard deviation
    peer_line = next(line for line in text.splitlines() if "Against the best same-size peer" in line)
    assert "90.20% vs 90.90% for the best peer, swin (gap -0.70 points" in peer_line
    assert "**does not hold**" in peer_line
    position_line = next(line for line in text.splitlines() if "No position embedding" in line)
    assert "costs +0.70 points" in position_line and "**does not hold**" in position_line
    conv_line = next(line for line in text.splitlines() if "Contribution of the conv heads" in line)
    assert "+2.00 points" in conv_line and "the same sign for every seed" in conv_line
    global_line = next(line for line in text.splitlines() if "Contribution of the global heads" in line)
    assert "per seed: -0.50, +0.30" in global_line and "within seed-to-seed noise" in global_line
    assert "Contribution of the RS-Win heads.** Not measured yet" in text


def test_report_writes_results_json_with_the_numbers_of_the_runs(tmp_path):
    """results.json beside results.md: every configuration in order, with the numbers of its (hand-made) runs."""
    # name: [(seed, test %, validation %, train seconds)]; 3, 2 and 1 seeds, and vbb-grid with none
    made_up = {
        "vbb": [(0, 90.0, 89.5, 120.0), (1, 90.4, 89.9, 150.0), (2, 89.7, 90.2, 90.0)],
        "swin": [(0, 90.8, 90.1, 60.0), (2, 91.1, 90.3, 66.0)],
        "vbb-no-conv": [(1, 88.3, 88.0, 75.0)],
    }

    def runs_of(name: str) -> list[tuple]:
        return made_up.get(name, [] if name == "vbb-grid" else [(0, 85.0, 85.0, 60.0)])

    for name in CONFIGS:
        for seed, test, validation, seconds in runs_of(name):
            fake_run(tmp_path, name, seed, test / 100, validation / 100, seconds, params=1_000_000 + len(name))
    text = compare_models.write_report(tmp_path, tmp_path / "docs" / "results.md", "study", [0, 1, 2], 2)
    summary = json.loads((tmp_path / "docs" / "results.json").read_text())

    assert summary["scale"] == "study" and summary["seeds"] == [0, 1, 2]
    assert summary["test_images"] == compare_models.TEST_SIZE
    assert summary["finished_runs"] == sum(len(runs_of(name)) for name in CONFIGS)
    assert summary["planned_runs"] == 3 * len(CONFIGS)
    assert "--report" in summary["generated_by"]
    assert [entry["name"] for entry in summary["configurations"]] == list(CONFIGS)
    entries = {entry["name"]: entry for entry in summary["configurations"]}
    for name, entry in entries.items():
        assert entry["kind"] == CONFIGS[name].kind and entry["description"] == CONFIGS[name].description
        runs = runs_of(name)
        assert entry["n_seeds"] == len(runs)
        assert entry["test_accuracy_per_seed"] == {str(seed): pytest.approx(test) for seed, test, _, _ in runs}
        tests, validations = [run[1] for run in runs], [run[2] for run in runs]
        if runs:
            assert entry["test_accuracy_mean"] == pytest.approx(statistics.mean(tests))
            assert entry["validation_accuracy_mean"] == pytest.approx(statistics.mean(validations))
            assert entry["train_minutes_mean"] == pytest.approx(statistics.mean(run[3] for run in runs) / 60)
            assert entry["params"] == 1_000_000 + len(name)
        else:
            assert entry["test_accuracy_mean"] is None and entry["validation_accuracy_mean"] is None
            assert entry["params"] == compare_models.model_cost(CONFIGS[name])["params"]  # counted, not run
        if len(runs) > 1:
            assert entry["test_accuracy_sd"] == pytest.approx(statistics.stdev(tests))
        else:
            assert entry["test_accuracy_sd"] is None
    # the same numbers as results.md's table and claims
    assert f"| {entries['vbb']['test_accuracy_mean']:.2f} ± {entries['vbb']['test_accuracy_sd']:.2f} (n=3) |" in text
    assert f"| {entries['vbb-no-conv']['test_accuracy_mean']:.2f} (n=1) |" in text
    assert summary["claims"] == [line for line in text.splitlines() if line.startswith("- **")]
    assert len(summary["claims"]) == 6
    assert summary["caveats"] in text.splitlines()
