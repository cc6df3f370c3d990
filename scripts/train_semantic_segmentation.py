"""Train and evaluate UperNet on a Vision Big Bird backbone for semantic segmentation, in the shape of transformers'
`examples/pytorch/semantic-segmentation/run_semantic_segmentation.py` (same flags, `Trainer`).

    python scripts/train_semantic_segmentation.py --data_dir ADEChallengeData2016 --do_reduce_labels \\
        --recipe ade20k --model_preset tiny --output_dir runs/upernet-ade20k --do_train --do_eval

Data: `--data_dir` in ADE20K's own layout, or `--dataset_name` (a Hub dataset such as scene_parse_150, or a local
`save_to_disk`/parquet folder) with image and annotation columns. Every annotation is checked before training.
Metrics (mean IoU, mean accuracy, overall accuracy, IoU per class) go to `all_results.json`; the output folder reloads
with `AutoModelForSemanticSegmentation` and serves `pipeline("image-segmentation")`. Docs:
docs/dense_prediction.md.
"""

import io
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import numpy as np
import PIL.Image
import torch
import transformers
from dense_common import (
    IGNORE_INDEX,
    BackboneArguments,
    SegmentationMetrics,
    ade20k_split_files,
    build_backbone_config,
    check_label_map,
    check_model_arguments,
    load_backbone_weights,
    problem_list,
    read_ade20k_class_names,
    reduce_labels,
)
from torchvision import tv_tensors
from torchvision.transforms import v2
from training_common import (
    InvalidArgument,
    arg,
    detect_last_checkpoint,
    read_recipe,
    save_resolved_arguments,
    setup_logging,
)
from transformers import (
    AutoImageProcessor,
    AutoModelForSemanticSegmentation,
    SegformerImageProcessor,
    Trainer,
    TrainingArguments,
    UperNetConfig,
    UperNetForSemanticSegmentation,
    default_data_collator,
)

import vision_bigbird_hf  # noqa: F401  (registers Vision Big Bird with AutoConfig and AutoBackbone)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(BackboneArguments):
    """The backbone (dense_common.BackboneArguments) and the UperNet head on it."""

    head_hidden_size: int = arg(512, "Channels of UperNet's decode head (UperNetConfig.hidden_size).")
    auxiliary_head_channels: int = arg(256, "Channels of UperNet's auxiliary FCN head on stage 3.")
    auxiliary_loss_weight: float = arg(0.4, "Weight of the auxiliary head's loss (0: no auxiliary head).")
    drop_path_rate: float | None = arg(None, "Stochastic depth of a new backbone (None: its config's).")


@dataclass
class DataTrainingArguments:
    dataset_name: str | None = arg(None, "A Hub dataset (scene_parse_150) or a local datasets folder.")
    dataset_config_name: str | None = arg(None, "The configuration name of the dataset.")
    data_dir: str | None = arg(None, "A folder in ADE20K's layout: images/, annotations/ with training/, validation/.")
    train_val_split: float | None = arg(0.15, "Fraction of train split off for validation when there is none.")
    max_train_samples: int | None = arg(None, "Truncate the training set to this many samples.")
    max_eval_samples: int | None = arg(None, "Truncate the evaluation set to this many samples.")
    overwrite_output_dir: bool = arg(False, "Start anew in a non-empty output_dir instead of resuming from it.")
    do_reduce_labels: bool = arg(False, "Label 0 becomes ignored (255), the others move down by one (ADE20K).")
    image_height: int = arg(512, "Height of training crops and of evaluation images (the image processor's size).")
    image_width: int = arg(512, "Width of training crops and of evaluation images.")
    resize_base: list[int] | None = field(
        default=None,
        metadata={"help": "Training rescale base (long short), as mmseg's img_scale (None: the image's own size).",
                  "nargs": 2},
    )  # fmt: skip
    min_scale: float = arg(0.5, "Smallest random rescale ratio of training images.")
    max_scale: float = arg(2.0, "Largest random rescale ratio of training images.")
    recipe: str = arg("none", "ade20k: Swin's UperNet ADE20K setting for flags not given.", choices=["ade20k", "none"])
    plot_predictions: str | None = arg(None, "Save a PNG of validation images, ground truth and prediction here.")


