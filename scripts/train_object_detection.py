"""Train or fine-tune an object detector on the Vision Big Bird backbone with the `Trainer`, as transformers'
`run_object_detection.py` example (same argument names and flow): RT-DETR (stage2-4) by default, or Conditional DETR
(stage4). The paper's Mask R-CNN is not in transformers; docs/dense_prediction.md says what this means.

    python scripts/fashion_scenes.py --layout coco --output_dir runs/scenes-coco --num_train 1000 --num_validation 200
    python scripts/train_object_detection.py --data_dir runs/scenes-coco --image_square_size 128 \
        --output_dir runs/det-scenes --do_train --do_eval --num_train_epochs 10

Data: `--data_dir` in COCO 2017's layout (train2017/, val2017/, annotations/instances_{train,val}2017.json), checked
before training (boxes clipped or skipped with a warning, inconsistent files refused), or `--dataset_name` for a Hub or
local `datasets` dataset in the example's cppe-5 format (image, image_id, objects{bbox, category, area, id}).
"""

import dataclasses
import json
import logging
import math
import os
import sys
from dataclasses import dataclass

import datasets
import numpy as np
import PIL.Image
import torch
import transformers
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value, load_dataset, load_from_disk
from dense_common import (
    BackboneArguments,
    build_backbone_config,
    check_model_arguments,
    load_backbone_weights,
)
from torchmetrics.detection.mean_ap import MeanAveragePrecision
from torchvision import tv_tensors
from torchvision.transforms import v2
from training_common import InvalidArgument, arg, detect_last_checkpoint, parse_config_overrides
from transformers import (
    AutoImageProcessor,
    AutoModelForObjectDetection,
    ConditionalDetrConfig,
    ConditionalDetrImageProcessor,
    RTDetrConfig,
    RTDetrImageProcessor,
    Trainer,
    TrainingArguments,
)
from transformers.image_transforms import center_to_corners_format
from transformers.utils import ModelOutput

# importing the package registers Vision Big Bird with AutoConfig and AutoBackbone
from vision_bigbird_hf import VisionBigBirdBackbone

logger = logging.getLogger(__name__)

# Which backbone stages feed each head, its config and its image processor (what its checkpoints ship with)
DETECTORS = {
    "rt_detr": (["stage2", "stage3", "stage4"], RTDetrConfig, RTDetrImageProcessor),
    "conditional_detr": (["stage4"], ConditionalDetrConfig, ConditionalDetrImageProcessor),
}
COCO_SPLITS = {"train": "train2017", "validation": "val2017"}


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = arg(None, "A Hub dataset id or local `datasets` folder in the cppe-5 format.")
    dataset_config_name: str | None = arg(None, "The configuration name of the dataset to use.")
    data_dir: str | None = arg(None, "A folder in COCO 2017's layout (train2017/, val2017/, annotations/).")
    train_val_split: float = arg(0.15, "Fraction of train split off for validation when there is no validation split.")
    image_square_size: int = arg(640, "Images are resized to this square size (as RT-DETR's image processor does).")
    max_train_samples: int | None = arg(
        None, "Truncate the training split to this many images (debugging, quick runs)."
    )
    max_eval_samples: int | None = arg(None, "Truncate the validation split to this many images.")
    overwrite_output_dir: bool = arg(False, "Start anew in a non-empty output_dir instead of resuming from it.")


@dataclass
class DetectorArguments:
    detector: str = arg("rt_detr", "The detection head on the backbone.", choices=sorted(DETECTORS))
    detector_overrides: str | None = arg(
        None, 'A JSON object set on the new detector\'s config, e.g. \'{"d_model": 128, "decoder_layers": 3}\'.'
    )
    plot_file: str | None = arg(
        None, "After evaluation, draw predicted and true boxes on validation images to this PNG."
    )
    plot_num_images: int = arg(6, "How many validation images --plot_file shows.")
    plot_threshold: float = arg(0.5, "Score above which --plot_file draws a predicted box.")


# ---- Data: COCO's layout or a `datasets` dataset, checked before training ----------------------------------


