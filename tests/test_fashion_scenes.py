"""The scene datasets of scripts/fashion_scenes.py: masks, boxes and classes agree with the pasted garments, and the
written folders follow ADE20K's and COCO's layouts (read back as a reader of the real datasets would)."""

import json
import os

import numpy as np
import PIL.Image
import pytest
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR

fashion_scenes = pytest.importorskip("fashion_scenes")
if not os.path.isdir(DEFAULT_FASHION_MNIST_DIR):
    pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)", allow_module_level=True)


@pytest.fixture(scope="module")
def scenes():
    return fashion_scenes.generate_scenes(24, seed=3, split="test", empty_fraction=0.2, size=96)


def test_single_garment_box_and_class_match_its_pixels():
    garment = np.zeros((28, 28), dtype=np.uint8)
    garment[5:20, 8:14] = 255  # a solid 15x6 bar: opaque pixels only
    photo = np.full((200, 200, 3), 100, dtype=np.uint8)
    rng = np.random.default_rng(0)
    scene = fashion_scenes.make_scene(rng, garment[None], np.array([7]), [photo], size=64, max_objects=1)
    rows, cols = np.nonzero(scene.label_map == 7 + 2)
    assert scene.categories == [7]
    assert scene.boxes == [(cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)]
    # opaque garment pixels carry the garment's tint; pixels 2 away from its box show the dimmed photo (100 * 0.45)
    far = np.ones_like(outside := scene.label_map == fashion_scenes.ADE20K_BACKGROUND)
    far[max(rows.min() - 2, 0) : rows.max() + 3, max(cols.min() - 2, 0) : cols.max() + 3] = False
    assert np.all(np.abs(scene.image[far & outside].astype(int) - 45) <= 1)
    center = scene.image[(rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2]  # an opaque pixel
    assert center.min() >= 0.55 * 255 - 1


def test_boxes_hold_their_class_pixels(scenes):
    assert any(not scene.boxes for scene in scenes), "empty_fraction=0.2 of 24 scenes should give an empty scene"
    for scene in scenes:
        assert set(np.unique(scene.label_map)) <= set(range(len(fashion_scenes.SCENE_CLASSES) + 1))
        for (x, y, width, height), category in zip(scene.boxes, scene.categories):
            inside = scene.label_map[y : y + height, x : x + width] == category + 2
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight


def test_ade20k_layout(tmp_path, scenes):
    fashion_scenes.write_ade20k(tmp_path, {"train": scenes[:16], "validation": scenes[16:]})
    for folder, prefix, count in (("training", "ADE_train", 16), ("validation", "ADE_val", 8)):
        images = sorted(os.listdir(tmp_path / "images" / folder))
        assert images == [f"{prefix}_{number:08d}.jpg" for number in range(1, count + 1)]
        for name in images:
            label = PIL.Image.open(tmp_path / "annotations" / folder / name.replace(".jpg", ".png"))
            image = PIL.Image.open(tmp_path / "images" / folder / name)
            assert label.mode == "L" and image.mode == "RGB" and label.size == image.size
    with open(tmp_path / "objectInfo150.txt") as file:
        rows = [line.rstrip("\n").split("\t") for line in file]
    assert rows[0] == ["Idx", "Ratio", "Train", "Val", "Name"]
    assert [row[4] for row in rows[1:]] == fashion_scenes.SCENE_CLASSES
    assert abs(sum(float(row[1]) for row in rows[1:]) - 1) < 0.01


def test_coco_layout_reads_with_pycocotools(tmp_path, scenes):
    coco_module = pytest.importorskip("pycocotools.coco")
    fashion_scenes.write_coco(tmp_path, {"train": scenes[:16], "validation": scenes[16:]})
    coco = coco_module.COCO(str(tmp_path / "annotations" / "instances_val2017.json"))
    assert sorted(coco.getCatIds()) == list(range(1, 11))
    assert len(coco.getImgIds()) == 8
    assert len(coco.getAnnIds()) == sum(len(scene.boxes) for scene in scenes[16:])
    for image in coco.loadImgs(coco.getImgIds()):
        with PIL.Image.open(tmp_path / "val2017" / image["file_name"]) as file:
            assert file.size == (image["width"], image["height"])
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            x, y, width, height = annotation["bbox"]
            assert 0 <= x and 0 <= y and x + width <= image["width"] and y + height <= image["height"]
    with open(tmp_path / "annotations" / "instances_train2017.json") as file:
        assert len(json.load(file)["images"]) == 16
