"""Train or fine-tune an image classifier with the `Trainer`, as transformers' `run_image_classification.py` example
(same argument names and flow): Vision Big Bird, or any `AutoConfig` peer (`--model_type swin|pvt_v2|convnext|vit`).
Data, the `--recipe imagenet` flags, exact resume, multi-GPU commands and the output folder: docs/training.md.

    python scripts/train_image_classification.py --model_preset tiny --image_size 32 --min_crop_scale 0.5 \
        --output_dir runs/fmnist-tiny --do_train --do_eval --do_predict --num_train_epochs 10
"""

import contextlib
import itertools
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field

import datasets
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
import torchvision
import transformers
from datasets import ClassLabel, DatasetDict, load_dataset
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR, load_fashion_mnist
from huggingface_hub.errors import HFValidationError, StrictDataclassError
from huggingface_hub.utils import validate_repo_id
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.transforms import InterpolationMode, v2
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import SizeDict, pil_torch_interpolation_mapping
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SchedulerType, sort_checkpoints

# importing the package registers Vision Big Bird with AutoConfig, AutoModelForImageClassification, AutoImageProcessor
from vision_bigbird_hf import PRESETS, VisionBigBirdImageProcessor
from vision_bigbird_hf.image_decoding import to_8bit

logger = logging.getLogger(__name__)

# Swin's ImageNet-1k recipe (microsoft/Swin-Transformer configs) with DeiT's augmentation (facebookresearch/deit)
IMAGENET_RECIPE = {
    "min_crop_scale": 0.08,  # RandomResizedCrop scale (0.08, 1), bicubic: timm create_transform, DeiT, Swin
    "rand_augment": "rand-m9-n2",  # Swin/DeiT AUTO_AUGMENT rand-m9-mstd0.5-inc1 (torchvision has no mstd noise)
    "mixup_alpha": 0.8,  # Swin AUG.MIXUP, DeiT --mixup
    "cutmix_alpha": 1.0,  # Swin AUG.CUTMIX, DeiT --cutmix
    "mixup_switch_prob": 0.5,  # Swin AUG.MIXUP_SWITCH_PROB, DeiT --mixup-switch-prob: CutMix instead of Mixup
    "random_erasing_prob": 0.25,  # Swin AUG.REPROB, DeiT --reprob (mode "pixel": random normal values)
    "ema_decay": 0.0,  # Swin trains without EMA (MODEL_EMA False); DeiT's --model-ema-decay is 0.99996
}
IMAGENET_TRAINING_ARGUMENTS = {
    "label_smoothing_factor": 0.1,  # Swin MODEL.LABEL_SMOOTHING, DeiT --smoothing
    "weight_decay": 0.05,  # Swin TRAIN.WEIGHT_DECAY, DeiT --weight-decay; AdamW betas (0.9, 0.999), eps 1e-8
    "max_grad_norm": 5.0,  # Swin TRAIN.CLIP_GRAD (DeiT: no clipping)
    "lr_scheduler_type": "cosine_with_min_lr",
    "lr_scheduler_kwargs": {"min_lr_rate": 0.01},  # down to Swin TRAIN.MIN_LR 5e-6 of TRAIN.BASE_LR 5e-4
    "warmup_steps": 20 / 300,  # Swin TRAIN.WARMUP_EPOCHS 20 of TRAIN.EPOCHS 300, as a fraction of the run
}
IMAGENET_LEARNING_RATE_PER_1024_IMAGES = 1e-3  # Swin TRAIN.BASE_LR 5e-4 per 512 images, DeiT --lr 5e-4 per 512
PRESET_DROP_PATH_RATE = {"tiny": 0.2, "small": 0.3, "base": 0.5}  # Swin-T/S/B's MODEL.DROP_PATH_RATE
SPLIT_FLAGS = {"train": "do_train", "validation": "do_eval", "test": "do_predict"}
SPLITS = tuple(SPLIT_FLAGS)
SPLIT_DIR_FLAGS = {"train": "train_dir", "validation": "validation_dir", "test": "test_dir"}


class InvalidArgument(ValueError):
    """A command-line value the script refuses; the message names the flag, path or value and what to do."""


def arg(default, help_text: str, **metadata):  # a dataclass field with its --help text, as HfArgumentParser reads it
    return field(default=default, metadata={"help": help_text, **metadata})


@dataclass
class DataTrainingArguments:
    """The data; without --dataset_name and image folders, Fashion-MNIST from the local Debian package files."""

    dataset_name: str | None = arg(None, "A dataset of the Hub or a local dataset path (`datasets.load_dataset`).")
    dataset_config_name: str | None = arg(None, "The configuration name of the dataset.")
    train_dir: str | None = arg(None, "A folder of training images, one sub-folder per class.")
    validation_dir: str | None = arg(None, "A folder of validation images, one sub-folder per class.")
    test_dir: str | None = arg(None, "A folder of test images, one sub-folder per class.")
    fashion_mnist_dir: str = arg(DEFAULT_FASHION_MNIST_DIR, "Folder of the Fashion-MNIST IDX files (no data given).")
    train_val_split: float = arg(0.1, "Fraction (< 1) or count (>= 1) of train split off as validation if none.")
    max_train_samples: int | None = arg(None, "Truncate the training set to this many examples (seeded subset).")
    max_eval_samples: int | None = arg(None, "Truncate the validation set to this many examples (seeded subset).")
    max_predict_samples: int | None = arg(None, "Truncate the test set to this many examples (seeded subset).")
    image_column_name: str = arg("image", "The dataset column holding the images.")
    label_column_name: str = arg("label", "The dataset column holding the labels.")
    check_images: bool = arg(True, "Decode every image before training and drop (and list) the unreadable ones.")
    streaming: bool = arg(False, "Stream the dataset instead of preparing an Arrow copy; needs --max_steps.")
    shuffle_buffer_size: int = arg(1000, "With --streaming: examples held for shuffling.")
    preprocessing_num_workers: int | None = arg(None, "Processes for the image check (`Dataset.map(num_proc=...)`).")
    overwrite_output_dir: bool = arg(False, "Start anew in a non-empty output_dir instead of resuming from it.")


