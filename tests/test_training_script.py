"""
Tests of `scripts/train_image_classification.py` and of the Fashion-MNIST loader.

The script runs end to end in subprocesses (one process, two processes with torchrun, and an interrupted run
resumed from its checkpoint) with a tiny Vision Big Bird on 32x32 images, offline; its building blocks are tested
in-process. Tests that need the real Fashion-MNIST files skip when the Debian package `dataset-fashion-mnist` is not
installed.
"""

import gzip
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import vision_bigbird_hf
from transformers import AutoImageProcessor, AutoModelForImageClassification, EvalPrediction, pipeline
from vision_bigbird_hf.fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    load_fashion_mnist,
    read_idx,
)


REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "train_image_classification.py"
# A few blocks with every head group present in every stage (one conv, one RS-Win, one global head)
TINY_OVERRIDES = "hidden_sizes=[24,48,72,96],depths=[1,1,1,1],num_heads=[3,3,3,3],drop_path_rate=0.0"
TINY_MODEL_ARGS = ["--model_preset", "tiny", "--config_overrides", TINY_OVERRIDES, "--image_size", "32"]
SHAPE_CLASSES = ("circle", "square", "stripes")

has_fashion_mnist = os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
requires_fashion_mnist = pytest.mark.skipif(
    not has_fashion_mnist,
    reason=f"Fashion-MNIST not in {DEFAULT_FASHION_MNIST_DIR}: `sudo apt-get install dataset-fashion-mnist`",
)


