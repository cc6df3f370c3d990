"""What the dense-prediction training scripts (`train_semantic_segmentation.py`, `train_object_detection.py`) share
beyond `training_common.py`: the Vision Big Bird backbone's config and its start from a trained encoder; and for
segmentation, ADE20K's folder layout, label-map checks and the mIoU metrics (here so tests can import them).
Imported as a sibling module (scripts/ is their folder); never run.
"""

import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from training_common import InvalidArgument, arg, check_local_path, parse_config_overrides
from transformers import AutoConfig

from vision_bigbird_hf import PRESETS, VisionBigBirdBackbone, VisionBigBirdConfig

logger = logging.getLogger(__name__)


@dataclass
class BackboneArguments:
    """A new model on a new Vision Big Bird backbone (preset, overrides, optionally a trained encoder's weights), or a
    trained model folder."""

    model_name_or_path: str | None = arg(None, "A trained model folder (this script's output) or Hub id to fine-tune.")
    model_preset: str | None = arg(None, "Size of a new backbone (None: tiny).", choices=sorted(PRESETS))
    config_overrides: str | None = arg(
        None, "A JSON object set on the new backbone's config, e.g. '{\"depths\": [1, 1, 1, 1]}'."
    )
    backbone_name_or_path: str | None = arg(
        None, "Start the new backbone from this trained Vision Big Bird folder's stem and encoder (a classifier, a "
        "backbone or a pretraining run); its architecture is used, and what is not part of the backbone is left out."
    )  # fmt: skip
    cache_dir: str | None = arg(None, "Where to store what is downloaded from the Hub.")
    model_revision: str = arg("main", "The model version to use (branch name, tag name or commit id).")
    token: str | None = arg(None, "The token for remote files (default: the `hf auth login` one).")

    @property
    def hub_kwargs(self) -> dict:
        return {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token}


def check_model_arguments(args: BackboneArguments):
    """Refuse combinations that mean nothing, and a local path that does not exist (not a Hub error)."""
    new_model_flags = [flag for flag in ("model_preset", "config_overrides") if getattr(args, flag) is not None]
    if args.model_name_or_path is not None and (new_model_flags or args.backbone_name_or_path is not None):
        flags = " and ".join(f"--{flag}" for flag in new_model_flags or ["backbone_name_or_path"])
        raise InvalidArgument(f"{flags} build a new model; they cannot be used with --model_name_or_path")
    if args.backbone_name_or_path is not None and new_model_flags:
        raise InvalidArgument(
            f"--{new_model_flags[0]} cannot be used with --backbone_name_or_path: the backbone takes that folder's "
            "architecture with its weights"
        )
    for flag in ("model_name_or_path", "backbone_name_or_path"):
        if getattr(args, flag) is not None:
            check_local_path(f"--{flag}", getattr(args, flag))
    if args.config_overrides is not None:
        parse_config_overrides(args.config_overrides)


def build_backbone_config(args: BackboneArguments, out_features: list[str]) -> VisionBigBirdConfig:
    """The backbone's config: that of --backbone_name_or_path, or --model_preset with --config_overrides."""
    if args.backbone_name_or_path is not None:
        config = AutoConfig.from_pretrained(args.backbone_name_or_path, **args.hub_kwargs)
        if not isinstance(config, VisionBigBirdConfig):
            raise InvalidArgument(
                f"--backbone_name_or_path {args.backbone_name_or_path} holds a {config.model_type} model, not "
                "vision_bigbird"
            )
        config.out_features = out_features
        return config
    overrides = parse_config_overrides(args.config_overrides) if args.config_overrides else {}
    try:
        return VisionBigBirdConfig.from_preset(args.model_preset or "tiny", **overrides, out_features=out_features)
    except (TypeError, ValueError) as error:  # unknown field, or a value the config refuses
        raise InvalidArgument(f"--config_overrides {args.config_overrides}: {error}") from None


def load_backbone_weights(backbone: VisionBigBirdBackbone, args: BackboneArguments):
    """Copy the stem and encoder of --backbone_name_or_path into `backbone` (built from that folder's config) and log
    what was left out (a classification head, a pretraining decoder and mask token) and what is new."""
    source, info = VisionBigBirdBackbone.from_pretrained(
        args.backbone_name_or_path, out_features=backbone.config.out_features, output_loading_info=True,
        **args.hub_kwargs,
    )  # fmt: skip
    backbone.load_state_dict(source.state_dict())
    loaded = len(source.state_dict()) - len(info["missing_keys"])
    if loaded == 0:
        raise InvalidArgument(f"--backbone_name_or_path {args.backbone_name_or_path} holds no Vision Big Bird weights")
    logger.info(
        f"Backbone from {args.backbone_name_or_path}: {loaded} tensors loaded; left out (not part of the backbone): "
        f"{sorted(info['unexpected_keys']) or 'none'}; newly initialised: {sorted(info['missing_keys']) or 'none'}"
    )


# ---- Semantic segmentation: ADE20K's layout, label-map checks, metrics ----------------------------------------------
IGNORE_INDEX = 255  # label of ignored pixels, in the loss (UperNet's loss_ignore_index) and in the metrics
ADE20K_SPLITS = {"train": "training", "validation": "validation"}  # ADEChallengeData2016's folder per split


def reduce_labels(label_map: np.ndarray) -> np.ndarray:
    """ADE20K's label reduction (mmseg `reduce_zero_label`, SegformerImageProcessor `do_reduce_labels`): 0 ("other")
    becomes ignored, every other class moves down by one, an ignored 255 stays ignored."""
    reduced = label_map.astype(np.int64) - 1  # (H, W)
    reduced[(label_map == 0) | (label_map == IGNORE_INDEX)] = IGNORE_INDEX
    return reduced