def load_splits(data_args: DataTrainingArguments, seed: int) -> datasets.DatasetDict:
    """The train and validation splits, with an `image` and a `label` column of (undecoded) images."""
    if (data_args.data_dir is None) == (data_args.dataset_name is None):
        raise InvalidArgument("give one of --data_dir (ADE20K's layout) and --dataset_name")
    if data_args.data_dir is not None:
        columns = {
            split: dict(zip(("image", "label"), zip(*ade20k_split_files(data_args.data_dir, split))))
            for split in ("train", "validation")
        }
        dataset = datasets.DatasetDict({split: datasets.Dataset.from_dict(data) for split, data in columns.items()})
    elif os.path.isfile(os.path.join(data_args.dataset_name, "dataset_dict.json")):
        dataset = datasets.load_from_disk(data_args.dataset_name)
    else:
        dataset = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    renames = {"pixel_values": "image", "annotation": "label"}  # scene_parse_150's names, as the example renames
    dataset = dataset.rename_columns(
        {old: new for old, new in renames.items() if old in dataset["train"].column_names}
    )
    if "validation" not in dataset and data_args.train_val_split:
        split = dataset["train"].train_test_split(data_args.train_val_split, seed=seed)
        dataset = datasets.DatasetDict({"train": split["train"], "validation": split["test"]})
    for split in dataset:
        if len(dataset[split]) == 0:
            raise InvalidArgument(f"the {split} split of {data_args.data_dir or data_args.dataset_name} is empty")
        dataset[split] = dataset[split].cast_column("image", datasets.Image(decode=False))
        dataset[split] = dataset[split].cast_column("label", datasets.Image(decode=False))
    return dataset


def read_id2label(data_args: DataTrainingArguments, model_args: ModelArguments) -> dict[int, str] | None:
    """Class names after reduction: objectInfo150.txt (ADE20K layout), the dataset's id2label.json (the example's
    convention) or the trained model's; None when nothing names them (the largest label value then counts them)."""
    if data_args.data_dir is not None:
        names = read_ade20k_class_names(data_args.data_dir)
        if names is not None:
            return dict(enumerate(names if data_args.do_reduce_labels else ["other", *names]))
    elif os.path.isdir(data_args.dataset_name):
        path = os.path.join(data_args.dataset_name, "id2label.json")
        if os.path.isfile(path):
            with open(path) as file:
                return {int(index): name for index, name in json.load(file).items()}
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError

        repo, file_name = (data_args.dataset_name, "id2label.json")
        if repo == "scene_parse_150":  # as the example: ADE20K's names from huggingface/label-files
            repo, file_name = ("huggingface/label-files", "ade20k-id2label.json")
        try:
            with open(hf_hub_download(repo, file_name, repo_type="dataset")) as file:
                return {int(index): label for index, label in json.load(file).items()}
        except (OSError, HfHubHTTPError) as error:  # no such file or repository, or offline
            logger.warning(f"No class names from {repo}/{file_name} ({type(error).__name__})")
    if model_args.model_name_or_path is not None:
        config = transformers.AutoConfig.from_pretrained(model_args.model_name_or_path, **model_args.hub_kwargs)
        return {int(index): name for index, name in config.id2label.items()}
    return None


def open_file(value: dict):  # a datasets.Image(decode=False) value: a path, or the file's bytes
    return PIL.Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])


def read_label_map(value: dict, do_reduce_labels: bool) -> np.ndarray:
    label_map = np.array(open_file(value))  # (H, W)
    return reduce_labels(label_map) if do_reduce_labels else label_map.astype(np.int64)


def check_annotations(dataset: datasets.DatasetDict, max_label: int | None) -> int:
    """Read every annotation once, before training: a size that differs from its image's, label values beyond the
    classes. Raise one error naming every bad file; return the largest label value seen (255 left out)."""
    problems, largest = [], 0
    for split in dataset:
        for index, row in enumerate(dataset[split]):
            name = row["label"].get("path") or f"{split}[{index}] annotation"
            try:
                with open_file(row["image"]) as image, open_file(row["label"]) as label:
                    image_size, label_map = image.size, np.asarray(label)
            except (OSError, PIL.UnidentifiedImageError) as error:
                problems.append(f"{name}: cannot be read ({error})")
                continue
            problem = check_label_map(name, image_size, label_map, max_label)
            if problem is not None:
                problems.append(problem)
            largest = max(largest, int(label_map[label_map != IGNORE_INDEX].max(initial=0)))
    if problems:
        raise InvalidArgument(problem_list(f"{len(problems)} bad annotations", problems))
    return largest


