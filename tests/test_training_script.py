"""
Tests of `scripts/train_image_classification.py`: its arguments and their errors, the data path (unreadable files,
image modes), peers built through `AutoConfig.for_model`, and end-to-end runs with a tiny Vision Big Bird on 32x32
images, offline. The recipe is tested in test_training_recipe.py, resuming in test_training_resume.py.
"""

import io
import json
import logging
import math
import os

import image_data
import numpy as np
import pytest
import torch
import train_image_classification as script
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES
from PIL import Image
from training_utils import (
    SHAPE_CLASSES,
    TINY_CONFIG,
    TINY_MODEL_ARGS,
    draw_shape,
    make_image_folder,
    read_json,
    run_script,
)
from transformers import AutoImageProcessor, AutoModelForImageClassification, EvalPrediction, pipeline
from transformers.image_transforms import convert_to_rgb

import vision_bigbird_hf
from vision_bigbird_hf import PRESETS

has_fashion_mnist = os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
requires_fashion_mnist = pytest.mark.skipif(not has_fashion_mnist, reason="dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shapes")
    return {
        "train": make_image_folder(root / "train", images_per_class=8, seed=0),
        "validation": make_image_folder(root / "validation", images_per_class=2, seed=1),
    }


# ---- Arguments: each bad value fails before any data or model is built, naming the flag ----------------


BAD_ARGUMENTS = [
    (["--config_overrides", '{"hidden_sizes": [16,32,64,128'], "--config_overrides is not valid JSON"),
    (["--config_overrides", "hidden_sizes=[16,32,64,128]"], "--config_overrides is not valid JSON"),
    (["--config_overrides", '{"depths": [1,1,1,1]} trailing'], "--config_overrides is not valid JSON"),
    (["--config_overrides", "[1, 2]"], "--config_overrides must be a JSON object"),
    (["--config_overrides", '{"hiden_sizes": [1, 2]}'], r"--config_overrides: \['hiden_sizes'\] are not fields"),
    (["--config_overrides", '{"depths": [1, 1]}'], "--config_overrides: depths has 2 entries"),
    (["--num_train_epochs", "-1"], "--num_train_epochs -1.0 must not be negative"),
    (["--num_train_epochs", "0"], "--num_train_epochs 0 with --do_train"),
    (["--max_steps", "-5"], "--max_steps -5 must be positive"),
    (["--max_train_samples", "-3"], "--max_train_samples -3 must be at least 1"),
    (["--max_eval_samples", "0"], "--max_eval_samples 0 must be at least 1"),
    (["--min_crop_scale", "2"], r"--min_crop_scale 2.0 must be in \(0, 1\]"),
    (["--min_crop_scale", "0"], r"--min_crop_scale 0.0 must be in \(0, 1\]"),
    (["--image_size", "16"], "--image_size 16 is below the vision_bigbird model's minimum of 32 pixels"),
    (["--model_type", "swin", "--image_size", "16"], "--image_size 16 is below the swin model's minimum of 32"),
    (["--model_type", "swin", "--model_preset", "small"], "--model_preset is for --model_type vision_bigbird"),
    (["--model_type", "no_such_model"], "--model_type no_such_model is not an AutoConfig model type"),
    (["--auto_augment", "rand-x9"], "--auto_augment rand-x9 is not timm's notation"),
    (["--random_erasing_mode", "noise"], "--random_erasing_mode noise must be const, rand or pixel"),
    (["--drop_path_rate", "1.5"], r"--drop_path_rate 1.5 must be in \[0, 1\)"),
    (["--mixup_alpha", "-1"], "--mixup_alpha -1.0 must not be negative"),
    (["--ema_decay", "1"], r"--ema_decay 1.0 must be in \[0, 1\)"),
]


@pytest.mark.parametrize("arguments, message", BAD_ARGUMENTS, ids=[" ".join(case[0]) for case in BAD_ARGUMENTS])
def test_bad_arguments_are_refused_before_the_dataset_is_loaded(arguments, message, tmp_path):
    # a Fashion-MNIST folder that does not exist: reaching the dataset would raise FileNotFoundError instead
    base = ["--output_dir", str(tmp_path / "out"), "--do_train", "--fashion_mnist_dir", str(tmp_path / "none")]
    with pytest.raises(script.InvalidArgument, match=message):
        script.main(base + arguments)


