"""scripts/pretrain_masked_image_modeling.py through its command line: SimMIM pretraining on an image folder (labels
unused), `--recipe simmim` with explicit flags winning, the resolved values written back, bad values refused, and
fine-tuning from its output loading every encoder tensor."""

import subprocess
import sys

import pytest
import torch
from training_utils import REPO_ROOT, load_weights, make_image_folder, read_json, script_env

from vision_bigbird_hf import VisionBigBirdForImageClassification

SCRIPT = REPO_ROOT / "scripts" / "pretrain_masked_image_modeling.py"
CLASSIFICATION_SCRIPT = REPO_ROOT / "scripts" / "train_image_classification.py"
MODEL_ARGS = [
    "--config_overrides",
    '{"hidden_sizes": [24, 48, 72, 96], "depths": [1, 1, 1, 1], "num_heads": [3, 3, 3, 3]}',
]


def run(script, args, tmp_path, check=True):
    result = subprocess.run(
        [sys.executable, str(script), *args], check=False, env=script_env(tmp_path / "cache"), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, output[-6000:]
    return result.returncode, output


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A few SimMIM steps on a folder of 40x36 images, cropped to 32x32, masked in 8x8 patches."""
    tmp_path = tmp_path_factory.mktemp("pretraining")
    folder = make_image_folder(tmp_path / "images", images_per_class=8, seed=0)
    output_dir = tmp_path / "run"
    args = [*MODEL_ARGS, "--train_dir", str(folder), "--train_val_split", "6", "--output_dir", str(output_dir)]
    args += [
        "--recipe",
        "simmim",
        "--image_size",
        "32",
        "--mask_patch_size",
        "8",
        "--per_device_train_batch_size",
        "6",
    ]
    args += ["--do_train", "--do_eval", "--max_steps", "3", "--report_to", "none", "--seed", "0"]
    _, output = run(SCRIPT, args, tmp_path)
    return output_dir, output, tmp_path


@pytest.mark.slow
def test_recipe_fills_what_the_command_line_leaves(pretrained):
    output_dir, _, _ = pretrained
    resolved = read_json(output_dir / "training_recipe.json")
    # given on the command line: kept
    assert (resolved["image_size"], resolved["mask_patch_size"], resolved["per_device_train_batch_size"]) == (32, 8, 6)
    # left to the recipe: SimMIM's Swin values (scripts/recipes/simmim.json)
    assert (resolved["mask_ratio"], resolved["weight_decay"], resolved["max_grad_norm"]) == (0.6, 0.05, 5.0)
    assert resolved["learning_rate"] == pytest.approx(8e-4) and resolved["lr_scheduler_type"] == "cosine_with_min_lr"
    metrics = read_json(output_dir / "all_results.json")
    assert metrics["eval_loss"] > 0 and metrics["train_loss"] > 0


@pytest.mark.slow
def test_fine_tuning_loads_every_encoder_tensor(pretrained):
    output_dir, _, tmp_path = pretrained
    saved = load_weights(output_dir)
    assert "vision_bigbird.embeddings.mask_token" in saved and "decoder.weight" in saved
    classifier = VisionBigBirdForImageClassification.from_pretrained(output_dir, num_labels=3)
    loaded = classifier.state_dict()
    encoder = {name: tensor for name, tensor in saved.items() if name.startswith("vision_bigbird.")}
    encoder.pop("vision_bigbird.embeddings.mask_token")
    assert encoder and set(encoder) <= set(loaded)
    assert all(torch.equal(loaded[name], tensor) for name, tensor in encoder.items())
    # the classification script says what it took and what it left
    folder = make_image_folder(tmp_path / "labelled", images_per_class=4, seed=1)
    args = ["--model_name_or_path", str(output_dir), "--train_dir", str(folder), "--output_dir", str(tmp_path / "ft")]
    args += ["--do_train", "--max_steps", "1", "--per_device_train_batch_size", "4", "--report_to", "none"]
    _, output = run(CLASSIFICATION_SCRIPT, args, tmp_path)
    assert "masked-image-modeling run: its encoder is loaded; its decoder and mask token are left out" in output


@pytest.mark.slow
def test_streaming_trains_from_a_folder(tmp_path):
    folder = make_image_folder(tmp_path / "images", images_per_class=4, seed=2)
    args = [*MODEL_ARGS, "--train_dir", str(folder), "--streaming", "--output_dir", str(tmp_path / "run")]
    args += ["--image_size", "32", "--mask_patch_size", "8", "--per_device_train_batch_size", "4", "--do_train"]
    args += ["--max_steps", "2", "--report_to", "none"]
    run(SCRIPT, args, tmp_path)
    assert read_json(tmp_path / "run" / "all_results.json")["train_loss"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image_size", "48"], "--image_size 48 must be a positive multiple of 32"),
        (
            ["--image_size", "64", "--mask_patch_size", "12"],
            "--mask_patch_size 12 must be a multiple of 4 that divides 64",
        ),
        (["--mask_ratio", "1.0"], "--mask_ratio 1.0 must be in (0, 1)"),
        (["--mask_rat", "0.5"], "not used by the HfArgumentParser: ['--mask_rat'"),  # abbreviations are refused
        (["--recipe", "simmin"], "--recipe simmin: no such recipe"),
        (["--streaming", "--max_steps", "-1"], "--streaming needs --dataset_name or --train_dir"),
    ],
)
def test_bad_values_are_named(tmp_path, flags, message):
    args = [*MODEL_ARGS, "--output_dir", str(tmp_path / "run"), "--do_train", "--max_steps", "1", *flags]
    returncode, output = run(SCRIPT, args, tmp_path, check=False)
    assert returncode != 0 and message in output, output[-3000:]