def read_coco_split(data_dir: str, folder: str, split: str) -> Dataset:
    """One split of a COCO-layout folder as a cppe-5-format dataset. Inconsistent files raise InvalidArgument naming
    the file; boxes outside their image are clipped, empty ones skipped, both with a warning naming file and id."""
    annotation_file = os.path.join(data_dir, "annotations", f"instances_{folder}.json")
    if not os.path.isfile(annotation_file):
        raise InvalidArgument(f"{annotation_file}: no such file (the {split} split's annotations, COCO's layout)")
    try:
        with open(annotation_file) as file:
            coco = json.load(file)
        images, annotations, categories = coco["images"], coco["annotations"], coco["categories"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise InvalidArgument(
            f"{annotation_file}: not COCO instances JSON ({type(error).__name__}: {error})"
        ) from None
    category_ids = sorted(category["id"] for category in categories)
    names = {category["id"]: category["name"] for category in categories}
    label_of = {category_id: label for label, category_id in enumerate(category_ids)}
    records = {}
    for image in images:
        path = os.path.join(data_dir, folder, image["file_name"])
        try:
            with PIL.Image.open(path) as opened:  # reads the header only
                width, height = opened.size
        except (OSError, PIL.UnidentifiedImageError) as error:
            raise InvalidArgument(f"{path}: listed in {annotation_file} but not readable ({error})") from None
        objects = {"bbox": [], "category": [], "area": [], "id": []}
        records[image["id"]] = {"image": path, "image_id": image["id"], "width": width, "height": height, **objects}
    for annotation in annotations:
        where = f"{annotation_file}, annotation id {annotation.get('id')}"
        record = records.get(annotation.get("image_id"))
        if record is None:
            raise InvalidArgument(f"{where}: image_id {annotation.get('image_id')} is not in its images")
        if annotation.get("category_id") not in label_of:
            raise InvalidArgument(f"{where}: category_id {annotation.get('category_id')} is not in its categories")
        if annotation.get("iscrowd", 0):
            continue  # crowd regions are not instances: DETR-style training leaves them out
        x, y, width, height = annotation["bbox"]
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + width, record["width"]), min(y + height, record["height"])
        if right <= left or bottom <= top:
            logger.warning(f"{where} ({record['image']}): box {annotation['bbox']} is empty in the image; skipped")
            continue
        if (left, top, right, bottom) != (x, y, x + width, y + height):
            logger.warning(f"{where} ({record['image']}): box {annotation['bbox']} leaves the image; clipped")
        record["bbox"].append([left, top, right - left, bottom - top])
        record["category"].append(label_of[annotation["category_id"]])
        record["area"].append((right - left) * (bottom - top))
        record["id"].append(annotation["id"])
    listed = {os.path.basename(record["image"]) for record in records.values()}
    unlisted = sorted(set(os.listdir(os.path.join(data_dir, folder))) - listed)
    if unlisted:
        logger.warning(f"{os.path.join(data_dir, folder)}: {len(unlisted)} files not in {annotation_file}, not used: "
                       f"{', '.join(unlisted[:5])}{', ...' if len(unlisted) > 5 else ''}")  # fmt: skip
    empty = sum(not record["bbox"] for record in records.values())
    logger.info(f"{annotation_file}: {len(records)} images, {empty} without objects (kept as negative examples)")
    features = Features(
        image=datasets.Image(), image_id=Value("int64"), width=Value("int32"), height=Value("int32"),
        objects={"bbox": List(List(Value("float32"), length=4)), "category": List(ClassLabel(names=[
            names[category_id] for category_id in category_ids])), "area": List(Value("float32")),
            "id": List(Value("int64"))},
    )  # fmt: skip
    for record in records.values():  # cppe-5's nesting: one `objects` dict of lists per image
        record["objects"] = {key: record.pop(key) for key in ("bbox", "category", "area", "id")}
    return Dataset.from_list(list(records.values()), features=features)


def check_hub_boxes(split: Dataset, where: str):
    """The boxes of a `--dataset_name` split, read before training without decoding an image: a box that is not four
    finite numbers is an error naming its row and image_id; boxes empty (skipped by the transform) or leaving the
    image (clipped; known when the split has width and height columns, as cppe-5 has) are warned, naming image_ids."""
    columns = [column for column in ("image_id", "objects", "width", "height") if column in split.column_names]
    empty, leaving = [], []
    for index, row in enumerate(split.select_columns(columns)):
        objects = row["objects"]  # a dict of lists (cppe-5) or a list of dicts
        for box in objects["bbox"] if isinstance(objects, dict) else [item["bbox"] for item in objects]:
            if len(box) != 4 or not all(isinstance(value, (int, float)) and math.isfinite(value) for value in box):
                raise InvalidArgument(
                    f"{where} row {index} (image_id {row.get('image_id')}): bbox {box} is not four finite numbers "
                    "[x, y, width, height]"
                )
            x, y, width, height = box
            if width <= 0 or height <= 0:
                empty.append(row.get("image_id"))
            elif "width" in row and (x < 0 or y < 0 or x + width > row["width"] or y + height > row["height"]):
                leaving.append(row.get("image_id"))
    for image_ids, what in ((empty, "empty boxes, skipped"), (leaving, "boxes leaving the image, clipped")):
        if image_ids:
            shown = ", ".join(str(image_id) for image_id in image_ids[:5]) + (", ..." if len(image_ids) > 5 else "")
            logger.warning(f"{where}: {len(image_ids)} {what} (image_id {shown})")


