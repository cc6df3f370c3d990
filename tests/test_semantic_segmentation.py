"""
Tests of `scripts/train_semantic_segmentation.py` and the segmentation pieces of `scripts/dense_common.py`.

Fast, in-process: the metrics against an independent numpy computation (mmseg's dataset-level IoU and accuracy),
label reduction, ADE20K's layout and the annotation checks, which flags count as given. Slow (`-m slow`), through the
command line on tiny Fashion-MNIST scene folders: train a few steps, metrics, reload, pipeline; bad input refused
before training; `--backbone_name_or_path`; `--recipe ade20k` with flags that win over it; `--dataset_name`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dense_common import (
    SegmentationMetrics,
    ade20k_split_files,
    check_label_map,
    read_ade20k_class_names,
    reduce_labels,
)
from PIL import Image
from safetensors.torch import load_file
from transformers import EvalPrediction

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "train_semantic_segmentation.py"
TINY_BACKBONE = {
    "hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 1, 1], "num_heads": [2, 2, 2, 2], "rswin_window_size": 4,
    "global_pool_size": [2, 2, 2, 1],
}  # fmt: skip
TINY_MODEL_ARGS = ["--model_preset", "tiny", "--config_overrides", json.dumps(TINY_BACKBONE)]
TINY_HEAD_ARGS = ["--head_hidden_size", "16", "--auxiliary_head_channels", "8"]
QUICK_ARGS = [
    "--image_height", "64", "--image_width", "64", "--per_device_train_batch_size", "2",
    "--per_device_eval_batch_size", "2", "--report_to", "none", "--dataloader_pin_memory", "false",
    "--save_strategy", "no", "--overwrite_output_dir",
]  # fmt: skip


# ---- Metrics --------------------------------------------------------------------------------------------------------
def numpy_mean_iou(predictions: list[np.ndarray], labels: list[np.ndarray], num_classes: int, ignore: int = 255):
    """mmseg's `total_intersect_and_union` then `total_area_to_label` (and evaluate's mean_iou), written out."""
    intersect, union, label_area = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    for prediction, label in zip(predictions, labels):
        keep = label != ignore
        prediction, label = prediction[keep], label[keep]
        for index in range(num_classes):
            in_prediction, in_label = prediction == index, label == index
            intersect[index] += np.sum(in_prediction & in_label)
            union[index] += np.sum(in_prediction | in_label)
            label_area[index] += np.sum(in_label)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, accuracy = intersect / union, intersect / label_area
    return np.nanmean(iou), np.nanmean(accuracy), intersect.sum() / label_area.sum(), iou


def test_metrics_match_an_independent_numpy_computation():
    """Two batches with ignored pixels, a class absent from both (no IoU, left out of the mean) and a class predicted
    but absent from the targets (IoU 0, no accuracy): accumulated over the set, not averaged per image."""
    generator = torch.Generator().manual_seed(0)
    num_classes, batches = 6, []
    for _ in range(2):
        labels = torch.randint(0, 4, (3, 17, 23), generator=generator)  # classes 4 and 5 never in the targets
        predictions = torch.where(torch.rand(labels.shape, generator=generator) < 0.6, labels, 4)  # 4 predicted
        predictions[0, :3] = torch.randint(0, 4, (3, 23), generator=generator)
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = 255
        batches.append((predictions, labels))
    metric = SegmentationMetrics({index: f"c{index}" for index in range(num_classes)})
    assert metric(EvalPrediction(*batches[0]), compute_result=False) is None
    result = metric(EvalPrediction(*batches[1]), compute_result=True)
    expected = numpy_mean_iou(
        [p.numpy() for b in batches for p in b[0]], [t.numpy() for b in batches for t in b[1]], num_classes
    )
    assert result["mean_iou"] == pytest.approx(expected[0], abs=1e-12)
    assert result["mean_accuracy"] == pytest.approx(expected[1], abs=1e-12)
    assert result["overall_accuracy"] == pytest.approx(expected[2], abs=1e-12)
    assert result["iou_c4"] == 0.0 and "iou_c5" not in result  # predicted-only: IoU 0; absent from both: no IoU
    assert [result[f"iou_c{index}"] for index in range(4)] == pytest.approx(expected[3][:4].tolist(), abs=1e-12)
    # torchmetrics' own macro IoU leaves out the same classes; its macro accuracy would count class 4 as 0 (mmseg: no
    # accuracy for a class absent from the targets), which is why the means are taken from the confusion matrix
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index

    predictions, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    torchmetrics_iou = multiclass_jaccard_index(predictions, labels, num_classes, average="macro", ignore_index=255)
    assert result["mean_iou"] == pytest.approx(torchmetrics_iou.item(), abs=1e-6)
    torchmetrics_accuracy = multiclass_accuracy(predictions, labels, num_classes, average="macro", ignore_index=255)
    assert torchmetrics_accuracy.item() == pytest.approx(expected[1] * 4 / 5, abs=1e-6)  # class 4 counted as 0
    again = metric(EvalPrediction(*batches[1]), compute_result=True)  # compute() starts the next evaluation afresh
    predictions, labels = batches[1]
    assert again["mean_iou"] == pytest.approx(numpy_mean_iou(predictions.numpy(), labels.numpy(), num_classes)[0])


def test_perfect_prediction_scores_one_and_ignores_255():
    labels = torch.tensor([[[0, 1], [255, 2]]])
    predictions = torch.tensor([[[0, 1], [1, 2]]])  # wrong only where the label is ignored
    result = SegmentationMetrics({0: "a", 1: "b", 2: "c", 3: "d"})(EvalPrediction(predictions, labels))
    assert (result["mean_iou"], result["mean_accuracy"], result["overall_accuracy"]) == (1.0, 1.0, 1.0)


# ---- Labels and ADE20K's layout -------------------------------------------------------------------------------------
def test_reduce_labels_as_ade20k():
    label_map = np.array([[0, 1, 2], [150, 255, 1]], dtype=np.uint8)
    assert reduce_labels(label_map).tolist() == [[255, 0, 1], [149, 255, 0]]


def write_pair(root: Path, folder: str, stem: str, size=(20, 16), label_size=None, value=1):
    (root / "images" / folder).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(root / "images" / folder / f"{stem}.jpg")
    Image.fromarray(np.full((label_size or size)[::-1], value, dtype=np.uint8)).save(
        root / "annotations" / folder / f"{stem}.png"
    )


def test_ade20k_split_files_pairs_images_with_annotations(tmp_path):
    for stem in ("ADE_train_00000002", "ADE_train_00000001"):
        write_pair(tmp_path, "training", stem)
    pairs = ade20k_split_files(str(tmp_path), "train")
    assert [Path(image).name for image, _ in pairs] == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg"]
    assert all(Path(label).parent.name == "training" and Path(label).suffix == ".png" for _, label in pairs)


@pytest.mark.parametrize("problem", ["no split folder", "empty split folder", "no annotation", "no image"])
def test_ade20k_split_files_names_the_problem(tmp_path, problem):
    write_pair(tmp_path, "training", "ADE_train_00000001")
    if problem == "empty split folder":
        (tmp_path / "images" / "validation").mkdir()
        (tmp_path / "annotations" / "validation").mkdir()
    if problem == "no annotation":
        (tmp_path / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    if problem == "no image":
        (tmp_path / "images" / "training" / "ADE_train_00000001.jpg").unlink()
        Image.new("RGB", (4, 4)).save(tmp_path / "images" / "training" / "ADE_train_00000009.jpg")
    split = "validation" if "split folder" in problem else "train"
    with pytest.raises(ValueError) as error:
        ade20k_split_files(str(tmp_path), split)
    message = str(error.value)
    expected = {
        "no split folder": f"no validation folder {tmp_path / 'images' / 'validation'}",
        "empty split folder": f"{tmp_path / 'images' / 'validation'} holds no images",
        "no annotation": "ADE_train_00000001.jpg: no annotation",
        "no image": "ADE_train_00000001.png: no image",
    }[problem]
    assert expected in message


def test_check_label_map_names_the_file_and_the_problem():
    label_map = np.zeros((16, 20), dtype=np.uint8)  # height 16, width 20
    assert check_label_map("a.png", (20, 16), label_map, max_label=3) is None
    assert "a.png: the label map is 20x16 (width x height) but its image is 16x20" in check_label_map(
        "a.png", (16, 20), label_map, max_label=3
    )
    label_map[0, :3] = [3, 7, 255]  # 255 is "ignored", not beyond the classes
    assert "a.png: label values [7] are beyond the classes (0-3" in check_label_map("a.png", (20, 16), label_map, 3)
    assert "one channel" in check_label_map("rgb.png", (20, 16), np.zeros((16, 20, 3), dtype=np.uint8), 3)


def test_read_ade20k_class_names(tmp_path):
    assert read_ade20k_class_names(str(tmp_path)) is None
    (tmp_path / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n2\t0.1\t1\t1\tbuilding;edifice\n"
    )
    assert read_ade20k_class_names(str(tmp_path)) == ["wall", "building"]


# ---- The script, through its command line ---------------------------------------------------------------------------
def run_script(args: list[str], tmp_path: Path) -> tuple[int, str]:
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], check=False, env={**os.environ, **env}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """8 training and 4 validation Fashion-MNIST scenes of 64x64 pixels in ADE20K's layout."""
    fashion_scenes = pytest.importorskip("fashion_scenes")
    from fashion_mnist import DEFAULT_FASHION_MNIST_DIR

    if not (Path(DEFAULT_FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist not installed")
    root = tmp_path_factory.mktemp("scenes")
    fashion_scenes.write_scenes("ade20k", root, num_train=8, num_validation=4, seed=0, size=64)
    return root


@pytest.mark.slow
def test_trains_evaluates_saves_reloads_and_serves_the_pipeline(scenes, tmp_path):
    from transformers import AutoModelForSemanticSegmentation, UperNetForSemanticSegmentation, pipeline

    import vision_bigbird_hf

    output_dir = tmp_path / "run"
    args = ["--data_dir", str(scenes), "--do_reduce_labels", *TINY_MODEL_ARGS, *TINY_HEAD_ARGS, *QUICK_ARGS]
    code, output = run_script([*args, "--output_dir", str(output_dir), "--do_train", "--do_eval", "--max_steps", "3"],
                              tmp_path)  # fmt: skip
    assert code == 0, output
    results = json.loads((output_dir / "all_results.json").read_text())
    for name in ("eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy"):
        assert 0.0 <= results[name] <= 1.0, name
    model = AutoModelForSemanticSegmentation.from_pretrained(output_dir)
    assert isinstance(model, UperNetForSemanticSegmentation)
    assert isinstance(model.backbone, vision_bigbird_hf.VisionBigBirdBackbone)
    assert model.config.id2label[0] == "background" and model.config.num_labels == 11  # objectInfo150.txt, reduced
    segmenter = pipeline("image-segmentation", model=str(output_dir))
    image = Image.open(next((scenes / "images" / "validation").iterdir()))
    segments = segmenter(image)
    assert segments and all(segment["label"] in model.config.id2label.values() for segment in segments)
    assert all(segment["mask"].size == image.size for segment in segments)


@pytest.mark.slow
def test_bad_annotations_stop_the_run_before_training_naming_each_file(scenes, tmp_path):
    data_dir = tmp_path / "bad"
    shutil.copytree(scenes, data_dir)
    annotations = sorted((data_dir / "annotations" / "training").iterdir())
    Image.open(annotations[0]).resize((32, 64), Image.NEAREST).save(
        annotations[0]
    )  # a mask whose size differs from its image
    label_map = np.array(Image.open(annotations[1]))
    label_map[0, 0] = 40  # 11 classes (12 label values with "other")
    Image.fromarray(label_map).save(annotations[1])
    output_dir = tmp_path / "run"
    args = ["--data_dir", str(data_dir), "--do_reduce_labels", *TINY_MODEL_ARGS, *TINY_HEAD_ARGS, *QUICK_ARGS]
    code, output = run_script([*args, "--output_dir", str(output_dir), "--do_train", "--max_steps", "3"], tmp_path)
    assert code != 0
    assert "2 bad annotations" in output
    assert f"{annotations[0]}: the label map is 32x64 (width x height) but its image is 64x64" in output
    assert f"{annotations[1]}: label values [40] are beyond the classes (0-11, and 255 ignored)" in output
    assert not (output_dir / "model.safetensors").exists() and "Running training" not in output


@pytest.mark.slow
def test_missing_annotation_stops_the_run_naming_the_image(scenes, tmp_path):
    data_dir = tmp_path / "unpaired"
    shutil.copytree(scenes, data_dir)
    missing = min((data_dir / "annotations" / "validation").iterdir())
    missing.unlink()
    args = ["--data_dir", str(data_dir), *TINY_MODEL_ARGS, *QUICK_ARGS, "--output_dir", str(tmp_path / "run")]
    code, output = run_script([*args, "--do_eval"], tmp_path)
    assert code != 0
    assert f"{data_dir / 'images' / 'validation' / (missing.stem + '.jpg')}: no annotation {missing}" in output


@pytest.mark.slow
def test_backbone_name_or_path_loads_every_encoder_tensor(scenes, tmp_path):
    from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification

    classifier = VisionBigBirdForImageClassification(VisionBigBirdConfig(**TINY_BACKBONE, num_labels=10))
    classifier.save_pretrained(tmp_path / "classifier")
    output_dir = tmp_path / "run"
    args = ["--data_dir", str(scenes), "--do_reduce_labels", *TINY_HEAD_ARGS, *QUICK_ARGS, "--do_train"]
    args += ["--backbone_name_or_path", str(tmp_path / "classifier"), "--output_dir", str(output_dir)]
    code, output = run_script([*args, "--max_steps", "1", "--learning_rate", "0"], tmp_path)  # weights unchanged
    assert code == 0, output
    saved = load_file(output_dir / "model.safetensors")
    encoder = {
        name.removeprefix("vision_bigbird."): tensor
        for name, tensor in classifier.state_dict().items()
        if name.startswith(("vision_bigbird.embeddings.", "vision_bigbird.encoder."))
    }
    assert len(encoder) > 20
    for name, tensor in encoder.items():
        torch.testing.assert_close(saved[f"backbone.{name}"], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_recipe_sets_what_is_not_given_and_records_it(scenes, tmp_path):
    output_dir = tmp_path / "run"
    args = ["--data_dir", str(scenes), *TINY_MODEL_ARGS, *QUICK_ARGS, "--output_dir", str(output_dir), "--do_train"]
    args += ["--recipe", "ade20k", "--max_steps", "1", "--weight_decay=0.05", "--resize_base", "64", "64"]
    args += ["--head_hidden_size", "16", "--auxiliary_head_channels", "8"]
    code, output = run_script(args, tmp_path)
    assert code == 0, output
    recipe = json.loads((output_dir / "training_recipe.json").read_text())  # every value the run used
    assert recipe["weight_decay"] == 0.05 and recipe["resize_base"] == [64, 64]  # given: they win
    assert recipe["head_hidden_size"] == 16 and recipe["image_height"] == 64 and recipe["max_steps"] == 1
    assert recipe["learning_rate"] == 6e-5 and recipe["warmup_steps"] == 1500 and recipe["do_reduce_labels"] is True
    training_args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert (training_args.lr_scheduler_type, training_args.weight_decay) == ("polynomial", 0.05)
    config = json.loads((output_dir / "config.json").read_text())
    assert config["backbone_config"]["drop_path_rate"] == 0.3 and config["auxiliary_loss_weight"] == 0.4
    assert len(config["id2label"]) == 11  # reduced by the recipe: "other" left out


@pytest.mark.slow
def test_dataset_name_reads_a_local_datasets_folder(scenes, tmp_path):
    import datasets

    splits = {}
    for split, folder in (("train", "training"), ("validation", "validation")):
        images = sorted(str(path) for path in (scenes / "images" / folder).iterdir())
        labels = [image.replace("/images/", "/annotations/").replace(".jpg", ".png") for image in images]
        splits[split] = datasets.Dataset.from_dict({"image": images, "annotation": labels}).cast_column(
            "image", datasets.Image()
        )
        splits[split] = splits[split].cast_column("annotation", datasets.Image())
    folder = tmp_path / "scenes-dataset"
    datasets.DatasetDict(splits).save_to_disk(folder)
    names = [line.split("\t")[-1] for line in (scenes / "objectInfo150.txt").read_text().splitlines()[1:]]
    (folder / "id2label.json").write_text(json.dumps(dict(enumerate(names))))
    output_dir = tmp_path / "run"
    args = ["--dataset_name", str(folder), "--do_reduce_labels", *TINY_MODEL_ARGS, *TINY_HEAD_ARGS, *QUICK_ARGS]
    code, output = run_script([*args, "--output_dir", str(output_dir), "--do_train", "--do_eval", "--max_steps", "1"],
                              tmp_path)  # fmt: skip
    assert code == 0, output
    assert "eval_mean_iou" in json.loads((output_dir / "all_results.json").read_text())
    assert json.loads((output_dir / "config.json").read_text())["id2label"]["10"] == "Ankle boot"