def test_image_folder_errors_name_the_folder(tmp_path):
    base = ["--output_dir", str(tmp_path / "out"), "--do_train"]
    with pytest.raises(script.InvalidArgument, match=f"--train_dir {tmp_path / 'missing'}: no such folder"):
        script.main(base + ["--train_dir", str(tmp_path / "missing")])
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(script.InvalidArgument, match=f"--train_dir {tmp_path / 'empty'} holds no image files"):
        script.main(base + ["--train_dir", str(tmp_path / "empty")])
    (tmp_path / "one" / "cats").mkdir(parents=True)
    draw_shape("circle", np.random.default_rng(0)).save(tmp_path / "one" / "cats" / "0.png")
    with pytest.raises(script.InvalidArgument, match=f"--train_dir {tmp_path / 'one'} has images of one class only"):
        script.main(base + ["--train_dir", str(tmp_path / "one")])
    two_classes = make_image_folder(tmp_path / "two", images_per_class=1, seed=0)
    with pytest.raises(script.InvalidArgument, match=f"--validation_dir {tmp_path / 'missing'}: no such folder"):
        script.main(base + ["--train_dir", str(two_classes), "--validation_dir", str(tmp_path / "missing")])


def test_a_bad_argument_exits_non_zero_with_one_line_naming_the_flag(tmp_path):
    args = ["--output_dir", str(tmp_path / "out"), "--do_train", "--config_overrides", '{"hidden_sizes": [16,32']
    returncode, output = run_script(args, cache_dir=tmp_path / "cache", check=False)
    assert returncode == 1
    assert "train_image_classification.py: error: --config_overrides" in output and "Traceback" not in output


def test_json_config_overrides_reach_the_config():
    model_args = script.ModelArguments(model_preset="small", config_overrides=json.dumps(TINY_CONFIG), image_size=32)
    config = script.build_config(model_args)
    assert (config.hidden_sizes, config.depths, config.num_heads) == ([24, 48, 72, 96], [1] * 4, [3] * 4)
    assert config.image_size == 32 and config.drop_path_rate == PRESETS["small"]["drop_path_rate"]  # the preset's
    model_args.drop_path_rate = 0.3
    assert script.build_config(model_args).drop_path_rate == 0.3


def test_no_model_argument_trains_the_tiny_preset_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger=script.logger.name):
        config = script.build_config(script.ModelArguments())
    assert (config.hidden_sizes, config.depths) == ([96, 192, 384, 768], [2, 2, 6, 2])  # Swin-T sized
    assert "training the tiny preset from scratch" in caplog.text


def test_last_complete_checkpoint_is_resumed_and_other_content_refused(tmp_path):
    training_args = script.TrainingArguments(output_dir=str(tmp_path), do_train=True, report_to="none")
    for step in (2, 10, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 10):  # checkpoint-12 has no trainer_state.json: its process died while writing it
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert script.detect_last_checkpoint(training_args, overwrite_output_dir=False) == str(tmp_path / "checkpoint-10")
    assert script.detect_last_checkpoint(training_args, overwrite_output_dir=True) is None

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("an earlier run")
    training_args = script.TrainingArguments(output_dir=str(other), do_train=True, report_to="none")
    with pytest.raises(script.InvalidArgument, match="--overwrite_output_dir"):
        script.detect_last_checkpoint(training_args, overwrite_output_dir=False)


# ---- The data path ---------------------------------------------------------------------------


def images_of_every_mode(rng) -> dict[str, Image.Image]:
    """One image per PIL mode the data path must turn into RGB, transparent parts included."""
    rgba = draw_shape("circle", rng, "RGBA")
    alpha = np.full((40, 36), 255, dtype=np.uint8)
    alpha[:10] = 0  # a fully transparent band over colored pixels: white after compositing
    rgba.putalpha(Image.fromarray(alpha))
    palette = draw_shape("square", rng, "P")
    palette.info["transparency"] = 0
    sixteen_bit = Image.fromarray((np.arange(40 * 36, dtype=np.uint16).reshape(40, 36) * 40).astype(np.uint16))
    return {
        "rgba": rgba,
        "la": rgba.convert("LA"),
        "p": palette,
        "cmyk": draw_shape("stripes", rng, "CMYK"),
        "l": draw_shape("circle", rng, "L"),
        "i16": sixteen_bit,
        "one_bit": draw_shape("square", rng, "1"),
    }