def load_detection_dataset(data_args: DataTrainingArguments, seed: int, cache_dir: str | None) -> DatasetDict:
    if data_args.data_dir is not None:
        splits = {split: read_coco_split(data_args.data_dir, folder, split) for split, folder in COCO_SPLITS.items()}
        dataset = DatasetDict(splits)
    elif os.path.isfile(os.path.join(data_args.dataset_name, "dataset_dict.json")):
        dataset = load_from_disk(data_args.dataset_name)  # a DatasetDict written by save_to_disk
    else:
        dataset = load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir)
    if "validation" not in dataset:
        split = dataset["train"].train_test_split(data_args.train_val_split, seed=seed)
        dataset["train"], dataset["validation"] = split["train"], split["test"]
    for name, split in dataset.items():
        missing = {"image", "image_id", "objects"} - set(split.column_names)
        if missing:
            raise InvalidArgument(
                f"{data_args.dataset_name or data_args.data_dir} {name}: no {sorted(missing)} columns"
            )
        if data_args.data_dir is None:  # read_coco_split has checked a COCO folder's boxes against its images
            check_hub_boxes(split, f"{data_args.dataset_name} {name}")
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            dataset[name] = dataset[name].select(range(min(limit, len(dataset[name]))))
    return dataset


def category_names(features: Features) -> list[str]:
    """Category names of `objects`, stored as a dict of lists or a Sequence of dicts (as cppe-5 is)."""
    objects = features["objects"]
    category = getattr(objects, "feature", objects)["category"]
    return getattr(category, "feature", category).names


class DetectionTransform:
    """A batch of cppe-5-format rows -> the detector's inputs: torchvision v2 augmentation on image and boxes
    together (train only), boxes clamped to the image and empty ones dropped, then the image processor."""

    def __init__(self, image_processor, train: bool):
        augment = [v2.RandomPhotometricDistort(p=0.5), v2.RandomHorizontalFlip()] if train else []
        self.transform = v2.Compose([*augment, v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1)])
        self.image_processor = image_processor

    def __call__(self, examples: dict) -> transformers.BatchFeature:
        images, annotations = [], []
        for image_id, image, objects in zip(examples["image_id"], examples["image"], examples["objects"]):
            image = tv_tensors.Image(v2.functional.pil_to_tensor(image.convert("RGB")))  # (3, H, W) uint8
            boxes = tv_tensors.BoundingBoxes(
                torch.tensor(objects["bbox"], dtype=torch.float32).reshape(-1, 4), format="XYWH",
                canvas_size=image.shape[-2:],
            )  # fmt: skip
            output = self.transform({"image": image, "boxes": boxes, "labels": torch.tensor(objects["category"])})
            images.append(output["image"])
            annotations.append({"image_id": image_id, "annotations": [
                {"image_id": image_id, "category_id": int(label), "bbox": box.tolist(), "area": float(box[2] * box[3]),
                 "iscrowd": 0} for box, label in zip(output["boxes"], output["labels"])]})  # fmt: skip
        return self.image_processor(images=images, annotations=annotations, return_tensors="pt")


def collate_fn(batch: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([row["pixel_values"] for row in batch]),
        "labels": [row["labels"] for row in batch],
    }


# ---- Model and metrics -----------------------------------------------------------------------------------------


def build_detector_config(model_args, detector_args):
    """A new detector's config on a new (or --backbone_name_or_path's) Vision Big Bird backbone, built before the
    data is read so that a bad override fails in seconds; None for --model_name_or_path."""
    if model_args.model_name_or_path is not None:
        return None
    out_features, config_class, _ = DETECTORS[detector_args.detector]
    backbone_config = build_backbone_config(model_args, out_features)
    flag, text = "--detector_overrides", detector_args.detector_overrides
    overrides = parse_config_overrides(text, flag) if text else {}
    unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(config_class)})
    if unknown:  # the detectors' configs would keep an unknown name as an attribute nobody reads
        raise InvalidArgument(f"{flag}: {unknown} are not fields of {config_class.__name__}")
    if detector_args.detector == "rt_detr":  # its encoder projects each backbone map; the decoder reads those
        hidden_dim = overrides.get("encoder_hidden_dim", RTDetrConfig().encoder_hidden_dim)
        channels = backbone_config.hidden_sizes[1:]  # stage2-4
        overrides = {"encoder_in_channels": channels, "decoder_in_channels": [hidden_dim] * 3, **overrides}
    try:
        return config_class(backbone_config=backbone_config, **overrides)
    except (TypeError, ValueError) as error:  # an unknown field, or a value the config refuses
        raise InvalidArgument(f"{flag} {text}: {error}") from None