@dataclass
class ModelArguments:
    """Which model, config and image processor to fine-tune, or to train from scratch."""

    model_name_or_path: str | None = arg(None, "A saved model folder or Hub model id to fine-tune.")
    model_type: str = arg("vision_bigbird", "Type of a new model (`AutoConfig.for_model`), e.g. swin, pvt_v2, vit.")
    model_preset: str | None = arg(None, "Size of a new Vision Big Bird (None: tiny).", choices=sorted(PRESETS))
    config_overrides: str | None = arg(None, "A JSON object set on the new config, e.g. '{\"depths\": [1, 1, 1, 1]}'.")
    config_name: str | None = arg(None, "Pretrained config name or path if not the same as model_name.")
    image_processor_name: str | None = arg(None, "Image processor name or path (default: the model's, or a new one).")
    image_size: int | None = arg(None, "Train and evaluate on image_size x image_size inputs (processor and config).")
    cache_dir: str | None = arg(None, "Where to store the models and datasets downloaded from the Hub.")
    model_revision: str = arg("main", "The model version to use (branch name, tag name or commit id).")
    token: str | None = arg(None, "The token for remote files (default: the `hf auth login` one).")
    trust_remote_code: bool = arg(False, "Whether to trust the execution of code from models defined on the Hub.")
    ignore_mismatched_sizes: bool = arg(False, "Load a pretrained model whose head has another size.")

    @property
    def hub_kwargs(self) -> dict:
        kwargs = {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token}
        return kwargs | {"trust_remote_code": self.trust_remote_code}


@dataclass
class RecipeArguments:
    """The training recipe: augmentation, Mixup/CutMix and weight EMA. `--recipe imagenet` sets what is not given."""

    recipe: str = arg("none", "imagenet: DeiT/Swin's ImageNet-1k recipe, or none.", choices=["imagenet", "none"])
    min_crop_scale: float = arg(0.08, "Smallest area fraction of RandomResizedCrop, in (0, 1].")
    rand_augment: str | None = arg(None, "RandAugment in timm's notation, e.g. rand-m9-n2; none: off.")
    mixup_alpha: float = arg(0.0, "Mixup Beta(alpha, alpha); 0: off.")
    cutmix_alpha: float = arg(0.0, "CutMix Beta(alpha, alpha); 0: off.")
    mixup_switch_prob: float = arg(0.5, "With both Mixup and CutMix on, probability of CutMix.")
    random_erasing_prob: float = arg(0.0, "Probability of random erasing per image; 0: off.")
    ema_decay: float = arg(0.0, "Decay of a weight EMA, evaluated and saved; 0: off.")


def image_folder_files(flag: str, folder: str, needs_classes: bool) -> dict[str, list[str]]:
    """{class: its image files} of an image folder, whose classes are its sub-folders. Other files (notes, a
    metadata.csv) are left out. Refused: a missing folder, no image, one class only in a training folder, images
    directly in the folder or in a nested sub-folder (datasets' imagefolder would label those by their own folder)."""
    if not os.path.isdir(folder):
        raise InvalidArgument(f"{flag} {folder}: no such folder")
    extensions, files = tuple(ImageFolder.EXTENSIONS), {}
    for root, subfolders, names in os.walk(folder):
        subfolders.sort()  # the same first offender in every message
        images = sorted(os.path.join(root, name) for name in names if name.lower().endswith(extensions))
        relative = os.path.relpath(root, folder)
        if images and relative == os.curdir:
            raise InvalidArgument(
                f"{flag} {folder} holds images directly ({os.path.basename(images[0])}, ...): put each image in a "
                "sub-folder named after its class"
            )
        if images and os.sep in relative:
            raise InvalidArgument(
                f"{flag} {folder}: images in the nested folder {relative}; the classes are the sub-folders of {flag} "
                f"({relative.split(os.sep)[0]!r} here): move these images into {relative.split(os.sep)[0]}"
            )
        if images:
            files[relative] = images
    if not files:
        raise InvalidArgument(f"{flag} {folder} holds no image files ({', '.join(extensions[:6])}, ...)")
    if needs_classes and len(files) < 2:
        raise InvalidArgument(
            f"{flag} {folder} has images of one class only ({next(iter(files))!r}): a sub-folder per class"
        )
    return files


def check_local_path(flag: str, name: str):
    """A `--model_name_or_path` that is no folder and cannot be a Hub id (or names a folder under an existing local
    one) is a missing local folder: say so, instead of letting the Hub report a bad id or no connection."""
    if os.path.isdir(name):
        return
    try:
        validate_repo_id(name)
        is_repo_id = not (os.path.exists(name) or os.path.isdir(os.path.dirname(name)) or name.startswith(("./", "~")))
    except HFValidationError:
        is_repo_id = False
    if not is_repo_id:
        raise InvalidArgument(f"{flag} {name}: no such folder (and not a Hub model id)")