def test_every_mode_becomes_the_rgb_the_image_processor_makes(tmp_path):
    rng = np.random.default_rng(0)
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    for name, image in images_of_every_mode(rng).items():
        path = tmp_path / (f"{name}.jpg" if name == "cmyk" else f"{name}.png")
        image.save(path)
        decoded = image_data.decode_rgb({"path": str(path), "bytes": None})
        expected = image_processor(Image.open(path), return_tensors="pt")["pixel_values"][0]
        # the evaluation path of the script: decoded, then the image processor
        rows = script.datasets.Dataset.from_dict({"image": [str(path)], "label": [0]})
        rows = rows.cast_column("image", script.datasets.Image())
        evaluation = image_data.ImageClassificationDataset(rows, "validation", "image", "label", image_processor)
        torch.testing.assert_close(evaluation[0]["pixel_values"], expected, rtol=0, atol=0, msg=name)
        assert decoded.shape[2] == 3 and decoded.dtype == np.uint8
    rgba = image_data.decode_rgb({"path": str(tmp_path / "rgba.png"), "bytes": None})
    assert (rgba[:10] == 255).all()  # composited onto white, not the colors hidden under alpha 0 (convert("RGB"))


def test_unreadable_image_met_during_training_is_skipped_with_its_name(tmp_path, caplog):
    folder = make_image_folder(tmp_path / "train", images_per_class=2, seed=0)
    truncated = folder / "square" / "1.png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    dataset = image_data.load_dataset("imagefolder", data_files={"train": str(folder / "**")}, cache_dir=str(tmp_path))
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    train = image_data.ImageClassificationDataset(
        dataset["train"],
        "train",
        "image",
        "label",
        train_transform=script.build_train_transform(image_processor, script.RecipeArguments()),
    )
    with caplog.at_level(logging.WARNING, logger=image_data.logger.name):
        examples = train.__getitems__(list(range(len(train))))
    assert sum(example is None for example in examples) == 1
    assert f"Skipping unreadable image {truncated}" in caplog.text
    batch = image_data.ImageCollator()(examples)
    assert batch["pixel_values"].shape == (5, 3, 32, 32) and batch["labels"].shape == (5,)


def test_corrupt_and_odd_files_train_to_the_end_through_the_command_line(tmp_path):
    """A folder with a truncated PNG, a CMYK JPEG and RGBA/LA/P/I;16/1-bit images trains, naming the bad file."""
    train_dir = make_image_folder(tmp_path / "train", images_per_class=4, seed=0)
    for index, (name, image) in enumerate(images_of_every_mode(np.random.default_rng(1)).items()):
        image.save(train_dir / SHAPE_CLASSES[index % 3] / (f"{name}.jpg" if name == "cmyk" else f"{name}.png"))
    truncated = train_dir / "circle" / "truncated.png"
    draw_shape("circle", np.random.default_rng(2)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    output_dir = tmp_path / "out"
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(train_dir),
        "--output_dir", str(output_dir),
        "--do_train", "--do_eval",
        "--train_val_split", "3",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "4",
        "--report_to", "none",
    ]  # fmt: skip
    _, output = run_script(args + ["--recipe", "imagenet", "--learning_rate_per_1024_images", "1"], tmp_path / "cache")

    assert f"Skipping unreadable image {truncated}: OSError: image file is truncated" in output
    total = 3 * 4 + len(images_of_every_mode(np.random.default_rng(1))) + 1  # the truncated one too
    train_samples = read_json(output_dir / "train_results.json")["train_samples"]
    assert train_samples + read_json(output_dir / "eval_results.json")["eval_samples"] == total
    assert read_json(output_dir / "trainer_state.json")["global_step"] == math.ceil(train_samples / 4)  # to the end
    assert (output_dir / "model.safetensors").is_file()


# ---- Building blocks ---------------------------------------------------------------------------


def test_train_transform_normalizes_like_the_processor():
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    train_transform = script.build_train_transform(image_processor, script.RecipeArguments(min_crop_scale=0.5))
    gray = Image.new("RGB", (28, 28), (51, 102, 204))  # any crop or flip of a constant image is the same image
    expected = (torch.tensor([51, 102, 204]) / 255 - torch.tensor(image_processor.image_mean)) / torch.tensor(
        image_processor.image_std
    )
    for pixel_values in [train_transform(gray), image_processor(gray, return_tensors="pt")["pixel_values"][0]]:
        assert pixel_values.shape == (3, 32, 32)
        torch.testing.assert_close(pixel_values, expected[:, None, None].expand(3, 32, 32), atol=1e-5, rtol=0)