def build_detector(config, model_args, detector_args, id2label: dict, image_square_size: int):
    """The detector for these classes (new from `config`, or --model_name_or_path's) and its image processor."""
    labels = {"id2label": id2label, "label2id": {name: index for index, name in id2label.items()}}
    size = {"height": image_square_size, "width": image_square_size}
    if config is None:
        model = AutoModelForObjectDetection.from_pretrained(
            model_args.model_name_or_path, ignore_mismatched_sizes=True, **labels, **model_args.hub_kwargs
        )
        image_processor = AutoImageProcessor.from_pretrained(
            model_args.model_name_or_path, size=size, do_pad=False, **model_args.hub_kwargs
        )
        return model, image_processor
    config.id2label, config.label2id = labels["id2label"], labels["label2id"]
    try:
        model = AutoModelForObjectDetection.from_config(config)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"--detector_overrides {detector_args.detector_overrides}: {error}") from None
    if model_args.backbone_name_or_path is not None:
        backbone = next(module for module in model.modules() if isinstance(module, VisionBigBirdBackbone))
        load_backbone_weights(backbone, model_args)
    return model, DETECTORS[detector_args.detector][2](size=size, do_pad=False)


def keep_boxes_and_logits(outputs: tuple, labels) -> tuple:
    """The Trainer's `preprocess_logits_for_metrics`: of the model's outputs (loss_dict, logits, pred_boxes, ...),
    keep logits and boxes, so that evaluation does not hold the decoder's auxiliary outputs for every image."""
    return outputs[1], outputs[2]


@torch.no_grad()
def compute_metrics(evaluation, image_processor, id2label: dict) -> dict:
    """COCO mAP/mAR (torchmetrics' MeanAveragePrecision, pycocotools backend) over the evaluation's batches, with
    predictions post-processed by the image processor as the pipeline does, per class too."""
    metric = MeanAveragePrecision(box_format="xyxy", class_metrics=True, backend="pycocotools")
    for (logits, boxes), targets in zip(evaluation.predictions, evaluation.label_ids):
        sizes = torch.tensor(np.array([target["orig_size"] for target in targets]))  # (B, 2) height, width
        outputs = ModelOutput(logits=torch.as_tensor(logits), pred_boxes=torch.as_tensor(boxes))
        predictions = image_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        truths = []
        for target, (height, width) in zip(targets, sizes.tolist()):
            corners = center_to_corners_format(torch.as_tensor(target["boxes"]).reshape(-1, 4))  # (n, 4), relative
            truths.append({"boxes": corners * torch.tensor([width, height, width, height]),
                           "labels": torch.as_tensor(target["class_labels"])})  # fmt: skip
        metric.update(predictions, truths)
    metrics = metric.compute()
    classes, map_per_class, mar_per_class = (
        metrics.pop(key) for key in ("classes", "map_per_class", "mar_100_per_class")
    )
    for class_id, class_map, class_mar in zip(
        classes.reshape(-1), map_per_class.reshape(-1), mar_per_class.reshape(-1)
    ):
        metrics[f"map_{id2label[int(class_id)]}"], metrics[f"mar_100_{id2label[int(class_id)]}"] = class_map, class_mar
    return {name: round(float(value), 4) for name, value in metrics.items()}


