"""
The box checks of `scripts/train_object_detection.py` on a `--dataset_name` folder in cppe-5's format, before any
image is decoded: a malformed box names its split, row and image_id; empty boxes and boxes leaving the image are
warned with their image_ids; good boxes pass in silence.
"""

import logging
import math

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value
from PIL import Image as PILImage
from train_object_detection import DataTrainingArguments, load_detection_dataset
from training_common import InvalidArgument

FEATURES = Features(
    image=Image(), image_id=Value("int64"), width=Value("int32"), height=Value("int32"),
    objects={"bbox": List(List(Value("float32"))), "category": List(ClassLabel(names=["coverall", "mask"]))},
)  # fmt: skip


def save_cppe5_like(tmp_path, boxes_per_image: list[list[list[float]]]):
    """A DatasetDict folder (train and validation) of 32x24 images with the given boxes in the train split."""
    image_path = tmp_path / "image.png"
    PILImage.new("RGB", (32, 24), "gray").save(image_path)

    def rows(all_boxes):
        return [
            {"image": str(image_path), "image_id": image_id, "width": 32, "height": 24,
             "objects": {"bbox": boxes, "category": [0] * len(boxes)}}
            for image_id, boxes in enumerate(all_boxes, start=100)
        ]  # fmt: skip

    folder = tmp_path / "cppe5-like"
    DatasetDict({
        "train": Dataset.from_list(rows(boxes_per_image), features=FEATURES),
        "validation": Dataset.from_list(rows([[[1, 1, 4, 4]]]), features=FEATURES),
    }).save_to_disk(folder)  # fmt: skip
    return DataTrainingArguments(dataset_name=str(folder))


def test_good_boxes_load_without_a_warning(tmp_path, caplog):
    data_args = save_cppe5_like(tmp_path, [[[0, 0, 32, 24]], [[2, 3, 10, 5], [20, 10, 12, 14]], []])
    with caplog.at_level(logging.WARNING):
        dataset = load_detection_dataset(data_args, seed=0, cache_dir=None)
    assert len(dataset["train"]) == 3 and not caplog.records


@pytest.mark.parametrize("box", [[1, 2, 3], [1, 2, 3, math.nan], [1, 2, math.inf, 4]])
def test_a_malformed_box_names_its_split_row_and_image_id(tmp_path, box):
    data_args = save_cppe5_like(tmp_path, [[[1, 1, 4, 4]], [[1, 1, 4, 4], box]])
    with pytest.raises(InvalidArgument, match=r"cppe5-like train row 1 \(image_id 101\): bbox .* is not four finite"):
        load_detection_dataset(data_args, seed=0, cache_dir=None)


def test_empty_and_outside_boxes_are_warned_with_their_image_ids(tmp_path, caplog):
    boxes = [[[1, 1, 4, 4]], [[5, 5, 0, 3]], [[30, 1, 4, 4]], [[-1, 2, 4, 4], [2, 2, 4, -2]]]
    data_args = save_cppe5_like(tmp_path, boxes)
    with caplog.at_level(logging.WARNING):
        load_detection_dataset(data_args, seed=0, cache_dir=None)
    messages = [record.getMessage() for record in caplog.records]
    assert any("2 empty boxes, skipped (image_id 101, 103)" in message for message in messages), messages
    assert any("2 boxes leaving the image, clipped (image_id 102, 103)" in message for message in messages), messages