def test_peer_image_processor_makes_the_same_pixels_as_ours():
    ours = vision_bigbird_hf.VisionBigBirdImageProcessor()
    peer = script.new_image_processor("swin")
    for image_processor in (ours, peer):
        script.override_image_size(image_processor, 48)
    image = draw_shape("stripes", np.random.default_rng(0), "RGBA").resize((61, 45))
    torch.testing.assert_close(
        peer(image, return_tensors="pt")["pixel_values"],
        ours(image, return_tensors="pt")["pixel_values"],
        rtol=0,
        atol=0,
    )


def test_compute_metrics_is_accuracy():
    logits = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    eval_prediction = EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 1, 1]))
    assert script.compute_metrics(eval_prediction) == {"accuracy": 0.75}


def test_dataset_name_with_other_columns_string_labels_and_split_count(tmp_path):
    """`--dataset_name` on a local parquet dataset: renamed columns, string labels, a validation split of 4 rows."""
    rng = np.random.default_rng(0)
    rows = [(draw_shape(shape, rng), shape) for shape in SHAPE_CLASSES for _ in range(6)]
    data = script.datasets.Dataset.from_dict(
        {"picture": [image for image, _ in rows], "kind": [shape for _, shape in rows]},
        features=script.datasets.Features(
            {"picture": script.datasets.Image(), "kind": script.datasets.Value("string")}
        ),
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

    one_class = script.datasets.DatasetDict(
        {"train": data.filter(lambda kind: kind == "circle", input_columns="kind")}
    )
    with pytest.raises(script.InvalidArgument, match="--label_column_name kind holds 1 class"):
        image_data.check_columns(one_class, data_args)


# ---- End to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder_run(image_folders, tmp_path_factory):
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
        "--report_to", "none",
    ]  # fmt: skip
    return output_dir, run_script(args, cache_dir=output_dir.parent / "cache")[1]


def test_output_folder_loads_with_auto_classes_and_pipeline(image_folder_run, image_folders):
    output_dir, output = image_folder_run
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert type(model).__name__ == "VisionBigBirdForImageClassification"
    assert model.config.id2label == dict(enumerate(SHAPE_CLASSES))  # the folder names, in sorted order
    assert model.config.problem_type == "single_label_classification"
    image_processor = AutoImageProcessor.from_pretrained(output_dir)
    assert dict(image_processor.crop_size) == {"height": 32, "width": 32}

    classifier = pipeline("image-classification", model=str(output_dir))
    predictions = classifier(str(image_folders["validation"] / "square" / "0.png"), top_k=3)
    assert {prediction["label"] for prediction in predictions} == set(SHAPE_CLASSES)
    assert math.isclose(sum(prediction["score"] for prediction in predictions), 1.0, rel_tol=1e-5)

    eval_metrics = read_json(output_dir / "eval_results.json")
    assert eval_metrics["eval_samples"] == 6 and 0.0 <= eval_metrics["eval_accuracy"] <= 1.0
    # one epoch of 10 examples in batches of 4 is 3 optimizer steps (6 for all 24 training images)
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 3
    assert "splits: train 10, validation 6" in output


def test_fine_tuning_a_saved_model_on_a_new_label_set(image_folder_run):
    output_dir, _ = image_folder_run
    saved = AutoModelForImageClassification.from_pretrained(output_dir)
    model_args = script.ModelArguments(model_name_or_path=str(output_dir), ignore_mismatched_sizes=True)
    config = script.build_config(model_args)
    script.set_labels(config, FASHION_MNIST_CLASSES)
    model, image_processor = script.build_model_and_image_processor(model_args, config)

    assert model.config.id2label == dict(enumerate(FASHION_MNIST_CLASSES))
    assert model.classifier.out_features == 10
    assert script.crop_size_of(image_processor) == (32, 32)  # the processor saved with the model
    saved_weights, new_weights = saved.state_dict(), model.state_dict()
    for name, weight in saved_weights.items():
        if not name.startswith("classifier."):
            torch.testing.assert_close(new_weights[name], weight, msg=f"{name} was not loaded from the saved model")


PEERS = {
    "swin": {"embed_dim": 16, "depths": [1, 1, 1], "num_heads": [1, 1, 2], "window_size": 2},  # stages 8, 4, 2
    "pvt_v2": {"hidden_sizes": [16, 16, 16, 16], "depths": [1, 1, 1, 1], "num_attention_heads": [1, 1, 1, 1]},
    "convnext": {"hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1]},
    "vit": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "patch_size": 8,
    },
}