@torch.no_grad()
def plot_detections(model, image_processor, split: Dataset, id2label: dict, path: str, num_images: int, threshold):
    """Draw the first `num_images` images of `split`: true boxes dashed white, predicted boxes (score > threshold)
    in colour with class and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = split.select(range(min(num_images, len(split))))
    images = [row["image"].convert("RGB") for row in rows]
    inputs = image_processor(images=images, return_tensors="pt").to(model.device)
    model.eval()
    sizes = [(image.height, image.width) for image in images]
    detections = image_processor.post_process_object_detection(
        model(**inputs), threshold=threshold, target_sizes=sizes
    )
    columns = min(3, len(images))
    rows_of_axes = (len(images) + columns - 1) // columns
    figure, axes = plt.subplots(rows_of_axes, columns, figsize=(3 * columns, 3.1 * rows_of_axes), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, image, row, detection in zip(axes.flat, images, rows, detections):
        axis.imshow(image)
        axis.set_axis_off()
        for (x, y, width, height), label in zip(row["objects"]["bbox"], row["objects"]["category"]):
            axis.add_patch(
                plt.Rectangle((x, y), width, height, fill=False, color="white", linestyle="--", linewidth=1)
            )
        for score, label, (left, top, right, bottom) in zip(
            detection["scores"], detection["labels"], detection["boxes"].tolist()
        ):
            colour = colours(int(label) % 10)
            axis.add_patch(
                plt.Rectangle((left, top), right - left, bottom - top, fill=False, color=colour, linewidth=1.5)
            )
            axis.text(
                left, top, f"{id2label[int(label)]} {score:.2f}", color="black", fontsize=6, backgroundcolor=colour
            )
    for axis in list(axes.flat)[len(images) :]:
        axis.set_axis_off()
    figure.suptitle("dashed white: true boxes; coloured: predictions with score", fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=64)
    logger.info(f"Detections on {len(images)} validation images drawn to {path}")


def validate_arguments(model_args, data_args, detector_args):
    check_model_arguments(model_args)
    if (data_args.dataset_name is None) == (data_args.data_dir is None):
        raise InvalidArgument("give exactly one of --dataset_name and --data_dir")
    if data_args.data_dir is not None and not os.path.isdir(data_args.data_dir):
        raise InvalidArgument(f"--data_dir {data_args.data_dir}: no such folder")
    if data_args.image_square_size < 32:
        raise InvalidArgument(
            f"--image_square_size {data_args.image_square_size} must be at least 32 (the backbone's stride)"
        )
    for flag in ("max_train_samples", "max_eval_samples", "plot_num_images"):
        value = getattr(data_args, flag, getattr(detector_args, flag, None))
        if value is not None and value < 1:
            raise InvalidArgument(f"--{flag} {value} must be at least 1")


def main(args: list[str] | None = None):
    parser = transformers.HfArgumentParser(
        (BackboneArguments, DataTrainingArguments, DetectorArguments, TrainingArguments)
    )
    model_args, data_args, detector_args, training_args = parser.parse_args_into_dataclasses(args=args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", stream=sys.stdout)
    log_level = training_args.get_process_log_level()
    logger.setLevel(logging.INFO if training_args.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    validate_arguments(model_args, data_args, detector_args)
    config = build_detector_config(model_args, detector_args)
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)
    transformers.set_seed(training_args.seed)

    # Every data file is checked here, before the model is built and long before any step runs.
    with training_args.main_process_first(desc="reading and checking the dataset"):
        dataset = load_detection_dataset(data_args, training_args.seed, model_args.cache_dir)
    id2label = dict(enumerate(category_names(dataset["train"].features)))
    model, image_processor = build_detector(config, model_args, detector_args, id2label, data_args.image_square_size)
    logger.info(
        f"torch {torch.__version__}, transformers {transformers.__version__}; {model.config.model_type} on "
        f"{model.config.backbone_config.model_type} ({model.num_parameters() / 1e6:.2f}M parameters), "
        f"{len(id2label)} classes, {data_args.image_square_size}px, train {len(dataset['train'])} images, validation "
        f"{len(dataset['validation'])}; batch size per device {training_args.per_device_train_batch_size}, learning "
        f"rate {training_args.learning_rate:g}"
    )
    training_args.remove_unused_columns = False  # the image and objects columns become the inputs in the transform
    training_args.eval_do_concat_batches = False  # images have different numbers of boxes
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"].with_transform(DetectionTransform(image_processor, train=True)),
        eval_dataset=dataset["validation"].with_transform(DetectionTransform(image_processor, train=False)),
        processing_class=image_processor,
        data_collator=collate_fn,
        compute_metrics=lambda evaluation: compute_metrics(evaluation, image_processor, id2label),
        preprocess_logits_for_metrics=keep_boxes_and_logits,
    )
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
        trainer.save_model()  # the model and its image processor: serves pipeline("object-detection")
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if detector_args.plot_file is not None and trainer.is_world_process_zero():
        plot_detections(model, image_processor, dataset["validation"], id2label, detector_args.plot_file,
                        detector_args.plot_num_images, detector_args.plot_threshold)  # fmt: skip


if __name__ == "__main__":
    try:
        main()
    except InvalidArgument as error:
        sys.exit(f"train_object_detection.py: error: {error}")