def read_ade20k_class_names(data_dir: str) -> list[str] | None:
    """The class names of objectInfo150.txt (tab-separated Idx Ratio Train Val Name, classes 1..N), or None."""
    path = os.path.join(data_dir, "objectInfo150.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        rows = [line.rstrip("\n").split("\t") for line in file if line.strip()][1:]  # the header row left out
    if [int(row[0]) for row in rows] != list(range(1, len(rows) + 1)):
        raise InvalidArgument(f"{path}: the Idx column must count 1, 2, ... {len(rows)}")
    return [row[-1].split(";")[0].strip() for row in rows]  # ADE20K's names list synonyms after ";"


def ade20k_split_files(data_dir: str, split: str) -> list[tuple[str, str]]:
    """(image, annotation) paths of a split in ADE20K's layout: `images/<folder>/NAME.jpg` with
    `annotations/<folder>/NAME.png`. Refuses a missing or empty folder, and an image or annotation without its pair."""
    folders = [os.path.join(data_dir, kind, ADE20K_SPLITS[split]) for kind in ("images", "annotations")]
    for folder in folders:
        if not os.path.isdir(folder):
            raise InvalidArgument(f"--data_dir {data_dir}: no {split} folder {folder} (ADE20K's layout)")
    images = {os.path.splitext(name)[0]: name for name in os.listdir(folders[0]) if not name.startswith(".")}
    annotations = {os.path.splitext(name)[0]: name for name in os.listdir(folders[1]) if name.endswith(".png")}
    if not images:
        raise InvalidArgument(f"--data_dir {data_dir}: the {split} folder {folders[0]} holds no images")
    unpaired = [os.path.join(folders[0], images[stem]) + ": no annotation " + os.path.join(folders[1], stem + ".png")
                for stem in sorted(images.keys() - annotations.keys())]  # fmt: skip
    unpaired += [os.path.join(folders[1], annotations[stem]) + f": no image {stem}.* in {folders[0]}"
                 for stem in sorted(annotations.keys() - images.keys())]  # fmt: skip
    if unpaired:
        raise InvalidArgument(problem_list(f"{len(unpaired)} unpaired {split} files", unpaired))
    return [
        (os.path.join(folders[0], images[stem]), os.path.join(folders[1], stem + ".png")) for stem in sorted(images)
    ]


def problem_list(title: str, problems: list[str], shown: int = 10) -> str:
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{title}:\n  " + "\n  ".join(problems[:shown]) + more


def check_label_map(
    name: str, image_size: tuple[int, int], label_map: np.ndarray, max_label: int | None
) -> str | None:
    """What is wrong with one annotation (as read from its PNG: raw values, before any reduction), or None.
    `image_size` is (width, height) as PIL gives it; values above `max_label` (other than 255, ignored) are refused."""
    if label_map.ndim != 2:
        return f"{name}: the label map has shape {label_map.shape}; it must be one channel (a mode L or P PNG)"
    if (label_map.shape[1], label_map.shape[0]) != tuple(image_size):
        size = f"{label_map.shape[1]}x{label_map.shape[0]}"
        return f"{name}: the label map is {size} (width x height) but its image is {image_size[0]}x{image_size[1]}"
    values = np.unique(label_map)
    beyond = values[(values > max_label) & (values != IGNORE_INDEX)] if max_label is not None else values[:0]
    if len(beyond):
        return f"{name}: label values {beyond.tolist()} are beyond the classes (0-{max_label}, and 255 ignored)"
    return None


class SegmentationMetrics:
    """Mean IoU, mean accuracy and overall accuracy over a whole evaluation set, as mmseg and `evaluate`'s mean_iou
    compute them: one confusion matrix accumulated over every pixel (torchmetrics, label 255 ignored), then per class
    IoU = TP / (TP + FP + FN) and accuracy = TP / (TP + FN); a class with no pixel in the targets and none predicted has
    no IoU, a class with no pixel in the targets has no accuracy, and the means leave them out.

    Called by the Trainer with `batch_eval_metrics=True`: once per batch, the result on the last one.
    """

    def __init__(self, id2label: dict[int, str]):
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.id2label = id2label
        self.confusion = MulticlassConfusionMatrix(len(id2label), ignore_index=IGNORE_INDEX, validate_args=False)

    def update(self, predictions: torch.Tensor, labels: torch.Tensor):
        """predictions, labels: (B, H, W) class indices (labels may hold 255)."""
        self.confusion.update(predictions.reshape(-1).cpu(), labels.reshape(-1).long().cpu())

    def compute(self) -> dict[str, float]:
        confusion = self.confusion.compute().double()  # (K, K): rows target, columns prediction
        self.confusion.reset()
        true_positives, targets, predicted = confusion.diag(), confusion.sum(1), confusion.sum(0)  # (K,) each
        iou = true_positives / (targets + predicted - true_positives)  # nan where the class is absent from both
        accuracy = true_positives / targets  # nan where the class is absent from the targets
        metrics = {
            "mean_iou": iou.nanmean().item(),
            "mean_accuracy": accuracy.nanmean().item(),
            "overall_accuracy": (true_positives.sum() / targets.sum()).item(),
        }
        # per class, for the classes present (no NaN in all_results.json)
        metrics |= {
            f"iou_{self.id2label[index]}": value for index, value in enumerate(iou.tolist()) if not math.isnan(value)
        }
        return metrics

    def __call__(self, eval_prediction, compute_result: bool = True) -> dict[str, float] | None:
        self.update(torch.as_tensor(eval_prediction.predictions), torch.as_tensor(eval_prediction.label_ids))
        return self.compute() if compute_result else None