AT_LEAST_ONE = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
AT_LEAST_ONE += ("max_train_samples", "max_eval_samples", "max_predict_samples")
VALUE_RULES = {  # flag: (accepts its value, what "--flag value" must be)
    "num_train_epochs": (lambda v: v >= 0, "must not be negative"),
    "max_steps": (lambda v: v >= -1, "must be positive (or -1: use epochs)"),
    **dict.fromkeys(AT_LEAST_ONE, (lambda v: v is None or v >= 1, "must be at least 1")),
    "train_val_split": (lambda v: v >= 0, "must not be negative"),
    "image_size": (lambda v: v is None or v >= 1, "must be positive"),
    "min_crop_scale": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    **dict.fromkeys(["mixup_alpha", "cutmix_alpha"], (lambda v: v >= 0, "must not be negative (0: off)")),
    **dict.fromkeys(["mixup_switch_prob", "random_erasing_prob"], (lambda v: 0 <= v <= 1, "must be in [0, 1]")),
    "ema_decay": (lambda v: 0 <= v < 1, "must be in [0, 1) (0: off)"),
}


def validate_arguments(model_args, data_args, recipe_args, training_args):
    """Refuse values that would crash later or silently train nothing, before any data or model is built."""
    values = {**vars(training_args), **vars(data_args), **vars(model_args), **vars(recipe_args)}
    for flag, (accepts, requirement) in VALUE_RULES.items():
        if not accepts(values[flag]):
            raise InvalidArgument(f"--{flag} {values[flag]} {requirement}")
    do_train, max_steps, streaming = training_args.do_train, training_args.max_steps, data_args.streaming
    if do_train and max_steps == 0:
        raise InvalidArgument("--max_steps 0 must be positive (or -1: use epochs)")
    if do_train and max_steps == -1 and training_args.num_train_epochs == 0:
        raise InvalidArgument("--num_train_epochs 0 with --do_train would save an untrained model")
    if streaming and data_args.dataset_name is None and data_args.train_dir is None:
        raise InvalidArgument("--streaming needs --dataset_name or --train_dir (Fashion-MNIST is built in memory)")
    if streaming and do_train and max_steps < 1:
        raise InvalidArgument("--streaming has no dataset length to count epochs with: give --max_steps")
    for flag in ("model_preset", "config_overrides"):
        if model_args.model_name_or_path is not None and values[flag] is not None:
            raise InvalidArgument(f"--{flag} builds a new model; it cannot be used with --model_name_or_path")
    if model_args.model_preset is not None and model_args.model_type != "vision_bigbird":
        raise InvalidArgument(f"--model_preset is for --model_type vision_bigbird, not {model_args.model_type}")
    parse_rand_augment(recipe_args.rand_augment)
    if os.path.exists(training_args.output_dir) and not os.path.isdir(training_args.output_dir):
        raise InvalidArgument(f"--output_dir {training_args.output_dir} is a file: give a folder to write the run to")
    if model_args.model_name_or_path is not None:
        check_local_path("--model_name_or_path", model_args.model_name_or_path)
    classes = {}
    for flag in ("train_dir", "validation_dir", "test_dir"):
        if data_args.dataset_name is None and values[flag] is not None:
            classes[flag] = set(image_folder_files(f"--{flag}", values[flag], needs_classes=flag == "train_dir"))
    for flag in ("validation_dir", "test_dir"):
        missing = sorted(classes.get(flag, set()) - classes["train_dir"]) if "train_dir" in classes else []
        if missing:
            raise InvalidArgument(
                f"--{flag} {values[flag]} has classes that --train_dir {data_args.train_dir} has not: {missing}; "
                "a model cannot learn a class without training images"
            )


def resolve_recipe(recipe_args: RecipeArguments, training_args: TrainingArguments, given: set[str]):
    """`--recipe imagenet`: its values for every recipe flag and `TrainingArguments` field not given explicitly."""
    if recipe_args.recipe != "imagenet":
        return
    for arguments, recipe in ((recipe_args, IMAGENET_RECIPE), (training_args, IMAGENET_TRAINING_ARGUMENTS)):
        for name, value in recipe.items():
            if name not in given and not (name == "lr_scheduler_kwargs" and "lr_scheduler_type" in given):
                setattr(arguments, name, SchedulerType(value) if name == "lr_scheduler_type" else value)
    if "learning_rate" not in given:
        global_batch_size = training_args.per_device_train_batch_size * training_args.world_size
        global_batch_size *= training_args.gradient_accumulation_steps
        training_args.learning_rate = IMAGENET_LEARNING_RATE_PER_1024_IMAGES * global_batch_size / 1024


def detect_last_checkpoint(training_args: TrainingArguments, overwrite_output_dir: bool) -> str | None:
    """The last complete checkpoint in output_dir to resume from, unless told to overwrite; refuse other content."""
    output_dir = training_args.output_dir
    if not (os.path.isdir(output_dir) and training_args.do_train) or overwrite_output_dir:
        return None
    checkpoints = sort_checkpoints(output_dir)  # checkpoint-<step> folders by step
    if not checkpoints and os.listdir(output_dir):
        raise InvalidArgument(
            f"--output_dir {output_dir} already exists and is not empty. Use --overwrite_output_dir to overcome."
        )
    # a checkpoint without trainer_state.json was cut short by a crash
    complete = [path for path in checkpoints if os.path.isfile(os.path.join(path, "trainer_state.json"))]
    if complete and training_args.resume_from_checkpoint is None:
        logger.info(
            f"Checkpoint detected, resuming training at {complete[-1]}. To avoid this behavior, change "
            "the `--output_dir` or add `--overwrite_output_dir` to train from scratch."
        )
    return complete[-1] if complete else None