def random_rescale_size(height: int, width: int, data_args: DataTrainingArguments) -> list[int]:
    """mmseg's Resize(img_scale=(long, short), ratio_range, keep_ratio=True): the largest size, at the image's aspect
    ratio, whose long and short sides fit a random ratio of the base (the image's own size by default)."""
    ratio = torch.empty(()).uniform_(data_args.min_scale, data_args.max_scale).item()
    long_side, short_side = data_args.resize_base or (max(height, width), min(height, width))
    factor = ratio * min(long_side / max(height, width), short_side / min(height, width))
    return [max(1, round(height * factor)), max(1, round(width * factor))]


def build_train_transform(data_args: DataTrainingArguments, image_processor):
    """Rescale 0.5-2.0x, crop (padded with 255 labels), flip, photometric distortion, normalization."""
    crop = v2.RandomCrop(
        (data_args.image_height, data_args.image_width), pad_if_needed=True,
        fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX},
    )  # fmt: skip
    # mmseg PhotoMetricDistortion: each with probability 0.5; brightness +-32 levels (here a factor), hue +-18 of 180
    photometric = [
        v2.RandomApply([v2.ColorJitter(**{name: value})], p=0.5)
        for name, value in (("brightness", 0.25), ("contrast", 0.5), ("saturation", 0.5), ("hue", 0.1))
    ]
    after_resize = v2.Compose(
        [crop, v2.RandomHorizontalFlip(0.5), *photometric, v2.ToDtype(torch.float32, scale=True),
         v2.Normalize(image_processor.image_mean, image_processor.image_std)]
    )  # fmt: skip

    def transform(batch):
        pixel_values, labels = [], []
        for image, label in zip(batch["image"], batch["label"]):
            image_tensor = v2.functional.pil_to_tensor(open_file(image).convert("RGB"))  # (3, H, W) uint8
            mask = tv_tensors.Mask(torch.from_numpy(read_label_map(label, data_args.do_reduce_labels)))  # (H, W)
            size = random_rescale_size(*image_tensor.shape[-2:], data_args)
            resized = v2.functional.resize(tv_tensors.Image(image_tensor), size), v2.functional.resize(mask, size)
            image_tensor, mask = after_resize(*resized)
            pixel_values.append(image_tensor)
            labels.append(mask.as_subclass(torch.Tensor).long())
        return {"pixel_values": pixel_values, "labels": labels}

    return transform


def build_eval_transform(image_processor):
    """Resize to the processor's size, as at inference (labels: nearest, reduced as the processor is told)."""

    def transform(batch):
        images = [open_file(image).convert("RGB") for image in batch["image"]]
        labels = [np.array(open_file(label)) for label in batch["label"]]  # (H, W) each
        encoding = image_processor(images, segmentation_maps=labels, return_tensors="pt")
        return {"pixel_values": list(encoding["pixel_values"]), "labels": list(encoding["labels"].long())}

    return transform


def build_model(model_args: ModelArguments, id2label: dict[int, str], data_args: DataTrainingArguments):
    """A trained segmentation folder, or a new UperNet on a new (or --backbone_name_or_path) Vision Big Bird."""
    label2id = {name: index for index, name in id2label.items()}
    size = {"height": data_args.image_height, "width": data_args.image_width}
    if model_args.model_name_or_path is not None:
        model = AutoModelForSemanticSegmentation.from_pretrained(
            model_args.model_name_or_path, id2label=id2label, label2id=label2id, **model_args.hub_kwargs
        )
        image_processor = AutoImageProcessor.from_pretrained(
            model_args.model_name_or_path, do_reduce_labels=data_args.do_reduce_labels, size=size,
            **model_args.hub_kwargs,
        )  # fmt: skip
        return model, image_processor
    backbone_config = build_backbone_config(model_args, out_features=["stage1", "stage2", "stage3", "stage4"])
    if model_args.drop_path_rate is not None:
        backbone_config.drop_path_rate = model_args.drop_path_rate
    config = UperNetConfig(
        backbone_config=backbone_config, num_labels=len(id2label), id2label=id2label, label2id=label2id,
        hidden_size=model_args.head_hidden_size, auxiliary_channels=model_args.auxiliary_head_channels,
        use_auxiliary_head=model_args.auxiliary_loss_weight > 0, auxiliary_loss_weight=model_args.auxiliary_loss_weight,
        loss_ignore_index=IGNORE_INDEX,
    )  # fmt: skip
    model = UperNetForSemanticSegmentation(config)
    if model_args.backbone_name_or_path is not None:
        load_backbone_weights(model.backbone, model_args)
    return model, SegformerImageProcessor(size=size, do_reduce_labels=data_args.do_reduce_labels)


