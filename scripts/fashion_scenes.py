"""Scenes of real Fashion-MNIST garments, written in ADE20K's and COCO's own folder layouts, for the dense-prediction
scripts' tests and docs: several garments pasted at random positions and scales on a crop of a real photograph
(scikit-learn's sample images), each garment's pixels its mask, its visible extent its box, its class its label.

    python scripts/fashion_scenes.py --layout ade20k --output_dir runs/scenes-ade20k --num_train 1000 --num_validation 200
    python scripts/fashion_scenes.py --layout coco --output_dir runs/scenes-coco --num_train 1000 --num_validation 200

ADE20K layout (as ADEChallengeData2016 ships): `images/{training,validation}/ADE_{train,val}_%08d.jpg`, label PNGs of
the same name in `annotations/{training,validation}/`, and `objectInfo150.txt` (tab-separated Idx, Ratio, Train, Val,
Name). Label 0 is "other" (here: a garment's soft edge, which belongs to neither the garment nor the background),
1 is the background, 2-11 the ten garments; reduced labels (0 ignored, the rest minus one) are 11 classes.

COCO layout (as COCO 2017 ships): `{train2017,val2017}/%012d.jpg` and `annotations/instances_{train,val}2017.json`
with `images`, `annotations` (`bbox` as [x, y, width, height] in pixels, `area`, `iscrowd` 0) and `categories` (ids
1-10, the garments). A scene may hold no garment (`--empty_fraction`), as COCO holds images without objects.
"""

import argparse
import json
import os
from dataclasses import dataclass

import numpy as np
import PIL.Image
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, read_split

ADE20K_OTHER, ADE20K_BACKGROUND = 0, 1  # label PNG values; garment class c is written as c + 2
SCENE_CLASSES = ["background", *FASHION_MNIST_CLASSES]  # the 11 classes after label reduction, in order
GARMENT_THRESHOLD, EDGE_THRESHOLD = 0.3, 0.05  # garment opacity (intensity / 255) above: garment; between: "other"
ADE20K_SPLITS = {"train": ("training", "ADE_train"), "validation": ("validation", "ADE_val")}
COCO_SPLITS = {"train": "train2017", "validation": "val2017"}


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    label_map: np.ndarray  # (H, W) uint8, ADE20K values: 0 other, 1 background, 2-11 garments
    boxes: list[tuple[int, int, int, int]]  # visible extent of each garment: x, y, width, height (pixels)
    categories: list[int]  # each garment's Fashion-MNIST class, 0-9


def background_photos() -> list[np.ndarray]:
    """scikit-learn's sample photographs (china.jpg, flower.jpg: (427, 640, 3) uint8), shipped in its wheel."""
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def make_scene(rng, garments, garment_labels, photos, size=128, max_objects=4, scale_range=(0.25, 0.5), empty=False):
    """One scene of `size x size` pixels: a dimmed random crop of a photo with 1-`max_objects` garments pasted on it.

    A garment is a 28x28 Fashion-MNIST image scaled to a side of `scale_range` x `size`, tinted, and blended in with
    its intensity as opacity; later garments cover earlier ones. A garment whose visible part is under 20 pixels is
    dropped from the boxes (its pixels stay, labelled as what covers them).
    """
    photo = photos[rng.integers(len(photos))]
    top, left = rng.integers(photo.shape[0] - size + 1), rng.integers(photo.shape[1] - size + 1)
    image = photo[top : top + size, left : left + size].astype(np.float32) * 0.45  # (H, W, 3), dimmed
    label_map = np.full((size, size), ADE20K_BACKGROUND, dtype=np.uint8)  # (H, W)
    instance_map = np.full((size, size), -1, dtype=np.int64)  # (H, W): which pasted garment each pixel shows
    categories, placed = [], []
    for index in range(0 if empty else rng.integers(1, max_objects + 1)):
        which = rng.integers(len(garments))
        side = int(rng.uniform(*scale_range) * size)
        for _ in range(20):  # a position whose box overlaps earlier boxes by at most 30% of its area
            y, x = rng.integers(size - side + 1), rng.integers(size - side + 1)
            if all(overlap((x, y, side, side), box) <= 0.3 * side * side for box in placed):
                break
        placed.append((x, y, side, side))
        garment = PIL.Image.fromarray(garments[which]).resize((side, side), PIL.Image.BILINEAR)
        opacity = np.asarray(garment, dtype=np.float32)[..., None] / 255  # (side, side, 1)
        tint = rng.uniform(0.55, 1.0, size=3) * 255  # (3,)
        window = (slice(y, y + side), slice(x, x + side))
        image[window] = opacity * tint + (1 - opacity) * image[window]
        label_map[window][opacity[..., 0] > EDGE_THRESHOLD] = ADE20K_OTHER
        label_map[window][opacity[..., 0] > GARMENT_THRESHOLD] = garment_labels[which] + 2
        instance_map[window][opacity[..., 0] > EDGE_THRESHOLD] = index
        categories.append(int(garment_labels[which]))
    boxes, kept = [], []
    for index, category in enumerate(categories):
        rows, cols = np.nonzero((instance_map == index) & (label_map == category + 2))
        if rows.size >= 20:
            boxes.append(
                (int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1))
            )
            kept.append(category)
    return Scene(np.clip(image, 0, 255).round().astype(np.uint8), label_map, boxes, kept)