@pytest.mark.parametrize("model_type", sorted(PEERS))
def test_peers_train_with_the_same_script(model_type, image_folders, tmp_path):
    output_dir = tmp_path / "out"
    script.main([
        "--model_type", model_type,
        "--config_overrides", json.dumps(PEERS[model_type]),
        "--image_size", "32",
        "--train_dir", str(image_folders["train"]),
        "--output_dir", str(output_dir),
        "--do_train",
        "--max_steps", "1",
        "--per_device_train_batch_size", "4",
        "--report_to", "none",
        "--cache_dir", str(tmp_path / "cache"),
    ])  # fmt: skip
    config = read_json(output_dir / "config.json")
    assert config["model_type"] == model_type and config["id2label"] == {"0": "circle", "1": "square", "2": "stripes"}
    assert config["image_size"] in (32, [32, 32])
    assert all(config[key] == value for key, value in PEERS[model_type].items())
    assert read_json(output_dir / "preprocessor_config.json")["image_processor_type"] == "BitImageProcessor"
    predictions = pipeline("image-classification", model=str(output_dir))(
        draw_shape("circle", np.random.default_rng(0))
    )
    assert len(predictions) == 3


@requires_fashion_mnist
def test_fashion_mnist_from_a_json_file_of_arguments(tmp_path):
    output_dir = tmp_path / "out"
    arguments = {
        "model_preset": "tiny",
        "config_overrides": json.dumps(TINY_CONFIG),
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
        "report_to": "none",
    }
    (tmp_path / "args.json").write_text(json.dumps(arguments))
    _, output = run_script([str(tmp_path / "args.json")], cache_dir=tmp_path / "cache")

    assert "using Fashion-MNIST" in output
    results = read_json(output_dir / "all_results.json")
    assert results["test_samples"] == 48 and 0.0 <= results["test_accuracy"] <= 1.0
    assert results["eval_samples"] == 32 and 0.0 <= results["eval_accuracy"] <= 1.0
    config = read_json(output_dir / "config.json")
    assert [config["id2label"][str(index)] for index in range(10)] == FASHION_MNIST_CLASSES