def check_columns(dataset: DatasetDict, data_args: DataTrainingArguments) -> DatasetDict:
    """Check the image and label columns exist and the labels hold two classes or more; make them a `ClassLabel`."""
    features, label_column = next(iter(dataset.values())).features, data_args.label_column_name
    if features is None:
        raise InvalidArgument("--streaming: this dataset does not declare its features; leave --streaming out")
    for flag, name in [("image_column_name", data_args.image_column_name), ("label_column_name", label_column)]:
        if name not in features:
            raise InvalidArgument(
                f"--{flag} {name} not found in the dataset; set --{flag} to one of {', '.join(features)}"
            )
    if not isinstance(features[label_column], ClassLabel):
        if data_args.streaming:
            raise InvalidArgument(
                f"--streaming needs --label_column_name {label_column} to be a ClassLabel: leave --streaming out"
            )
        dataset = dataset.class_encode_column(label_column)
    names = next(iter(dataset.values())).features[label_column].names
    if len(names) < 2:
        raise InvalidArgument(
            f"--label_column_name {label_column} holds {len(names)} class ({names}): a classifier needs two or more"
        )
    return dataset


def decode_rgb(value: dict) -> np.ndarray:
    """A `datasets.Image` value ({"path", "bytes"}) -> (H, W, 3) uint8 RGB, converted as the image processors do
    (16-bit and float images scaled to 8 bits by their range, `to_8bit`)."""
    return convert_to_rgb(to_8bit(datasets.Image().decode_example(value)), return_numpy=True)


def try_decode_rgb(value: dict, split: str, index: int) -> tuple[np.ndarray | None, str, str]:
    """(`decode_rgb(value)` or None, why it failed or "", a name for the image: its path or split and index)."""
    name = value.get("path") or f"{split} example {index}"
    try:
        return decode_rgb(value), "", name
    except Exception as error:  # noqa: BLE001 (PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...)
        return None, f"{type(error).__name__}: {error}", name


def drop_unreadable_images(dataset, split: str, data_args: DataTrainingArguments):
    """Decode every image once before training; drop the ones that fail and log their count and first names."""

    def errors_and_names(values: list[dict], indices: list[int]) -> dict[str, list[str]]:
        checked = [try_decode_rgb(value, split, index)[1:] for value, index in zip(values, indices)]  # images dropped
        return {"error": [error for error, _ in checked], "name": [name for _, name in checked]}

    undecoded = dataset.cast_column(data_args.image_column_name, datasets.Image(decode=False))
    checked = undecoded.map(
        errors_and_names,
        input_columns=data_args.image_column_name,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        num_proc=data_args.preprocessing_num_workers,
        desc=f"Checking the {split} images",
    )
    bad = [index for index, error in enumerate(checked["error"]) if error]
    if not bad:
        return dataset
    listed = "; ".join(f"{checked[index]['name']} ({checked[index]['error']})" for index in bad[:10])
    if len(bad) == len(dataset):
        raise InvalidArgument(f"the {split} split has no readable image ({len(bad)} tried): {listed}")
    logger.warning(f"{len(bad)} unreadable image(s) in {split}, left out: {listed}{' ...' if len(bad) > 10 else ''}")
    return dataset.select(sorted(set(range(len(dataset))) - set(bad)))


def load_image_dataset(data_args: DataTrainingArguments, seed: int, cache_dir=None, token=None, used_splits=SPLITS):
    """`--dataset_name`, image folders or Fashion-MNIST: checked, a validation split carved from train if none, each
    split capped by --max_*_samples, the unreadable images of `used_splits` left out (`--check_images`)."""
    folders = {"train": data_args.train_dir, "validation": data_args.validation_dir, "test": data_args.test_dir}
    data_files = {  # the image files only: a notes file or metadata.csv beside them is not data
        split: sorted(itertools.chain(*image_folder_files(f"--{SPLIT_DIR_FLAGS[split]}", folder, False).values()))
        for split, folder in folders.items()
        if folder is not None and data_args.dataset_name is None
    }
    kwargs = {"cache_dir": cache_dir, "streaming": data_args.streaming}
    if data_args.dataset_name is not None:
        dataset = load_dataset(data_args.dataset_name, data_args.dataset_config_name, token=token, **kwargs)
    elif data_files:
        dataset = load_dataset("imagefolder", data_files=data_files, **kwargs)
    else:
        logger.info(f"No --dataset_name or image folder given: using Fashion-MNIST from {data_args.fashion_mnist_dir}")
        dataset = load_fashion_mnist(data_args.fashion_mnist_dir)
    dataset, fraction = check_columns(dataset, data_args), data_args.train_val_split
    # seeded, the same on every process (a stream cannot be split at random: --do_eval asks it for a validation split)
    if "validation" not in dataset and "train" in dataset and fraction > 0 and not data_args.streaming:
        split = dataset["train"].train_test_split(test_size=int(fraction) if fraction >= 1 else fraction, seed=seed)
        dataset["train"], dataset["validation"] = split["train"], split["test"]
    splits = [split for split in SPLITS if split in dataset] + [split for split in dataset if split not in SPLITS]
    dataset = DatasetDict({split: dataset[split] for split in splits})
    limits = [data_args.max_train_samples, data_args.max_eval_samples, data_args.max_predict_samples]
    for split, limit in zip(SPLITS, limits):  # a seeded random subset (of a stream: its first examples)
        if split in dataset and limit is not None and data_args.streaming:
            dataset[split] = dataset[split].take(limit)
        elif split in dataset and limit is not None and limit < len(dataset[split]):
            dataset[split] = dataset[split].shuffle(seed=seed).select(range(limit))
    if data_args.streaming and "train" in dataset:  # shuffled in a buffer, anew for each pass (`set_epoch`)
        dataset["train"] = dataset["train"].shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    # Fashion-MNIST, built from arrays, needs no check
    if data_args.check_images and not data_args.streaming and (data_args.dataset_name or data_files):
        for split in [split for split in used_splits if split in dataset]:
            dataset[split] = drop_unreadable_images(dataset[split], split, data_args)
    return dataset