def overlap(box, other) -> int:
    """Intersection area of two (x, y, width, height) boxes."""
    width = min(box[0] + box[2], other[0] + other[2]) - max(box[0], other[0])
    height = min(box[1] + box[3], other[1] + other[3]) - max(box[1], other[1])
    return max(width, 0) * max(height, 0)


def generate_scenes(
    num_scenes, seed, split, fashion_mnist_dir=DEFAULT_FASHION_MNIST_DIR, empty_fraction=0.0, **kwargs
):
    """`num_scenes` scenes from the garments of Fashion-MNIST's `split` ("train" or "test"), seeded."""
    garments, garment_labels, _ = read_split(fashion_mnist_dir, split)
    rng, photos = np.random.default_rng(seed), background_photos()
    return [
        make_scene(rng, garments, garment_labels, photos, empty=rng.random() < empty_fraction, **kwargs)
        for _ in range(num_scenes)
    ]


def write_ade20k(root, splits: dict[str, list[Scene]]):
    """Write scenes in ADEChallengeData2016's layout under `root`, with its `objectInfo150.txt` for these classes."""
    pixel_counts = {split: np.zeros(len(SCENE_CLASSES) + 1, dtype=np.int64) for split in splits}
    for split, scenes in splits.items():
        folder, prefix = ADE20K_SPLITS[split]
        os.makedirs(os.path.join(root, "images", folder), exist_ok=True)
        os.makedirs(os.path.join(root, "annotations", folder), exist_ok=True)
        for number, scene in enumerate(scenes, start=1):
            name = f"{prefix}_{number:08d}"
            PIL.Image.fromarray(scene.image).save(os.path.join(root, "images", folder, name + ".jpg"), quality=95)
            PIL.Image.fromarray(scene.label_map, mode="L").save(
                os.path.join(root, "annotations", folder, name + ".png")
            )
            pixel_counts[split] += np.bincount(scene.label_map.ravel(), minlength=len(SCENE_CLASSES) + 1)
    total = sum(counts[1:] for counts in pixel_counts.values())
    lines = ["Idx\tRatio\tTrain\tVal\tName"]
    for index, name in enumerate(SCENE_CLASSES, start=1):
        images = [
            sum(int((scene.label_map == index).any()) for scene in splits.get(split, [])) for split in ADE20K_SPLITS
        ]
        lines.append(f"{index}\t{total[index - 1] / max(total.sum(), 1):.4f}\t{images[0]}\t{images[1]}\t{name}")
    with open(os.path.join(root, "objectInfo150.txt"), "w") as file:
        file.write("\n".join(lines) + "\n")


def write_coco(root, splits: dict[str, list[Scene]]):
    """Write scenes in COCO 2017's layout under `root`: JPEG folders and `annotations/instances_*.json`."""
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    categories = [
        {"id": index + 1, "name": name, "supercategory": "garment"} for index, name in enumerate(FASHION_MNIST_CLASSES)
    ]
    annotation_id = 1
    for split, scenes in splits.items():
        folder = COCO_SPLITS[split]
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        images, annotations = [], []
        for image_id, scene in enumerate(scenes, start=1):
            file_name = f"{image_id:012d}.jpg"
            PIL.Image.fromarray(scene.image).save(os.path.join(root, folder, file_name), quality=95)
            height, width = scene.label_map.shape
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for box, category in zip(scene.boxes, scene.categories):
                annotations.append(
                    {"id": annotation_id, "image_id": image_id, "category_id": category + 1, "bbox": list(box),
                     "area": box[2] * box[3], "iscrowd": 0}
                )  # fmt: skip
                annotation_id += 1
        instances = {"images": images, "annotations": annotations, "categories": categories}
        with open(os.path.join(root, "annotations", f"instances_{folder}.json"), "w") as file:
            json.dump(instances, file)


def write_scenes(layout, output_dir, num_train, num_validation, seed=0, **kwargs):
    """Training scenes from Fashion-MNIST's training garments, validation scenes from its test garments."""
    splits = {
        "train": generate_scenes(num_train, seed, "train", **kwargs),
        "validation": generate_scenes(num_validation, seed + 1, "test", **kwargs),
    }
    (write_ade20k if layout == "ade20k" else write_coco)(output_dir, splits)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=["ade20k", "coco"], required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_train", type=int, default=1000)
    parser.add_argument("--num_validation", type=int, default=200)
    parser.add_argument("--size", type=int, default=128, help="Side of each square scene, in pixels (>= 64).")
    parser.add_argument("--max_objects", type=int, default=4)
    parser.add_argument("--empty_fraction", type=float, default=0.0, help="Fraction of scenes with no garment.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fashion_mnist_dir", default=DEFAULT_FASHION_MNIST_DIR)
    args = parser.parse_args()
    if args.size < 64 or args.num_train < 1 or args.num_validation < 1 or args.max_objects < 1:
        parser.error("--size must be at least 64, --num_train, --num_validation and --max_objects at least 1")
    if not 0 <= args.empty_fraction <= 1:
        parser.error(f"--empty_fraction {args.empty_fraction} must be in [0, 1]")
    write_scenes(
        args.layout, args.output_dir, args.num_train, args.num_validation, seed=args.seed, size=args.size,
        max_objects=args.max_objects, empty_fraction=args.empty_fraction, fashion_mnist_dir=args.fashion_mnist_dir,
    )  # fmt: skip
    print(
        f"fashion_scenes: {args.num_train} + {args.num_validation} scenes in {args.layout} layout at {args.output_dir}"
    )


if __name__ == "__main__":
    main()