def test_rgb_conversion_is_transformers_own():
    image = draw_shape("circle", np.random.default_rng(0), "RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = image_data.decode_rgb({"path": None, "bytes": buffer.getvalue()})
    np.testing.assert_array_equal(decoded, convert_to_rgb(image, return_numpy=True))


@pytest.mark.parametrize(
    "flags",
    [
        ["--bf16", "--use_cpu", "--gradient_accumulation_steps", "2", "--dataloader_num_workers", "2"],
        pytest.param(["--torch_compile"], marks=pytest.mark.slow),
    ],
    ids=["bf16-accumulation-workers", "torch_compile"],
)
def test_scale_out_flags_train_on_cpu(flags, image_folders, tmp_path):
    output_dir = tmp_path / "out"
    script.main([
        *TINY_MODEL_ARGS,
        "--train_dir", str(image_folders["train"]),
        "--output_dir", str(output_dir),
        "--do_train",
        "--recipe", "imagenet",
        "--max_steps", "2",
        "--per_device_train_batch_size", "4",
        "--logging_steps", "1",
        "--report_to", "none",
        "--cache_dir", str(tmp_path / "cache"),
        *flags,
    ])  # fmt: skip
    losses = [
        entry["loss"] for entry in read_json(output_dir / "trainer_state.json")["log_history"] if "loss" in entry
    ]
    assert len(losses) == 2 and all(math.isfinite(loss) and 0 < loss < 5 for loss in losses)


# ---- Data path: labels, splits and messages as the user laid them out (issue 21) ----------------------


def test_classes_are_the_top_level_folders_and_nested_folders_are_refused(tmp_path):
    """`train/cat/indoor/*.png` trained the labels {indoor, outdoor} while the folder check counted {cat, dog}."""
    base = ["--output_dir", str(tmp_path / "out"), "--do_train"]
    rng = np.random.default_rng(0)
    for cls, place in [("cat", "indoor"), ("cat", "outdoor"), ("dog", "indoor"), ("dog", "outdoor")]:
        (tmp_path / "nested" / cls / place).mkdir(parents=True)
        draw_shape("circle", rng).save(tmp_path / "nested" / cls / place / "0.png")
    nested = os.path.join("cat", "indoor")
    with pytest.raises(script.InvalidArgument, match=f"nested folder {nested}; the classes are the sub-folders"):
        script.main(base + ["--train_dir", str(tmp_path / "nested")])
    loose = make_image_folder(tmp_path / "loose", images_per_class=1, seed=0)
    draw_shape("circle", rng).save(loose / "stray.png")
    with pytest.raises(script.InvalidArgument, match="holds images directly .*stray.png"):
        script.main(base + ["--train_dir", str(loose)])


def test_validation_classes_missing_from_training_are_named(tmp_path):
    """Train {circle, square, stripes}, validation + {bird}: a 4-label model with no bird image, before the fix."""
    train = make_image_folder(tmp_path / "train", images_per_class=1, seed=0)
    validation = make_image_folder(tmp_path / "validation", images_per_class=1, seed=1)
    (validation / "bird").mkdir()
    draw_shape("circle", np.random.default_rng(2)).save(validation / "bird" / "0.png")
    base = ["--output_dir", str(tmp_path / "out"), "--do_train", "--do_eval", "--train_dir", str(train)]
    with pytest.raises(script.InvalidArgument, match=r"--validation_dir .* has classes that --train_dir .*\['bird'\]"):
        script.main(base + ["--validation_dir", str(validation)])
    with pytest.raises(script.InvalidArgument, match=r"--test_dir .* has classes that --train_dir .*\['bird'\]"):
        script.main(base + ["--test_dir", str(validation)])


def test_a_notes_file_beside_the_classes_is_not_data(tmp_path):
    """A `train/metadata.csv` made datasets' imagefolder fail (`file_name` must be present in metadata files)."""
    train = make_image_folder(tmp_path / "train", images_per_class=2, seed=0)
    (train / "metadata.csv").write_text("note,value\nshapes,1\n")
    (train / "circle" / "README.txt").write_text("drawn by training_utils")
    data_args = script.DataTrainingArguments(train_dir=str(train), train_val_split=0.0)
    dataset = script.load_image_dataset(data_args, seed=0, cache_dir=str(tmp_path / "cache"))
    assert dataset["train"].features["label"].names == sorted(SHAPE_CLASSES)
    assert len(dataset["train"]) == 2 * len(SHAPE_CLASSES)


@pytest.mark.parametrize("unreadable", ["train", "validation"])
def test_a_split_without_a_readable_image_is_an_error_naming_its_files(tmp_path, unreadable, caplog):
    """Before the fix: every training image unreadable failed in torch (`num_samples=0`); every validation image
    unreadable gave `--do_eval` exit 0 and no accuracy."""
    folders = {
        "train": make_image_folder(tmp_path / "train", images_per_class=2, seed=0),
        "validation": make_image_folder(tmp_path / "validation", images_per_class=1, seed=1),
    }
    for path in folders[unreadable].rglob("*.png"):
        path.write_bytes(b"not a png")
    args = [*TINY_MODEL_ARGS, "--train_dir", str(folders["train"]), "--validation_dir", str(folders["validation"])]
    args += [
        "--output_dir",
        str(tmp_path / "out"),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "1",
        "--report_to",
        "none",
    ]
    unread = pytest.raises(RuntimeError, match="Every image of a batch was unreadable")
    with caplog.at_level(logging.WARNING, logger=image_data.logger.name), unread:
        script.main(args + ["--cache_dir", str(tmp_path / "cache")])
    assert f"Skipping unreadable image {next(folders[unreadable].rglob('*.png'))}" in caplog.text


def test_16bit_grayscale_png_in_a_training_folder_is_not_white(tmp_path):
    """PIL's conversion of a 16-bit PNG (mode I;16) to RGB clips every value above 255 to white."""
    values = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 ... 65472
    Image.fromarray(values).save(tmp_path / "gray16.png")
    rgb = image_data.decode_rgb({"path": str(tmp_path / "gray16.png"), "bytes": None})
    assert rgb.dtype == np.uint8 and rgb.shape == (32, 32, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(values / 257).astype(np.uint8))


def test_messages_name_a_missing_model_folder_and_an_output_file(tmp_path, monkeypatch):
    base = ["--do_train", "--fashion_mnist_dir", str(tmp_path / "none")]
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(script.InvalidArgument, match="--output_dir .*file.txt is a file"):
        script.main(base + ["--output_dir", str(tmp_path / "file.txt")])
    out = ["--output_dir", str(tmp_path / "out")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for missing in [str(tmp_path / "no-such-run"), "runs/no-such-run", "./no-such-run"]:
        with pytest.raises(script.InvalidArgument, match=f"--model_name_or_path {missing}: no such folder"):
            script.main(base + out + ["--model_name_or_path", missing])
    script.check_local_path("--model_name_or_path", "some-org/some-model")  # a Hub id is left to the Hub