def build_config(model_args: ModelArguments, recipe_args: RecipeArguments):
    """The model config: the saved model's, or a new `--model_type` one (preset, recipe drop path, overrides)."""
    if model_args.model_name_or_path is not None:
        name = model_args.config_name or model_args.model_name_or_path
        return AutoConfig.from_pretrained(name, **model_args.hub_kwargs)
    if model_args.model_type not in transformers.CONFIG_MAPPING:
        raise InvalidArgument(f"--model_type {model_args.model_type} is not an AutoConfig model type")
    config_class = transformers.CONFIG_MAPPING[model_args.model_type]
    text = model_args.config_overrides
    try:
        overrides = json.loads(text) if text else {}
    except json.JSONDecodeError as error:
        raise InvalidArgument(
            f"--config_overrides {text!r} is not valid JSON ({error}); give a JSON object such as "
            '\'{"depths": [1, 1, 2, 1], "drop_path_rate": 0.1}\''
        ) from None
    if not isinstance(overrides, dict):
        raise InvalidArgument(f"--config_overrides {text!r} must be a JSON object, not {type(overrides).__name__}")
    known_fields = set(config_class().to_dict()) | set(config_class.attribute_map)
    unknown = sorted(set(overrides) - known_fields)
    if unknown:
        raise InvalidArgument(f"--config_overrides: {unknown} are not fields of {config_class.__name__}")
    kwargs = {}
    if model_args.model_type == "vision_bigbird":
        preset = model_args.model_preset or "tiny"
        if model_args.model_preset is None:
            logger.info("No --model_name_or_path or --model_preset: training the tiny preset from scratch")
        kwargs |= PRESETS[preset]
        if recipe_args.recipe == "imagenet":
            kwargs["drop_path_rate"] = PRESET_DROP_PATH_RATE[preset]
    if model_args.image_size is not None and "image_size" in known_fields:
        default_size, size = config_class().image_size, model_args.image_size
        kwargs["image_size"] = type(default_size)((size, size)) if isinstance(default_size, (list, tuple)) else size
    try:
        return AutoConfig.for_model(model_args.model_type, **{**kwargs, **overrides})
    except (ValueError, TypeError, StrictDataclassError) as error:
        # a @strict config (ours) wraps the validator's ValueError: report that one
        cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
        raise InvalidArgument(f"--config_overrides: {cause}") from None


def check_image_size(image_size: int | None, config):
    """Refuse an image side below the model's total downsampling (when known for its model type)."""
    if config.model_type in ("vision_bigbird", "swin", "swinv2", "convnext", "convnextv2"):
        minimum = getattr(config, "patch_size", 4) * 2 ** (len(config.depths) - 1)  # stem (ours: 4), then 2x a stage
    elif config.model_type == "pvt_v2":
        minimum = math.prod(config.strides)
    else:
        minimum = getattr(config, "patch_size", None)  # ViT-like, unknown otherwise
    if image_size is not None and isinstance(minimum, int) and image_size < minimum:
        raise InvalidArgument(
            f"--image_size {image_size} is below the {config.model_type} model's minimum of {minimum} pixels"
        )


def set_labels(config, labels: list[str]):
    """Give the config the dataset's label set; a soft-target loss must not turn it multi-label."""
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: index for index, label in enumerate(labels)}
    config.finetuning_task = "image-classification"
    config.problem_type = "single_label_classification"  # not multi-label BCE for the float labels of Mixup/CutMix


def override_image_size(image_processor, image_size: int):
    """Make the processor resize the shortest edge and center crop to `image_size` (resize to a square if no crop)."""
    if getattr(image_processor, "do_center_crop", False) and getattr(image_processor, "crop_size", None) is not None:
        image_processor.size = SizeDict(shortest_edge=image_size)
        image_processor.crop_size = SizeDict(height=image_size, width=image_size)
    else:
        image_processor.size = SizeDict(height=image_size, width=image_size)


def new_image_processor(model_type: str):
    """Ours, or for a peer a `BitImageProcessor` with our steps: the same pixels, loadable with plain transformers."""
    ours = VisionBigBirdImageProcessor()  # bicubic resize of the shortest edge to 256, crop 224, ImageNet mean/std
    if model_type == "vision_bigbird":
        return ours
    steps = {"image_mean": ours.image_mean, "image_std": ours.image_std, "resample": ours.resample}
    return transformers.BitImageProcessor(**steps, size=dict(ours.size), crop_size=dict(ours.crop_size))


def build_model_and_image_processor(model_args: ModelArguments, config):
    """(model, image_processor) loaded from `--model_name_or_path`, or new ones for `config`."""
    name, hub_kwargs = model_args.model_name_or_path, model_args.hub_kwargs
    if name is None:
        model = AutoModelForImageClassification.from_config(config)
    else:
        kwargs = {"config": config, "ignore_mismatched_sizes": model_args.ignore_mismatched_sizes, **hub_kwargs}
        model = AutoModelForImageClassification.from_pretrained(name, **kwargs)
    processor_name = model_args.image_processor_name or name
    if processor_name is not None:
        image_processor = AutoImageProcessor.from_pretrained(processor_name, **hub_kwargs)
    else:
        image_processor = new_image_processor(config.model_type)
    if model_args.image_size is not None:
        override_image_size(image_processor, model_args.image_size)
    return model, image_processor


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed from (seed, epoch, sample index, ...): the same numbers give the same augmentation anywhere."""
    return int(np.random.SeedSequence([int(number) for number in numbers]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def seeded_cpu_rng(seed: int):
    """torch's CPU generator (torchvision's transforms draw from it) seeded in the block, its state restored after."""
    with torch.random.fork_rng(devices=[]):  # the CPU only: `torch.manual_seed` would reseed every accelerator
        torch.default_generator.manual_seed(seed)
        yield


# timm's rand-m<0-10>[-n<ops>][-inc1][-mstd<std>]; inc1 is how torchvision's posterize and solarize already grow
RAND_AUGMENT = re.compile(r"rand(?:-m0*(?P<m>10|\d)|-n(?P<n>0*[1-9]\d*)|-inc1|-(?P<mstd>mstd[\d.]*))*")


def parse_rand_augment(spec: str | None) -> tuple[int, int] | None:
    """timm's RandAugment notation ("rand-m9-n2", "rand-m9-mstd0.5-inc1") -> (num_ops, magnitude 0..10), or None."""
    if spec is None or spec.lower() == "none":
        return None
    match = RAND_AUGMENT.fullmatch(spec)
    if match is None or match["m"] is None:
        raise InvalidArgument(
            f"--rand_augment {spec} is not timm's rand-m<magnitude 0-10>[-n<ops>][-inc1] notation, e.g. rand-m9-n2"
        )
    if match["mstd"]:
        logger.warning(f"--rand_augment {spec}: {match['mstd']} ignored, torchvision's has no magnitude noise")
    return int(match["n"] or 2), int(match["m"])