def plot_predictions(model, image_processor, dataset, path: str, num_images: int = 6):
    """Image, ground truth and prediction of the first validation images, colored by class, with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    id2label, num_images = model.config.id2label, min(num_images, len(dataset))
    colors = plt.get_cmap("tab20")(np.arange(len(id2label)) % 20)[:, :3]  # (K, 3)
    figure, axes = plt.subplots(3, num_images, figsize=(1.6 * num_images, 5.4), squeeze=False)
    model.eval()
    for column, row in enumerate(dataset.select(range(num_images))):
        image = open_file(row["image"]).convert("RGB")
        with torch.no_grad():
            outputs = model(pixel_values=image_processor(image, return_tensors="pt")["pixel_values"].to(model.device))
        prediction = image_processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
        prediction = prediction.cpu()  # (H, W)
        target = torch.from_numpy(read_label_map(row["label"], image_processor.do_reduce_labels))  # (H, W)
        target_colors = np.where((target == IGNORE_INDEX)[..., None], 1.0, colors[target.clamp(max=len(colors) - 1)])
        panels = (np.asarray(image), target_colors, colors[prediction])  # ignored pixels (255) in white
        for axis, panel, title in zip(axes[:, column], panels, ("image", "ground truth", "prediction")):
            axis.imshow(panel)
            axis.set_axis_off()
            axis.set_title(title, fontsize=8)
    handles = [Patch(color=colors[index], label=name) for index, name in id2label.items()]
    figure.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=80)
    plt.close(figure)
    logger.info(f"Predictions on {num_images} validation images saved to {path}")


def main(args: list[str] | None = None):
    parser = transformers.HfArgumentParser(
        (ModelArguments, DataTrainingArguments, TrainingArguments), allow_abbrev=False
    )
    args = sys.argv[1:] if args is None else args
    read_recipe(parser, args)  # --recipe ade20k: scripts/recipes/ade20k.json's values; a flag given always wins
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=args)
    setup_logging(training_args)
    training_args.remove_unused_columns = False  # the transforms read the image and label columns
    training_args.batch_eval_metrics = True  # the confusion matrix accumulates per batch; logits are never all kept
    check_model_arguments(model_args)
    if not 0 < data_args.min_scale <= data_args.max_scale:
        raise InvalidArgument(
            f"--min_scale {data_args.min_scale} and --max_scale {data_args.max_scale}: need 0 < min <= max"
        )
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)

    dataset = load_splits(data_args, training_args.seed)
    id2label = read_id2label(data_args, model_args)
    max_label = None if id2label is None else len(id2label) - 1 + int(data_args.do_reduce_labels)
    largest = check_annotations(dataset, max_label)
    if id2label is None:  # classes counted from the annotations
        id2label = {index: f"class_{index}" for index in range(largest + 1 - int(data_args.do_reduce_labels))}
    logger.info(
        f"{len(id2label)} classes: {list(id2label.values())}; splits: { {s: len(d) for s, d in dataset.items()} }"
    )
    model, image_processor = build_model(model_args, id2label, data_args)

    samples = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    for split, limit in samples.items():
        if split in dataset and limit is not None:
            dataset[split] = (
                dataset[split].shuffle(seed=training_args.seed).select(range(min(limit, len(dataset[split]))))
            )
    if training_args.do_train:
        dataset["train"].set_transform(build_train_transform(data_args, image_processor))
    if training_args.do_eval and "validation" not in dataset:
        raise InvalidArgument("--do_eval needs a validation split (or --train_val_split > 0)")
    if "validation" in dataset:
        dataset["validation"].set_transform(build_eval_transform(image_processor))
    if training_args.should_save:
        save_resolved_arguments(training_args.output_dir, model_args, data_args, training_args)

    trainer = Trainer(
        model=model, args=training_args, data_collator=default_data_collator,
        train_dataset=dataset["train"] if training_args.do_train else None,
        eval_dataset=dataset.get("validation") if training_args.do_eval else None,
        compute_metrics=SegmentationMetrics(id2label), processing_class=image_processor,
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(dim=1),  # (B, H, W)
    )  # fmt: skip
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if data_args.plot_predictions and trainer.is_world_process_zero():
        dataset["validation"].reset_format()
        plot_predictions(trainer.model, image_processor, dataset["validation"], data_args.plot_predictions)


if __name__ == "__main__":
    try:
        main()
    except InvalidArgument as error:
        sys.exit(f"train_semantic_segmentation.py: error: {error}")
