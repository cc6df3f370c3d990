"""
Tests of `scripts/train_object_detection.py` through its command line, on a tiny COCO-layout folder of Fashion-MNIST
scenes (`scripts/fashion_scenes.py`): a few steps of each head write COCO mAP metrics and save a folder that reloads
and serves `pipeline("object-detection")`; a cppe-5-format `datasets` folder trains too; each bad COCO input fails
before training naming the file (or warns naming it and skips the annotation); `--backbone_name_or_path` copies every
encoder tensor of a saved classifier. All run the script in a subprocess (slow: seconds each).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForObjectDetection, pipeline

from vision_bigbird_hf import VisionBigBirdBackbone, VisionBigBirdConfig, VisionBigBirdForImageClassification

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "train_object_detection.py"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where fashion_scenes.py reads the garments by default
TINY_BACKBONE = {
    "hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 1, 1], "num_heads": [2, 2, 2, 2], "rswin_window_size": 4,
    "global_pool_size": [2, 2, 2, 1],
}  # fmt: skip
TINY_HEADS = {
    "rt_detr": {"d_model": 32, "encoder_hidden_dim": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                "decoder_layers": 1, "num_queries": 20, "num_denoising": 10, "encoder_attention_heads": 2,
                "decoder_attention_heads": 2},
    "conditional_detr": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 64,
                         "decoder_ffn_dim": 64, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                         "num_queries": 20},
}  # fmt: skip
COMMON = ["--image_square_size", "64", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
          "--report_to", "none", "--save_strategy", "no", "--dataloader_num_workers", "0"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.isfile(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
        reason="dataset-fashion-mnist not installed",
    ),
]


def run(args: list[str], tmp_path: Path, check: bool = True) -> tuple[int, str]:
    """Run the script offline with one thread; (return code, output)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        check=False,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return result.returncode, output


def model_args(detector: str = "rt_detr") -> list[str]:
    return ["--detector", detector, "--config_overrides", json.dumps(TINY_BACKBONE),
            "--detector_overrides", json.dumps(TINY_HEADS[detector])]  # fmt: skip


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """12 training and 6 validation 64x64 scenes in COCO's layout, a quarter of them without any garment."""
    root = tmp_path_factory.mktemp("scenes") / "coco"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "fashion_scenes.py"), "--layout", "coco", "--output_dir",
               str(root), "--num_train", "12", "--num_validation", "6", "--size", "64", "--empty_fraction", "0.25"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=REPO_ROOT)
    return root