def build_train_transform(image_processor, recipe_args: RecipeArguments) -> v2.Compose:
    """One RGB PIL image -> (3, h, w) float: crop, flip, RandAugment, the processor's rescale/normalize, erasing."""
    crop_size, interpolation = crop_size_of(image_processor), pil_torch_interpolation_mapping[image_processor.resample]
    scale = (recipe_args.min_crop_scale, 1.0)
    steps = [v2.RandomResizedCrop(crop_size, scale, interpolation=interpolation), v2.RandomHorizontalFlip()]
    rand_augment = parse_rand_augment(recipe_args.rand_augment)
    if rand_augment is not None:
        # 11 bins make magnitude m mean m/10 of each op's range, as in timm; geometric ops fill with the mean color
        fill = [round(255 * mean) for mean in image_processor.image_mean]
        bilinear = InterpolationMode.BILINEAR
        steps.append(v2.RandAugment(*rand_augment, num_magnitude_bins=11, interpolation=bilinear, fill=fill))
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    if getattr(image_processor, "do_normalize", False):
        steps.append(v2.Normalize(mean=image_processor.image_mean, std=image_processor.image_std))
    if recipe_args.random_erasing_prob > 0:
        steps.append(v2.RandomErasing(p=recipe_args.random_erasing_prob, value="random"))
    return v2.Compose(steps)


def build_batch_mix(recipe_args: RecipeArguments, num_labels: int):
    """Mixup and/or CutMix of a batch (torchvision `transforms.v2`), one picked per batch; None when both are off."""
    mixup, cutmix, switch = recipe_args.mixup_alpha, recipe_args.cutmix_alpha, recipe_args.mixup_switch_prob
    mixes = [v2.MixUp(alpha=mixup, num_classes=num_labels)] if mixup > 0 else []
    mixes += [v2.CutMix(alpha=cutmix, num_classes=num_labels)] if cutmix > 0 else []
    if len(mixes) == 2:
        return v2.RandomChoice(mixes, p=[1 - switch, switch])
    return mixes[0] if mixes else None


def crop_size_of(image_processor) -> tuple[int, int]:
    """(height, width) of the images the processor produces: its crop size, or its resize size without a crop."""
    crop_size, size = getattr(image_processor, "crop_size", None), image_processor.size
    if getattr(image_processor, "do_center_crop", False) and crop_size is not None:
        return crop_size["height"], crop_size["width"]
    return (size["shortest_edge"],) * 2 if "shortest_edge" in size else (size["height"], size["width"])


class ImageExamples:
    """Both datasets: `datasets.Image` values -> {"pixel_values": (3, H, W), "labels": int} (None if unreadable); with
    `train_transform`, augmented by a generator seeded by (seed, *key), the key kept as "sample_key" for mixing."""

    def __init__(self, dataset, split, image_column, label_column, image_processor=None, train_transform=None, seed=0):
        self.dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.split, self.image_column_name, self.label_column_name = split, image_column, label_column
        self.image_processor, self.train_transform, self.seed = image_processor, train_transform, seed
        # the epoch in shared memory: `set_epoch` (at every epoch start) reaches persistent dataloader workers too
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def examples(self, rows: dict[str, list], indices: list[int], keys: list[tuple]) -> list[dict | None]:
        pixel_values = {}  # position in the batch -> (3, H, W), or the RGB image until the processor has run
        for position, (value, index) in enumerate(zip(rows[self.image_column_name], indices)):
            image, error, name = try_decode_rgb(value, self.split, index)
            if error:
                logger.warning(f"Skipping unreadable image {name}: {error}")
            elif self.train_transform is not None:
                with seeded_cpu_rng(derived_seed(self.seed, *keys[position])):
                    pixel_values[position] = self.train_transform(PIL.Image.fromarray(image)).as_subclass(torch.Tensor)
            else:
                pixel_values[position] = image
        if self.train_transform is None and pixel_values:  # validation and test: the processor, as `pipeline` does
            images = list(pixel_values.values())
            batch = self.image_processor(images, input_data_format="channels_last", return_tensors="pt")
            pixel_values = dict(zip(pixel_values, batch["pixel_values"]))
        examples = [None] * len(indices)
        for position, pixels in pixel_values.items():
            examples[position] = {"pixel_values": pixels, "labels": rows[self.label_column_name][position]}
            if self.train_transform is not None:
                examples[position]["sample_key"] = keys[position]
        return examples


class ImageClassificationDataset(ImageExamples, torch.utils.data.Dataset):
    """A `datasets` split; the augmentation of sample i in epoch e is seeded by (seed, e, i), on any process/worker."""

    def set_epoch(self, epoch: int):
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict | None:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict | None]:
        return self.examples(self.dataset[list(indices)], indices, [(int(self.epoch), index) for index in indices])