def load_script_module():
    spec = importlib.util.spec_from_file_location("train_image_classification", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script_module()


def draw_shape(shape: str, rng: np.random.Generator, mode: str) -> Image.Image:
    """A 40x36 image of one shape class on a noisy background, in the given PIL mode."""
    background = (rng.random((40, 36, 3)) * 80).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    color = tuple(int(value) for value in rng.integers(150, 256, size=3))
    left, top = int(rng.integers(2, 10)), int(rng.integers(2, 12))
    if shape == "circle":
        draw.ellipse([left, top, left + 22, top + 22], fill=color)
    elif shape == "square":
        draw.rectangle([left, top, left + 20, top + 20], fill=color)
    else:
        for row in range(0, 40, 6):
            draw.rectangle([0, row, 35, row + 2], fill=color)
    return image.convert(mode)


def make_image_folder(root: Path, images_per_class: int, seed: int) -> Path:
    """One sub-folder of PNGs per class; grayscale, palette and RGBA files mixed in to exercise the RGB conversion."""
    rng = np.random.default_rng(seed)
    modes = ("RGB", "L", "P", "RGBA")
    for shape in SHAPE_CLASSES:
        (root / shape).mkdir(parents=True)
        for index in range(images_per_class):
            draw_shape(shape, rng, modes[index % len(modes)]).save(root / shape / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return {
        "train": make_image_folder(root / "train", images_per_class=8, seed=0),
        "validation": make_image_folder(root / "validation", images_per_class=2, seed=1),
    }


def run_script(args: list[str], cache_dir: Path, launcher: list[str] | None = None) -> str:
    """Run the script (with `launcher`, e.g. torchrun, in front), offline; fail with its output if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache_dir)}
    command = (launcher or [sys.executable]) + [str(SCRIPT), *args]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    return output


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- Fashion-MNIST loader ------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: bytes | None = None):
    """Write `array` (uint8) as a gzipped IDX file, with its correct magic number unless `magic` is given."""
    magic = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header = magic + b"".join(int(dim).to_bytes(4, "big") for dim in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion_mnist(directory: Path, num_train: int = 5, num_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(num_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=num_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(num_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=num_test),
    }
    for name, array in arrays.items():
        write_idx(directory / f"{name}.gz", array)
    return arrays


def test_loader_returns_the_pixels_and_labels_of_the_idx_files(tmp_path):
    arrays = write_fake_fashion_mnist(tmp_path)
    dataset = load_fashion_mnist(tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = np.stack([np.array(image) for image in dataset[split]["image"]])
        np.testing.assert_array_equal(images, arrays[f"{prefix}-images-idx3-ubyte"])
        np.testing.assert_array_equal(dataset[split]["label"], arrays[f"{prefix}-labels-idx1-ubyte"])


def test_loader_reads_uncompressed_idx_files_too(tmp_path):
    arrays = write_fake_fashion_mnist(tmp_path)
    for gz_path in tmp_path.glob("*.gz"):
        gz_path.with_suffix("").write_bytes(gzip.decompress(gz_path.read_bytes()))
        gz_path.unlink()
    dataset = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(np.array(dataset["test"][2]["image"]), arrays["t10k-images-idx3-ubyte"][2])


def test_loader_explains_how_to_get_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sudo apt-get install dataset-fashion-mnist.*data_dir="):
        load_fashion_mnist(tmp_path)


def test_read_idx_rejects_corrupt_files(tmp_path):
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "bad-magic.gz", images, magic=bytes([0, 0, 0x0D, 3]))  # 0x0D: float, not ubyte
    with pytest.raises(ValueError, match="bad-magic.gz is not an IDX file"):
        read_idx(str(tmp_path / "bad-magic.gz"), expected_ndim=3)

    write_idx(tmp_path / "truncated.gz", images)
    raw = gzip.decompress((tmp_path / "truncated.gz").read_bytes())
    (tmp_path / "truncated.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="truncated.gz is corrupt"):
        read_idx(str(tmp_path / "truncated.gz"), expected_ndim=3)

    (tmp_path / "not-gzip.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match="not-gzip.gz is corrupt"):
        read_idx(str(tmp_path / "not-gzip.gz"), expected_ndim=3)


@requires_fashion_mnist
def test_real_fashion_mnist():
    dataset = load_fashion_mnist()
    assert {split: dataset[split].num_rows for split in dataset} == {"train": 60000, "test": 10000}
    assert dataset["train"].features["label"].names == FASHION_MNIST_CLASSES
    image = dataset["test"][0]["image"]
    assert (image.size, image.mode) == ((28, 28), "L")
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class
    labels = dataset.with_format("numpy")
    assert np.bincount(labels["train"]["label"]).tolist() == [6000] * 10
    assert np.bincount(labels["test"]["label"]).tolist() == [1000] * 10


# ---- Building blocks of the script, in-process -------------------------------------


def test_parse_config_overrides_keeps_lists_whole():
    overrides = "hidden_sizes=[24, 48],mlp_ratio=2.5,hidden_act=gelu,qkv_bias=false,global_pool_size=[7,7]"
    assert script.parse_config_overrides(overrides) == {
        "hidden_sizes": [24, 48],
        "mlp_ratio": 2.5,
        "hidden_act": "gelu",
        "qkv_bias": False,
        "global_pool_size": [7, 7],
    }
    with pytest.raises(ValueError, match="key=value"):
        script.parse_config_overrides("depths")


def test_config_from_preset_with_overrides_and_labels():
    model_args = script.ModelArguments(model_preset="tiny", config_overrides=TINY_OVERRIDES, image_size=32)
    config = script.build_config(model_args, labels=["a", "b"])
    assert (config.hidden_sizes, config.depths, config.num_heads) == ([24, 48, 72, 96], [1] * 4, [3] * 4)
    assert (config.id2label, config.label2id, config.image_size) == ({0: "a", 1: "b"}, {"a": 0, "b": 1}, 32)

    unknown = script.ModelArguments(model_preset="tiny", config_overrides="hiden_sizes=[1,2,3,4]")
    with pytest.raises(ValueError, match="hiden_sizes"):
        script.build_config(unknown, labels=["a"])


def test_last_checkpoint_is_detected_numerically_and_other_content_refused(tmp_path):
    training_args = script.TrainingArguments(output_dir=str(tmp_path), do_train=True, report_to="none")
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert script.detect_last_checkpoint(training_args, overwrite_output_dir=False) == str(tmp_path / "checkpoint-10")
    assert script.detect_last_checkpoint(training_args, overwrite_output_dir=True) is None

    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").rmdir()
    (tmp_path / "notes.txt").write_text("an earlier run")
    with pytest.raises(ValueError, match="--overwrite_output_dir"):
        script.detect_last_checkpoint(training_args, overwrite_output_dir=False)


def test_train_transforms_normalize_like_the_processor():
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    train_transforms, eval_transforms = script.build_transforms(image_processor, min_crop_scale=0.5)
    gray = Image.new("RGB", (28, 28), (51, 102, 204))  # any crop or flip of a constant image is the same image
    expected = (torch.tensor([51, 102, 204]) / 255 - torch.tensor(image_processor.image_mean)) / torch.tensor(
        image_processor.image_std
    )
    for pixel_values in train_transforms([gray]) + eval_transforms([gray]):
        assert pixel_values.shape == (3, 32, 32)
        torch.testing.assert_close(pixel_values, expected[:, None, None].expand(3, 32, 32), atol=1e-5, rtol=0)


def test_batch_transform_and_collate_fn_make_rgb_batches():
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    train_transforms, _ = script.build_transforms(image_processor)
    rng = np.random.default_rng(0)
    batch = {"img": [draw_shape("circle", rng, mode) for mode in ("L", "P", "RGBA")], "y": [0, 2, 1]}
    examples = script.BatchTransform(train_transforms, "img", "y")(batch)
    collated = script.collate_fn([dict(zip(examples, values)) for values in zip(*examples.values())])
    assert collated["pixel_values"].shape == (3, 3, 32, 32)
    assert collated["labels"].tolist() == [0, 2, 1]


def test_compute_metrics_is_accuracy():
    logits = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    eval_prediction = EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 1, 1]))
    assert script.build_compute_metrics()(eval_prediction) == {"accuracy": 0.75}


def test_dataset_name_with_other_columns_string_labels_and_split_count(tmp_path):
    """`--dataset_name` on a local parquet dataset: renamed columns, string labels, a validation split of 4 rows."""
    rng = np.random.default_rng(0)
    rows = [(draw_shape(shape, rng, "RGB"), shape) for shape in SHAPE_CLASSES for _ in range(6)]
    data = datasets.Dataset.from_dict(
        {"picture": [image for image, _ in rows], "kind": [shape for _, shape in rows]},
        features=datasets.Features({"picture": datasets.Image(), "kind": datasets.Value("string")}),
    )
    (tmp_path / "data").mkdir()
    data.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    data_args = script.DataTrainingArguments(
        dataset_name=str(tmp_path / "data"),
        image_column_name="picture",
        label_column_name="kind",
        train_val_split=4,
        max_train_samples=10,
    )
    dataset = script.load_image_dataset(data_args, seed=0, cache_dir=str(tmp_path / "cache"))
    assert {split: dataset[split].num_rows for split in dataset} == {"train": 10, "validation": 4}
    assert dataset["train"].features["kind"].names == sorted(SHAPE_CLASSES)


# ---- The script end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder_run(image_folders, tmp_path_factory) -> tuple[Path, str]:
    """One epoch on 10 of the 24 training images (batch 4), evaluated on the 6 validation images."""
    output_dir = tmp_path_factory.mktemp("run") / "out"
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(image_folders["train"]),
        "--validation_dir", str(image_folders["validation"]),
        "--output_dir", str(output_dir),
        "--do_train", "--do_eval",
        "--max_train_samples", "10",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4",
        "--learning_rate", "1e-3",
    ]  # fmt: skip
    return output_dir, run_script(args, cache_dir=output_dir.parent / "cache")


def test_output_folder_loads_with_auto_classes_and_pipeline(image_folder_run, image_folders):
    output_dir, _ = image_folder_run
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert type(model).__name__ == "VisionBigBirdForImageClassification"
    assert model.config.id2label == dict(enumerate(SHAPE_CLASSES))  # the folder names, in sorted order
    image_processor = AutoImageProcessor.from_pretrained(output_dir)
    assert dict(image_processor.crop_size) == {"height": 32, "width": 32}

    classifier = pipeline("image-classification", model=str(output_dir))
    predictions = classifier(str(image_folders["validation"] / "square" / "0.png"), top_k=3)
    assert {prediction["label"] for prediction in predictions} == set(SHAPE_CLASSES)
    assert math.isclose(sum(prediction["score"] for prediction in predictions), 1.0, rel_tol=1e-5)

    eval_metrics = read_json(output_dir / "eval_results.json")
    assert eval_metrics["eval_samples"] == 6 and 0.0 <= eval_metrics["eval_accuracy"] <= 1.0


def test_max_train_samples_is_honored(image_folder_run):
    output_dir, output = image_folder_run
    assert read_json(output_dir / "train_results.json")["train_samples"] == 10
    # one epoch of 10 examples in batches of 4 is 3 optimizer steps (6 for all 24 training images)
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 3
    assert "splits: train 10, validation 6" in output


def test_fine_tuning_a_saved_model_on_a_new_label_set(image_folder_run):
    output_dir, _ = image_folder_run
    saved = AutoModelForImageClassification.from_pretrained(output_dir)
    model_args = script.ModelArguments(model_name_or_path=str(output_dir), ignore_mismatched_sizes=True)
    model, image_processor = script.build_model_and_image_processor(model_args, labels=FASHION_MNIST_CLASSES)

    assert model.config.id2label == dict(enumerate(FASHION_MNIST_CLASSES))
    assert model.classifier.out_features == 10
    assert script.crop_size_of(image_processor) == (32, 32)  # the processor saved with the model
    saved_weights, new_weights = saved.state_dict(), model.state_dict()
    for name, weight in saved_weights.items():
        if not name.startswith("classifier."):
            torch.testing.assert_close(new_weights[name], weight, msg=f"{name} was not loaded from the saved model")


@requires_fashion_mnist
def test_fashion_mnist_from_a_json_file_of_arguments(tmp_path):
    output_dir = tmp_path / "out"
    arguments = {
        "model_preset": "tiny",
        "config_overrides": TINY_OVERRIDES,
        "image_size": 32,
        "min_crop_scale": 0.5,
        "output_dir": str(output_dir),
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
        "max_train_samples": 64,
        "max_eval_samples": 32,
        "max_predict_samples": 48,
        "max_steps": 2,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 16,
    }
    (tmp_path / "args.json").write_text(json.dumps(arguments))
    output = run_script([str(tmp_path / "args.json")], cache_dir=tmp_path / "cache")

    assert "using Fashion-MNIST" in output
    test_metrics = read_json(output_dir / "test_results.json")
    assert test_metrics["test_samples"] == 48 and 0.0 <= test_metrics["test_accuracy"] <= 1.0
    assert read_json(output_dir / "eval_results.json")["eval_samples"] == 32
    config = read_json(output_dir / "config.json")
    assert [config["id2label"][str(index)] for index in range(10)] == FASHION_MNIST_CLASSES


def test_two_process_ddp_with_torchrun(image_folders, tmp_path):
    output_dir = tmp_path / "out"
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(image_folders["train"]),
        "--output_dir", str(output_dir),
        "--do_train",
        "--max_train_samples", "12",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "2",
    ]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    output = run_script(args, cache_dir=tmp_path / "cache", launcher=torchrun)

    assert "Process rank: 1, world size: 2" in output and "distributed training: True" in output
    # 12 examples, 2 per process and step: 3 steps with two processes (6 if each process trained alone)
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 3
    assert AutoModelForImageClassification.from_pretrained(output_dir).config.num_labels == len(SHAPE_CLASSES)


def test_interrupted_run_resumes_from_its_checkpoint(image_folders, tmp_path):
    output_dir = tmp_path / "out"
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(image_folders["train"]),
        "--output_dir", str(output_dir),
        "--do_train",
        "--max_steps", "4",
        "--save_steps", "2",
        "--per_device_train_batch_size", "4",
        "--logging_steps", "1",
    ]  # fmt: skip
    run_script(args, cache_dir=tmp_path / "cache")
    full_run_log = read_json(output_dir / "trainer_state.json")["log_history"]
    full_run_learning_rates = [entry["learning_rate"] for entry in full_run_log if "loss" in entry]

    # Interrupt after step 2: only checkpoint-2 survives, as when the process dies before the step-4 save
    shutil.rmtree(output_dir / "checkpoint-4")
    for path in output_dir.iterdir():
        if path.is_file() and path.name != "training_args.bin":
            path.unlink()
    output = run_script([*args, "--resume_from_checkpoint", str(output_dir / "checkpoint-2")], tmp_path / "cache")

    assert f"Resuming training from {output_dir / 'checkpoint-2'}" in output
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in output
    assert output.count("{'loss'") == 2  # only steps 3 and 4 were trained again
    state = read_json(output_dir / "trainer_state.json")
    assert state["global_step"] == 4
    losses = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in losses] == [1, 2, 3, 4]
    # the learning-rate schedule went on from step 2 instead of restarting at its peak
    assert [entry["learning_rate"] for entry in losses] == pytest.approx(full_run_learning_rates)
    assert AutoModelForImageClassification.from_pretrained(output_dir).config.num_labels == len(SHAPE_CLASSES)