def read_instances(root: Path, folder: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{folder}.json").read_text())


@pytest.fixture
def scenes_copy(scenes, tmp_path) -> Path:
    return Path(shutil.copytree(scenes, tmp_path / "coco"))


def edit_instances(root: Path, folder: str, edit) -> Path:
    path = root / "annotations" / f"instances_{folder}.json"
    instances = json.loads(path.read_text())
    edit(instances)
    path.write_text(json.dumps(instances))
    return path


# ---- Training, metrics, the saved folder and its pipeline ----------------------------------------------------


def test_trains_writes_map_and_serves_pipeline(scenes, tmp_path):
    output_dir = tmp_path / "run"
    plot = tmp_path / "plot.png"
    args = ["--data_dir", str(scenes), "--output_dir", str(output_dir), "--do_train", "--do_eval", "--max_steps", "2",
            "--plot_file", str(plot), *model_args(), *COMMON]  # fmt: skip
    _, output = run(args, tmp_path)

    train, validation = read_instances(scenes, "train2017"), read_instances(scenes, "val2017")
    empty = len({image["id"] for image in train["images"]} - {a["image_id"] for a in train["annotations"]})
    assert empty > 0 and f"{len(train['images'])} images, {empty} without objects (kept as negative" in output

    results = json.loads((output_dir / "all_results.json").read_text())
    for name in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100"):
        assert -1 <= results[f"eval_{name}"] <= 1, name
    names = {category["id"]: category["name"] for category in validation["categories"]}
    present = {names[annotation["category_id"]] for annotation in validation["annotations"]}
    assert {key[len("eval_map_") :] for key in results if key[len("eval_map_") :] in names.values()} == present
    # A 64x64 image holds no COCO "large" box (area above 96^2): that range has no ground truth, which COCO marks -1
    assert results["eval_map_large"] == -1 and results["eval_map_small"] >= 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model = AutoModelForObjectDetection.from_pretrained(output_dir)
    assert type(model).__name__ == "RTDetrForObjectDetection"
    assert any(isinstance(module, VisionBigBirdBackbone) for module in model.modules())
    assert model.config.id2label == {index: names[key] for index, key in enumerate(sorted(names))}
    detector = pipeline("object-detection", model=str(output_dir), threshold=0.0)
    image_file = scenes / "val2017" / validation["images"][0]["file_name"]
    detections = detector(str(image_file))
    assert type(detector.image_processor).__name__ == "RTDetrImageProcessor" and len(detections) > 0
    for detection in detections:
        assert detection["label"] in names.values()
        box = detection["box"]
        assert 0 <= box["xmin"] <= box["xmax"] <= 64 and 0 <= box["ymin"] <= box["ymax"] <= 64


def test_conditional_detr_trains_from_a_datasets_folder(scenes, tmp_path):
    """The example's cppe-5 format (image, image_id, objects{bbox, category, area, id}), saved with save_to_disk."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value

    names = [
        category["name"]
        for category in sorted(read_instances(scenes, "train2017")["categories"], key=lambda c: c["id"])
    ]
    features = Features(
        image=Image(), image_id=Value("int64"),
        objects={"bbox": List(List(Value("float32"), length=4)), "category": List(ClassLabel(names=names)),
                 "area": List(Value("float32")), "id": List(Value("int64"))},
    )  # fmt: skip
    splits = {}
    for split, folder in (("train", "train2017"), ("validation", "val2017")):
        instances = read_instances(scenes, folder)
        rows = []
        for image in instances["images"]:
            annotations = [a for a in instances["annotations"] if a["image_id"] == image["id"]]
            rows.append({"image": str(scenes / folder / image["file_name"]), "image_id": image["id"], "objects": {
                "bbox": [a["bbox"] for a in annotations], "category": [a["category_id"] - 1 for a in annotations],
                "area": [a["area"] for a in annotations], "id": [a["id"] for a in annotations]}})  # fmt: skip
        splits[split] = Dataset.from_list(rows, features=features)
    DatasetDict(splits).save_to_disk(tmp_path / "cppe5-like")

    output_dir = tmp_path / "run"
    args = ["--dataset_name", str(tmp_path / "cppe5-like"), "--output_dir", str(output_dir), "--do_train", "--do_eval",
            "--max_steps", "2", *model_args("conditional_detr"), *COMMON]  # fmt: skip
    run(args, tmp_path)
    results = json.loads((output_dir / "all_results.json").read_text())
    assert -1 <= results["eval_map"] <= 1 and -1 <= results["eval_map_50"] <= 1
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "conditional_detr" and list(config["id2label"].values()) == names
    detector = pipeline("object-detection", model=str(output_dir), threshold=0.0)
    assert type(detector.image_processor).__name__ == "ConditionalDetrImageProcessor"
    assert {detection["label"] for detection in detector(str(scenes / "val2017" / "000000000001.jpg"))} <= set(names)


# ---- Bad input: a clear error naming the file, before training --------------------------------------------------


def drop_annotation_file(root: Path) -> str:
    path = root / "annotations" / "instances_val2017.json"
    path.unlink()
    return f"{path}: no such file"


def annotation_of_missing_image(root: Path) -> str:
    def edit(instances):
        instances["annotations"][0]["image_id"] = 9999

    path = edit_instances(root, "train2017", edit)
    annotation_id = read_instances(root, "train2017")["annotations"][0]["id"]
    return f"{path}, annotation id {annotation_id}: image_id 9999 is not in its images"


def unknown_category(root: Path) -> str:
    def edit(instances):
        instances["annotations"][1]["category_id"] = 77

    path = edit_instances(root, "val2017", edit)
    annotation_id = read_instances(root, "val2017")["annotations"][1]["id"]
    return f"{path}, annotation id {annotation_id}: category_id 77 is not in its categories"


def listed_image_missing(root: Path) -> str:
    path = root / "train2017" / read_instances(root, "train2017")["images"][3]["file_name"]
    path.unlink()
    return f"{path}: listed in"


def image_not_an_image(root: Path) -> str:
    path = root / "val2017" / read_instances(root, "val2017")["images"][2]["file_name"]
    path.write_bytes(b"not a jpeg")
    return f"{path}: listed in"


def annotation_file_not_json(root: Path) -> str:
    path = root / "annotations" / "instances_train2017.json"
    path.write_text('{"images": [')
    return f"{path}: not COCO instances JSON"


BAD_INPUTS = [
    drop_annotation_file,
    annotation_of_missing_image,
    unknown_category,
    listed_image_missing,
    image_not_an_image,
    annotation_file_not_json,
]


@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=[make_bad.__name__ for make_bad in BAD_INPUTS])
def test_bad_coco_input_fails_before_training_naming_the_file(make_bad, scenes_copy, tmp_path):
    expected = make_bad(scenes_copy)
    args = ["--data_dir", str(scenes_copy), "--output_dir", str(tmp_path / "run"), "--do_train", "--do_eval",
            "--max_steps", "1", *model_args(), *COMMON]  # fmt: skip
    returncode, output = run(args, tmp_path, check=False)
    assert returncode != 0
    assert f"train_object_detection.py: error: {expected}" in output, output[-3000:]
    assert "Traceback" not in output and "Running training" not in output


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--detector_overrides", '{"d_model": 32'], "--detector_overrides is not valid JSON"),
        (["--dataset_name", "some/dataset"], "give exactly one of --dataset_name and --data_dir"),
        (["--detector_overrides", '{"d_modle": 32}'], r"--detector_overrides: \['d_modle'\] are not fields of RTDetr"),
    ],
)
def test_bad_arguments_fail_naming_the_flag(flags, expected, scenes, tmp_path):
    args = ["--data_dir", str(scenes), "--output_dir", str(tmp_path / "run"), "--do_train", *COMMON, *flags]
    returncode, output = run(args, tmp_path, check=False)
    assert returncode != 0
    assert any(re.search(expected, line) for line in output.splitlines()), output[-3000:]
    assert "without objects" not in output  # refused before the data is read


def test_bad_boxes_and_unlisted_files_warn_naming_them_and_training_goes_on(scenes_copy, tmp_path):
    instances = read_instances(scenes_copy, "train2017")
    outside, empty = instances["annotations"][0], instances["annotations"][1]

    def edit(instances):
        instances["annotations"][0]["bbox"] = [50, 50, 30, 30]  # reaches x = y = 80 in a 64x64 image
        instances["annotations"][1]["bbox"] = [10, 10, 0, 5]  # zero width

    path = edit_instances(scenes_copy, "train2017", edit)
    Image.new("RGB", (64, 64)).save(scenes_copy / "train2017" / "stray.jpg")
    args = ["--data_dir", str(scenes_copy), "--output_dir", str(tmp_path / "run"), "--do_train", "--max_steps", "1",
            *model_args(), *COMMON]  # fmt: skip
    _, output = run(args, tmp_path)
    file_of = {image["id"]: image["file_name"] for image in instances["images"]}
    image_of = {
        annotation["id"]: scenes_copy / "train2017" / file_of[annotation["image_id"]]
        for annotation in (outside, empty)
    }
    clipped = (
        f"{path}, annotation id {outside['id']} ({image_of[outside['id']]}): box [50, 50, 30, 30] leaves the image"
    )
    skipped = (
        f"{path}, annotation id {empty['id']} ({image_of[empty['id']]}): box [10, 10, 0, 5] is empty in the image"
    )
    assert f"{clipped}; clipped" in output and f"{skipped}; skipped" in output
    assert f"{scenes_copy / 'train2017'}: 1 files not in {path}, not used: stray.jpg" in output


# ---- Starting the backbone from a trained classifier -------------------------------------------------------------


def test_backbone_name_or_path_loads_every_encoder_tensor(scenes, tmp_path):
    torch.manual_seed(0)
    classifier = VisionBigBirdForImageClassification(VisionBigBirdConfig(**TINY_BACKBONE, num_labels=10))
    classifier.save_pretrained(tmp_path / "classifier")
    output_dir = tmp_path / "run"
    heads = ["--detector_overrides", json.dumps(TINY_HEADS["rt_detr"])]
    args = ["--data_dir", str(scenes), "--output_dir", str(output_dir), "--do_train", "--max_steps", "1",
            "--learning_rate", "0", "--backbone_name_or_path", str(tmp_path / "classifier"), *heads, *COMMON]  # fmt: skip
    run(args, tmp_path)

    # Compared after from_pretrained: transformers' RT-DETR key renaming stores `mlp.fc1` as `fc1` in the file
    detector = AutoModelForObjectDetection.from_pretrained(output_dir)
    backbone = next(module for module in detector.modules() if isinstance(module, VisionBigBirdBackbone)).state_dict()
    encoder = {
        name[len("vision_bigbird.") :]: tensor
        for name, tensor in classifier.state_dict().items()
        if name.startswith("vision_bigbird.") and not name.startswith("vision_bigbird.layernorm.")
    }
    assert len(encoder) > 20 and set(encoder) <= set(backbone), sorted(set(encoder) - set(backbone))
    for name, tensor in encoder.items():
        torch.testing.assert_close(backbone[name], tensor, rtol=0, atol=0, msg=name)