class StreamingImageClassificationDataset(ImageExamples, torch.utils.data.IterableDataset):
    """A streamed split; for training, cycled (one endless epoch of --max_steps), example i of pass p in dataloader
    worker w seeded by (seed, p, w, i): a resume re-reads the stream to the same pixels."""

    def __iter__(self):
        worker_id = getattr(torch.utils.data.get_worker_info(), "id", 0)  # None in the main process
        for pass_index in itertools.count() if self.train_transform is not None else [0]:
            self.dataset.set_epoch(pass_index)  # reshuffles shards and buffer with seed + pass
            position = -1
            for position, example in enumerate(self.dataset):
                rows = {name: [value] for name, value in example.items()}  # a batch of one
                [result] = self.examples(rows, [position], [(pass_index, worker_id, position)])
                if result is not None:
                    yield result
            if position == -1:
                return  # this worker's share of the stream is empty


class ImageCollator:
    """Examples (None: dropped) -> {"pixel_values": (B, 3, H, W), "labels": (B,) or (B, num_labels) after mixing}."""

    def __init__(self, batch_mix=None, seed: int = 0):
        self.batch_mix, self.seed = batch_mix, seed

    def __call__(self, examples: list[dict | None]) -> dict[str, torch.Tensor]:
        kept = [example for example in examples if example is not None]
        if not kept:
            raise RuntimeError("Every image of a batch was unreadable (see the warnings above); use --check_images")
        batch = torch.utils.data.default_collate(kept)
        keys = batch.pop("sample_key", None)  # training batches only: mixed by a generator seeded by seed and keys
        if self.batch_mix is not None and keys is not None:
            with seeded_cpu_rng(derived_seed(self.seed, *torch.stack(keys, dim=1).flatten().tolist())):
                batch["pixel_values"], batch["labels"] = self.batch_mix(batch["pixel_values"], batch["labels"])
        return batch


class SoftTargetCrossEntropy:
    """The Trainer's `compute_loss_func`: label-smoothed cross-entropy against label ids or (B, num_labels) targets."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits, reduction = outputs["logits"].float(), "mean" if num_items_in_batch is None else "sum"
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, reduction=reduction)
        if num_items_in_batch is None:
            return loss
        # per example of the whole accumulated batch, as the Trainer's own losses; it counts label elements
        return loss / (num_items_in_batch / labels[0].numel())


def compute_metrics(eval_prediction) -> dict[str, float]:
    """The Trainer's `compute_metrics`: logits (N, num_labels) and label ids (N,) -> {"accuracy": ...}."""
    return {"accuracy": float(np.mean(np.argmax(eval_prediction.predictions, axis=1) == eval_prediction.label_ids))}


class WeightEMA(transformers.TrainerCallback):
    """Exponential moving average of the parameters after every optimizer step (the first update copies them)."""

    file_name = "ema_state.pt"

    def __init__(self, model: torch.nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.averaged.update_parameters(model)

    def load(self, folder: str):
        path = os.path.join(folder, self.file_name)
        if not os.path.isfile(path):
            raise InvalidArgument(f"--ema_decay is on but the checkpoint {folder} has no {self.file_name}")
        self.averaged.load_state_dict(torch.load(path, map_location=next(self.averaged.parameters()).device))

    def copy_to(self, model: torch.nn.Module, tensors=None):
        """Copy the averaged parameters (or `tensors`) into `model`."""
        with torch.no_grad():
            for parameter, tensor in zip(model.parameters(), tensors or self.averaged.module.parameters()):
                parameter.copy_(tensor)

    @contextlib.contextmanager
    def swapped_into(self, model: torch.nn.Module):
        """The averaged weights in `model` inside the block, its live weights back after it."""
        live = [parameter.detach().clone() for parameter in model.parameters()]
        self.copy_to(model)
        try:
            yield
        finally:  # also when evaluation raises, so training never goes on from the averaged weights
            self.copy_to(model, live)


class EpochCallback(transformers.TrainerCallback):
    """Tells the training dataset the epoch (also after a resume, and under DDP, where accelerate's does not)."""

    def __init__(self, dataset: ImageClassificationDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch or 0))


class ImageClassificationTrainer(Trainer):
    """The `Trainer`, plus a weight EMA (when `ema_decay` > 0) used by `evaluate`/`predict` and kept in checkpoints."""

    def __init__(self, *args, ema_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.ema = WeightEMA(self.model, ema_decay) if ema_decay > 0 else None
        if self.ema is not None:
            self.add_callback(self.ema)

    def evaluate(self, *args, **kwargs):
        with self.ema.swapped_into(self.model) if self.ema else contextlib.nullcontext():
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with self.ema.swapped_into(self.model) if self.ema else contextlib.nullcontext():
            return super().predict(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # before the Trainer's files, so that trainer_state.json (written last) still marks a complete checkpoint
        if self.ema is not None and self.args.should_save:
            folder = os.path.join(self.args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            torch.save(self.ema.averaged.state_dict(), os.path.join(folder, WeightEMA.file_name))
        super()._save_checkpoint(model, trial)


def num_examples(dataset) -> int | str:
    return len(dataset) if hasattr(dataset, "__len__") else "streamed"


def main(args: list[str] | None = None):
    args = sys.argv[1:] if args is None else args
    # Under torchrun without GPU/accelerator, accelerate only sets up multi-process (gloo) training when told to use
    # the CPU (as `accelerate launch --cpu` does); otherwise every process silently trains alone on the whole dataset.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    parser = transformers.HfArgumentParser((ModelArguments, DataTrainingArguments, RecipeArguments, TrainingArguments))
    if len(args) == 1 and args[0].endswith(".json"):
        with open(args[0]) as file:
            given = set(json.load(file))  # the names given explicitly: the recipe leaves them
        model_args, data_args, recipe_args, training_args = parser.parse_json_file(json_file=os.path.abspath(args[0]))
    else:
        given = {word[2:].split("=")[0].replace("-", "_") for word in args if word.startswith("--")}
        model_args, data_args, recipe_args, training_args = parser.parse_args_into_dataclasses(args=args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", stream=sys.stdout)
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()  # info logs on the main process unless --log_level says
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, device: "
        f"{training_args.device}, n_gpu: {training_args.n_gpu}, distributed training: "
        f"{training_args.parallel_mode.value == 'distributed'}, 16-bits training: "
        f"{training_args.fp16 or training_args.bf16}"
    )
    resolve_recipe(recipe_args, training_args, given)
    validate_arguments(model_args, data_args, recipe_args, training_args)
    # Built before the dataset, so that bad overrides and too small images fail in seconds.
    config = build_config(model_args, recipe_args)
    check_image_size(model_args.image_size, config)
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False  # every parameter gets a gradient (tests/test_model_*)
    logger.info(f"Training/evaluation parameters {training_args}")
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)
    transformers.set_seed(training_args.seed)

    # The main process builds the dataset cache first; the others then read it instead of racing to write it.
    needed = [split for split, flag in SPLIT_FLAGS.items() if getattr(training_args, flag)]
    with training_args.main_process_first(desc="loading and checking the dataset"):
        dataset = load_image_dataset(data_args, training_args.seed, model_args.cache_dir, model_args.token, needed)
    for split in [split for split in needed if split not in dataset]:
        raise InvalidArgument(f"--{SPLIT_FLAGS[split]} requires a {split} split; the dataset has {sorted(dataset)}")
    set_labels(config, next(iter(dataset.values())).features[data_args.label_column_name].names)

    model, image_processor = build_model_and_image_processor(model_args, config)
    columns = (data_args.image_column_name, data_args.label_column_name)
    kwargs = {"image_processor": image_processor, "seed": training_args.seed}
    dataset_class = StreamingImageClassificationDataset if data_args.streaming else ImageClassificationDataset
    splits = {}
    for split in [split for split in SPLITS if split in dataset]:
        augment = build_train_transform(image_processor, recipe_args) if split == "train" else None
        splits[split] = dataset_class(dataset[split], split, *columns, train_transform=augment, **kwargs)
    (height, width), batch_size = crop_size_of(image_processor), training_args.per_device_train_batch_size
    world_batch_size = batch_size * training_args.world_size * training_args.gradient_accumulation_steps
    logger.info(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
        f"datasets {datasets.__version__}; model {config.model_type} ({model.num_parameters() / 1e6:.2f}M parameters, "
        f"{model.dtype}), {config.num_labels} labels, resolution {height}x{width}; batch size per device {batch_size} "
        f"(eval {training_args.per_device_eval_batch_size}), global {world_batch_size}, learning rate "
        f"{training_args.learning_rate:g}"
    )
    recipe = ", ".join(f"{name}={getattr(recipe_args, name)}" for name in IMAGENET_RECIPE)
    logger.info(f"augmentation: flip, {recipe}, label_smoothing_factor={training_args.label_smoothing_factor}")
    logger.info("splits: " + ", ".join(f"{split} {num_examples(data)}" for split, data in dataset.items()))

    # The image column only becomes pixel_values in the dataset: the Trainer must not drop it beforehand.
    training_args.remove_unused_columns = False
    trainer = ImageClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"] if training_args.do_train else None,
        eval_dataset=splits["validation"] if training_args.do_eval else None,
        compute_metrics=compute_metrics,
        compute_loss_func=SoftTargetCrossEntropy(training_args.label_smoothing_factor),
        processing_class=image_processor,
        data_collator=ImageCollator(build_batch_mix(recipe_args, config.num_labels), training_args.seed),
        ema_decay=recipe_args.ema_decay,
    )
    if training_args.do_train and not data_args.streaming:
        trainer.add_callback(EpochCallback(splits["train"]))
    last_checkpoint = training_args.resume_from_checkpoint or last_checkpoint
    results = {}
    if training_args.do_train:
        if last_checkpoint is not None:
            logger.info(f"Resuming training from {last_checkpoint}")
            if trainer.ema is not None:
                trainer.ema.load(last_checkpoint)
        train_result = trainer.train(resume_from_checkpoint=last_checkpoint)
        if trainer.ema is not None:
            trainer.ema.copy_to(trainer.model)  # the averaged weights are the model saved and evaluated
        trainer.save_model()
        if trainer.is_world_process_zero():
            image_processor.save_pretrained(training_args.output_dir)
        trainer.save_state()
        results["train"] = {**train_result.metrics, "train_samples": num_examples(splits["train"])}
    if training_args.do_eval:
        results["eval"] = {**trainer.evaluate(), "eval_samples": num_examples(splits["validation"])}
    if training_args.do_predict:
        metrics = trainer.predict(splits["test"], metric_key_prefix="test").metrics
        results["test"] = {**metrics, "test_samples": num_examples(splits["test"])}
    for split, metrics in results.items():
        trainer.log_metrics(split, metrics)
        trainer.save_metrics(split, metrics)

    folders = data_args.train_dir or data_args.validation_dir or data_args.test_dir
    dataset_name = data_args.dataset_name or ("imagefolder" if folders else "fashion_mnist")
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "image-classification", "dataset": dataset_name}
    card["tags"] = ["image-classification", "vision", config.model_type]
    if training_args.push_to_hub:
        trainer.push_to_hub(**card)
    else:
        trainer.create_model_card(**card)


if __name__ == "__main__":
    try:
        main()
    except InvalidArgument as error:
        sys.exit(f"train_image_classification.py: error: {error}")
