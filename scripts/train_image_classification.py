#!/usr/bin/env python
"""
Train or fine-tune an image classifier with the `Trainer`, following transformers'
`examples/pytorch/image-classification/run_image_classification.py` (same argument names and flow). Built for Vision
Big Bird (arXiv 2311.05988), and for its peers too: `--model_type swin|pvt_v2|convnext|vit|...` builds any
`AutoConfig` model type from scratch, so every run of a comparison study is one command of this script.

Data, in order of precedence: `--dataset_name` (any `datasets` dataset), `--train_dir`/`--validation_dir`/`--test_dir`
(image folders with one sub-folder per class), or, with neither, Fashion-MNIST from the Debian package
`dataset-fashion-mnist` (`scripts/fashion_mnist.py`): its official 10,000 test images are the test set and a seeded
validation split is carved from train. Every image is decoded before training; unreadable or truncated files are
dropped and listed (`--check_images false`: skipped with a warning when met). Every image mode (L, LA, P, RGBA, CMYK,
I;16, ...) becomes RGB through `transformers.image_transforms.convert_to_rgb`, the image processors' own function.

Model: `--model_name_or_path` (a saved folder or Hub id) to fine-tune; otherwise a new model of `--model_type`
(default `vision_bigbird`, whose `--model_preset` is tiny, small or base; tiny when none is given) with
`--config_overrides '<JSON object>'` on top.

Recipe: `--recipe imagenet` is the DeiT/Swin ImageNet-1k recipe (values and sources at `IMAGENET_RECIPE`); each part
has its own flag (`--rand_augment`, `--mixup_alpha`, `--cutmix_alpha`, `--random_erasing_prob`, `--ema_decay`, and
`TrainingArguments`' `--label_smoothing_factor`), and a flag given on the command line wins over the recipe.
Augmentation randomness is derived from (seed, epoch, sample index), so a run killed after a checkpoint and resumed
with `--resume_from_checkpoint` ends with the same weights as an uninterrupted one, on one process or many.

    # from scratch on Fashion-MNIST at 32x32, on CPU or one GPU
    python scripts/train_image_classification.py --model_preset tiny --image_size 32 --min_crop_scale 0.5 \
        --output_dir runs/fmnist-tiny --do_train --do_eval --do_predict --num_train_epochs 10 \
        --per_device_train_batch_size 128 --learning_rate 1e-3 --eval_strategy epoch --save_strategy epoch

    # a peer from the same script
    python scripts/train_image_classification.py --model_type swin --image_size 32 \
        --config_overrides '{"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [2, 2, 4, 8], "window_size": 4}' ...

    # ImageNet-1k, Vision Big Bird tiny, 8 GPUs on one node (global batch 8 x 128 = 1024, so lr 1e-3), 300 epochs
    torchrun --nproc_per_node 8 scripts/train_image_classification.py \
        --model_preset tiny --recipe imagenet --dataset_name ILSVRC/imagenet-1k \
        --output_dir runs/imagenet-vbb-tiny --do_train --do_eval --num_train_epochs 300 \
        --per_device_train_batch_size 128 --per_device_eval_batch_size 256 --bf16 \
        --dataloader_num_workers 10 --preprocessing_num_workers 32 --eval_strategy epoch --save_strategy epoch \
        --save_total_limit 2 --logging_steps 100 --report_to none --seed 0

Several nodes: the same command with `torchrun --nnodes N --node_rank R --master_addr HOST --master_port 29500`
(or `accelerate launch --multi_gpu --num_machines N ...`); keep the global batch at 1024 or let the recipe scale the
learning rate (1e-3 per 1024 images). `--gradient_accumulation_steps`, `--torch_compile` and a single .json file of
arguments work as in any transformers example. On a machine without GPU, torchrun starts CPU (gloo) DDP.

The output folder holds the model, its image processor and {train,eval,test,all}_results.json; after
`import vision_bigbird_hf` it loads with `AutoModelForImageClassification.from_pretrained(output_dir)` and
`pipeline("image-classification", model=output_dir)` (peers load without it).
"""

import contextlib
import itertools
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field

import datasets
import evaluate
import numpy as np
import PIL.Image
import torch
import torchvision
from datasets import ClassLabel, DatasetDict, load_dataset
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR, load_fashion_mnist
from huggingface_hub.errors import StrictDataclassError
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.transforms import InterpolationMode, v2

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    BitImageProcessor,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PILImageResampling,
    SizeDict,
    pil_torch_interpolation_mapping,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SchedulerType

# importing the package registers Vision Big Bird with AutoConfig, AutoModelForImageClassification, AutoImageProcessor
from vision_bigbird_hf import PRESETS, VisionBigBirdImageProcessor


logger = logging.getLogger(__name__)

# The ImageNet-1k recipe of Swin (microsoft/Swin-Transformer config.py + configs/swin/*.yaml), whose augmentation and
# optimizer are DeiT's (facebookresearch/deit main.py), in timm's terms.
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
    # cosine down to Swin TRAIN.MIN_LR 5e-6 of TRAIN.BASE_LR 5e-4 (both scaled by the batch size): 0.01 of the lr
    "lr_scheduler_type": "cosine_with_min_lr",
    "lr_scheduler_kwargs": {"min_lr_rate": 0.01},
    "warmup_steps": 20 / 300,  # Swin TRAIN.WARMUP_EPOCHS 20 of TRAIN.EPOCHS 300, as a fraction of the run
}
IMAGENET_LEARNING_RATE_PER_1024_IMAGES = 1e-3  # Swin TRAIN.BASE_LR 5e-4 per 512 images, DeiT --lr 5e-4 per 512
# Stochastic depth per Vision Big Bird preset: Swin-T/S/B's MODEL.DROP_PATH_RATE (configs/swin/swin_*_patch4_window7)
PRESET_DROP_PATH_RATE = {"tiny": 0.2, "small": 0.3, "base": 0.5}


class InvalidArgument(ValueError):
    """A command-line value the script refuses; the message names the flag, path or value and what to do."""


# ---- Arguments ----------------------------------------------------------------


@dataclass
class DataTrainingArguments:
    """
    Arguments pertaining to what data we are going to input our model for training and eval. Without `dataset_name`
    and image folders, Fashion-MNIST is loaded from the local Debian package files.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Name of a dataset from the Hub or a local dataset path (for `datasets.load_dataset`)."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration name of the dataset to use (via the datasets library)."}
    )
    train_dir: str | None = field(
        default=None, metadata={"help": "A folder containing the training data (one sub-folder per class)."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "A folder containing the validation data (one sub-folder per class)."}
    )
    test_dir: str | None = field(
        default=None, metadata={"help": "A folder containing the test data (one sub-folder per class)."}
    )
    fashion_mnist_dir: str = field(
        default=DEFAULT_FASHION_MNIST_DIR,
        metadata={"help": "Folder with the Fashion-MNIST IDX files, used when no dataset or image folder is given."},
    )
    train_val_split: float = field(
        default=0.1,
        metadata={
            "help": "Fraction (< 1) or number of examples (>= 1) of train split off, with the training seed, as the "
            "validation set when the dataset has no validation split."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training set to this many examples (a seeded random subset)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Truncate the validation set to this many examples (a seeded random subset)."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Truncate the test set to this many examples (a seeded random subset)."}
    )
    image_column_name: str = field(
        default="image",
        metadata={"help": "The name of the dataset column containing the image data. Defaults to 'image'."},
    )
    label_column_name: str = field(
        default="label",
        metadata={"help": "The name of the dataset column containing the labels. Defaults to 'label'."},
    )
    check_images: bool = field(
        default=True,
        metadata={
            "help": "Decode every image of the splits used before training, and drop (and list) the unreadable ones. "
            "The result is cached by `datasets` for on-disk datasets. Off: unreadable images are skipped with a "
            "warning naming the file when a batch meets them."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the dataset (`load_dataset(..., streaming=True)`) instead of preparing an Arrow copy: for "
            "folders or Hub datasets too large to copy. Needs --max_steps and, for --do_eval, a validation split; "
            "the training stream is shuffled in a buffer and cycled; unreadable images are skipped when met."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "With --streaming: examples held for shuffling (datasets' default 1000)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for the image check (`Dataset.map(num_proc=...)`)."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in a non-empty output_dir instead of resuming from its last checkpoint "
            "(this flag left TrainingArguments in transformers 5; the script keeps it for the example's users)."
        },
    )


@dataclass
class ModelArguments:
    """
    Arguments pertaining to which model/config/image processor we are going to fine-tune, or train from scratch.
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Path to a saved model folder, or a model identifier from huggingface.co/models."},
    )
    model_type: str = field(
        default="vision_bigbird",
        metadata={
            "help": "Model type of a new model trained from scratch (`AutoConfig.for_model`): vision_bigbird, or a "
            "peer such as swin, pvt_v2, convnext, vit."
        },
    )
    model_preset: str | None = field(
        default=None,
        metadata={
            "help": "Vision Big Bird size to train from scratch (default tiny when no --model_name_or_path).",
            "choices": sorted(PRESETS),
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "A JSON object of config fields set on the new model's config, e.g. "
            '\'{"hidden_sizes": [24, 48, 72, 96], "depths": [1, 1, 1, 1], "drop_path_rate": 0.0}\'.'
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Pretrained config name or path if not the same as model_name."}
    )
    image_processor_name: str | None = field(
        default=None,
        metadata={
            "help": "Name or path of preprocessor config (defaults to the model's, or a new one with ImageNet mean "
            "and std, resize + center crop, when training from scratch)."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Train and evaluate on image_size x image_size inputs: sets the image processor's resize and crop "
            "sizes (saved with the model) and the config's image_size. At least the model's minimum (32 for Vision "
            "Big Bird); e.g. 32 for Fashion-MNIST."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where to store the models, datasets and metrics downloaded from the Hub."}
    )
    model_revision: str = field(
        default="main",
        metadata={"help": "The specific model version to use (can be a branch name, tag name or commit id)."},
    )
    token: str | None = field(
        default=None,
        metadata={"help": "The token for HTTP bearer authorization of remote files (default: the hf auth login one)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Whether to trust the execution of code from models defined on the Hub."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Will enable to load a pretrained model whose head dimensions are different."},
    )


@dataclass
class RecipeArguments:
    """The training recipe: augmentation, Mixup/CutMix and weight EMA. `--recipe imagenet` fills what is not given."""

    recipe: str = field(
        default="none",
        metadata={
            "help": "imagenet: the DeiT/Swin ImageNet-1k recipe (RandAugment, Mixup 0.8, CutMix 1.0, random "
            "erasing 0.25, label smoothing 0.1, weight decay 0.05, lr 1e-3 per 1024 images, cosine schedule with "
            "1/15 warmup, gradient clipping 5, per-preset stochastic depth); flags given explicitly win. none: crop "
            "and flip only, plus what the flags below switch on.",
            "choices": ["imagenet", "none"],
        },
    )
    min_crop_scale: float | None = field(
        default=None,
        metadata={
            "help": "Smallest area fraction of RandomResizedCrop, in (0, 1] (default 0.08 as the ImageNet recipe; 0.5 "
            "or more suits small images such as Fashion-MNIST)."
        },
    )
    rand_augment: str | None = field(
        default=None,
        metadata={
            "help": "RandAugment in timm's notation, e.g. rand-m9-n2 (magnitude 9 of 10, 2 ops), run with "
            "torchvision's transforms.v2.RandAugment; none: off."
        },
    )
    mixup_alpha: float | None = field(default=None, metadata={"help": "Mixup Beta(alpha, alpha); 0: off."})
    cutmix_alpha: float | None = field(default=None, metadata={"help": "CutMix Beta(alpha, alpha); 0: off."})
    mixup_switch_prob: float | None = field(
        default=None, metadata={"help": "With both Mixup and CutMix on, probability of CutMix for a batch (0.5)."}
    )
    random_erasing_prob: float | None = field(
        default=None, metadata={"help": "Probability of random erasing (random normal pixels) per image; 0: off."}
    )
    ema_decay: float | None = field(
        default=None,
        metadata={
            "help": "Decay of an exponential moving average of the weights, updated every optimizer step; when on, "
            "evaluation uses the averaged weights and they are the saved model. It averages over about 1 / (1 - "
            "decay) steps: keep that well below the run's length (DeiT: 0.99996 for ~375k steps). 0: off."
        },
    )


def parse_args(
    args: list[str] | None = None,
) -> tuple[ModelArguments, DataTrainingArguments, RecipeArguments, TrainingArguments]:
    """Command-line flags, or a single .json file holding them, into the four argument dataclasses."""
    args = sys.argv[1:] if args is None else args
    # Under torchrun on a machine without GPU/accelerator, accelerate only sets up multi-process (gloo) training when
    # told to use the CPU; otherwise every process silently trains alone on the whole dataset. Tell it, as
    # `accelerate launch --cpu` does, before TrainingArguments builds the distributed state.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, RecipeArguments, TrainingArguments))
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(args[0]))
    return parser.parse_args_into_dataclasses(args=args)


def given_flags(args: list[str] | None = None) -> set[str]:
    """Names of the arguments set explicitly (on the command line or in the .json file): the recipe leaves them."""
    args = sys.argv[1:] if args is None else args
    if len(args) == 1 and args[0].endswith(".json"):
        with open(args[0]) as file:
            return set(json.load(file))
    return {arg[2:].split("=")[0].replace("-", "_") for arg in args if arg.startswith("--")}


def setup_logging(training_args: TrainingArguments):
    """Info logs (with transformers' and datasets') on the main process, warnings on the others, like the example."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        # The default of training_args.log_level is passive, so we set log level at info here to have that default.
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def check_image_folder(flag: str, folder: str, needs_classes: bool):
    """The folder exists and holds image files; a training folder also needs two or more class sub-folders."""
    if not os.path.isdir(folder):
        raise InvalidArgument(f"{flag} {folder}: no such folder")
    extensions = tuple(ImageFolder.EXTENSIONS)
    class_folders = set()
    for root, _, files in os.walk(folder):
        if any(name.lower().endswith(extensions) for name in files):
            class_folders.add(os.path.relpath(root, folder).split(os.sep)[0])
            if not needs_classes or len(class_folders) >= 2:
                return
    if not class_folders:
        raise InvalidArgument(f"{flag} {folder} holds no image files ({', '.join(extensions[:6])}, ...)")
    raise InvalidArgument(
        f"{flag} {folder} has images of one class only ({class_folders.pop()!r}): put each class in its own "
        "sub-folder, at least two classes"
    )


def validate_arguments(model_args, data_args, recipe_args, training_args):
    """Refuse values that would crash later or silently train nothing, before any data or model is built."""
    if training_args.num_train_epochs < 0:
        raise InvalidArgument(f"--num_train_epochs {training_args.num_train_epochs} must not be negative")
    if training_args.max_steps < -1 or (training_args.do_train and training_args.max_steps == 0):
        raise InvalidArgument(f"--max_steps {training_args.max_steps} must be positive (or -1: use epochs)")
    if training_args.do_train and training_args.max_steps == -1 and training_args.num_train_epochs == 0:
        raise InvalidArgument("--num_train_epochs 0 with --do_train would save an untrained model")
    for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, flag) < 1:
            raise InvalidArgument(f"--{flag} {getattr(training_args, flag)} must be at least 1")
    for flag in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
        if getattr(data_args, flag) is not None and getattr(data_args, flag) < 1:
            raise InvalidArgument(f"--{flag} {getattr(data_args, flag)} must be at least 1")
    if data_args.streaming and data_args.dataset_name is None and data_args.train_dir is None:
        raise InvalidArgument("--streaming needs --dataset_name or --train_dir (Fashion-MNIST is built in memory)")
    if data_args.streaming and training_args.do_train and training_args.max_steps < 1:
        raise InvalidArgument("--streaming has no dataset length to count epochs with: give --max_steps")
    if data_args.train_val_split < 0:
        raise InvalidArgument(f"--train_val_split {data_args.train_val_split} must not be negative")
    if model_args.model_name_or_path is not None:
        for flag in ("model_preset", "config_overrides"):
            if getattr(model_args, flag) is not None:
                raise InvalidArgument(f"--{flag} builds a new model; it cannot be used with --model_name_or_path")
    if model_args.model_preset is not None and model_args.model_type != "vision_bigbird":
        raise InvalidArgument(f"--model_preset is for --model_type vision_bigbird, not {model_args.model_type}")
    if model_args.image_size is not None and model_args.image_size < 1:
        raise InvalidArgument(f"--image_size {model_args.image_size} must be positive")
    if not 0 < recipe_args.min_crop_scale <= 1:
        raise InvalidArgument(f"--min_crop_scale {recipe_args.min_crop_scale} must be in (0, 1]")
    for flag in ("mixup_alpha", "cutmix_alpha"):
        if getattr(recipe_args, flag) < 0:
            raise InvalidArgument(f"--{flag} {getattr(recipe_args, flag)} must not be negative (0: off)")
    for flag in ("mixup_switch_prob", "random_erasing_prob"):
        if not 0 <= getattr(recipe_args, flag) <= 1:
            raise InvalidArgument(f"--{flag} {getattr(recipe_args, flag)} must be in [0, 1]")
    if not 0 <= recipe_args.ema_decay < 1:
        raise InvalidArgument(f"--ema_decay {recipe_args.ema_decay} must be in [0, 1) (0: off)")
    parse_rand_augment(recipe_args.rand_augment)
    folders = {"--train_dir": data_args.train_dir, "--validation_dir": data_args.validation_dir}
    folders["--test_dir"] = data_args.test_dir
    if data_args.dataset_name is None:
        for flag, folder in folders.items():
            if folder is not None:
                check_image_folder(flag, folder, needs_classes=flag == "--train_dir")


def resolve_recipe(recipe_args: RecipeArguments, training_args: TrainingArguments, given: set[str]):
    """Fill the recipe flags left unset (`--recipe imagenet`: its values, and its TrainingArguments unless given)."""
    imagenet = recipe_args.recipe == "imagenet"
    off = {"min_crop_scale": 0.08, "rand_augment": None, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}
    off |= {"mixup_switch_prob": 0.5, "random_erasing_prob": 0.0, "ema_decay": 0.0}
    for name, value in (IMAGENET_RECIPE if imagenet else off).items():
        if getattr(recipe_args, name) is None:
            setattr(recipe_args, name, value)
    if recipe_args.rand_augment is not None and recipe_args.rand_augment.lower() == "none":
        recipe_args.rand_augment = None
    if not imagenet:
        return
    for name, value in IMAGENET_TRAINING_ARGUMENTS.items():
        if name not in given and not (name == "lr_scheduler_kwargs" and "lr_scheduler_type" in given):
            setattr(training_args, name, SchedulerType(value) if name == "lr_scheduler_type" else value)
    if "learning_rate" not in given:
        global_batch_size = (
            training_args.per_device_train_batch_size
            * training_args.world_size
            * training_args.gradient_accumulation_steps
        )
        training_args.learning_rate = IMAGENET_LEARNING_RATE_PER_1024_IMAGES * global_batch_size / 1024
    logger.info(
        f"--recipe imagenet: {', '.join(f'{name}={getattr(recipe_args, name)}' for name in IMAGENET_RECIPE)}, "
        f"learning_rate={training_args.learning_rate:g}, label_smoothing_factor="
        f"{training_args.label_smoothing_factor}, weight_decay={training_args.weight_decay}, max_grad_norm="
        f"{training_args.max_grad_norm}, lr_scheduler_type={training_args.lr_scheduler_type.value}, warmup_steps="
        f"{training_args.warmup_steps:.4g}"
    )


def detect_last_checkpoint(training_args: TrainingArguments, overwrite_output_dir: bool) -> str | None:
    """
    The last complete `checkpoint-*` in output_dir to resume from (the Trainer writes `trainer_state.json` last, so a
    folder without it was cut short by a crash), unless told to overwrite; refuse other non-empty dirs.
    """
    if not (os.path.isdir(training_args.output_dir) and training_args.do_train) or overwrite_output_dir:
        return None
    steps = [
        int(name[len(PREFIX_CHECKPOINT_DIR) + 1 :])
        for name in os.listdir(training_args.output_dir)
        if name.startswith(PREFIX_CHECKPOINT_DIR + "-") and name[len(PREFIX_CHECKPOINT_DIR) + 1 :].isdigit()
    ]
    complete = [
        step
        for step in steps
        if os.path.isfile(
            os.path.join(training_args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}", "trainer_state.json")
        )
    ]
    if not steps and len(os.listdir(training_args.output_dir)) > 0:
        raise InvalidArgument(
            f"--output_dir {training_args.output_dir} already exists and is not empty. "
            "Use --overwrite_output_dir to overcome."
        )
    if not complete:
        return None
    last_checkpoint = os.path.join(training_args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{max(complete)}")
    if training_args.resume_from_checkpoint is None:
        logger.info(
            f"Checkpoint detected, resuming training at {last_checkpoint}. To avoid this behavior, change "
            "the `--output_dir` or add `--overwrite_output_dir` to train from scratch."
        )
    return last_checkpoint


# ---- Dataset: loading, splits, selection, unreadable images -------------------


def load_raw_dataset(data_args: DataTrainingArguments, cache_dir: str | None = None, token: str | None = None):
    """A `DatasetDict` from `--dataset_name`, from image folders, or Fashion-MNIST when neither is given."""
    if data_args.dataset_name is not None:
        return load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            cache_dir=cache_dir,
            token=token,
            streaming=data_args.streaming,
        )
    folders = {"train": data_args.train_dir, "validation": data_args.validation_dir, "test": data_args.test_dir}
    data_files = {split: os.path.join(folder, "**") for split, folder in folders.items() if folder is not None}
    if data_files:
        return load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir, streaming=data_args.streaming)
    logger.info(f"No --dataset_name or image folder given: using Fashion-MNIST from {data_args.fashion_mnist_dir}")
    return load_fashion_mnist(data_args.fashion_mnist_dir)


def check_columns(dataset: DatasetDict, data_args: DataTrainingArguments) -> DatasetDict:
    """Check the image and label columns exist and the labels hold two classes or more; make them a `ClassLabel`."""
    features = next(iter(dataset.values())).features
    if features is None:
        raise InvalidArgument("--streaming: this dataset does not declare its features; leave --streaming out")
    columns = {"--image_column_name": data_args.image_column_name, "--label_column_name": data_args.label_column_name}
    for flag, name in columns.items():
        if name not in features:
            raise InvalidArgument(
                f"{flag} {name} not found in the dataset; set {flag} to one of {', '.join(features)}"
            )
    if not isinstance(features[data_args.label_column_name], ClassLabel):
        if data_args.streaming:
            raise InvalidArgument(
                f"--streaming needs --label_column_name {data_args.label_column_name} to be a ClassLabel (class ids "
                "with names); this one holds raw values, which can only be encoded without --streaming"
            )
        dataset = dataset.class_encode_column(data_args.label_column_name)
    names = next(iter(dataset.values())).features[data_args.label_column_name].names
    if len(names) < 2:
        raise InvalidArgument(
            f"--label_column_name {data_args.label_column_name} holds {len(names)} class ({names}): a classifier "
            "needs two or more"
        )
    return dataset


def split_validation(dataset: DatasetDict, train_val_split: float, seed: int) -> DatasetDict:
    """Carve a validation split out of train when there is none; seeded, so every process gets the same split."""
    if "validation" in dataset or "train" not in dataset or train_val_split <= 0:
        return dataset
    if isinstance(dataset["train"], datasets.IterableDataset):
        return dataset  # a stream cannot be split at random; --do_eval then asks for a validation split
    test_size = int(train_val_split) if train_val_split >= 1 else train_val_split
    split = dataset["train"].train_test_split(test_size=test_size, seed=seed)
    dataset["train"], dataset["validation"] = split["train"], split["test"]
    return dataset


def select_samples(dataset, max_samples: int | None, seed: int):
    """A seeded random subset of `max_samples` examples (all of them if there are fewer or `max_samples` is None)."""
    if isinstance(dataset, datasets.IterableDataset):
        return dataset if max_samples is None else dataset.take(max_samples)  # the first ones of the stream
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def decode_rgb(value: dict) -> np.ndarray:
    """A `datasets.Image` value ({"path", "bytes"}) -> (H, W, 3) uint8 RGB, decoded by `datasets` (EXIF orientation
    applied) and converted by `convert_to_rgb` exactly as the image processors do (transparency onto white)."""
    return convert_to_rgb(datasets.Image().decode_example(value), return_numpy=True)


def image_name(value: dict, split: str, index: int) -> str:
    return value.get("path") or f"{split} example {index}"


def find_unreadable(batch: dict, indices: list[int], image_column_name: str, split: str) -> dict:
    """`Dataset.map` function: for each image, its name and why it does not decode to RGB ("" if it does)."""
    errors, names = [], []
    for index, value in zip(indices, batch[image_column_name]):
        try:
            decode_rgb(value)
            errors.append("")
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
            errors.append(f"{type(error).__name__}: {error}")
        names.append(image_name(value, split, index))
    return {"error": errors, "name": names}


def drop_unreadable_images(dataset, split: str, image_column_name: str, num_proc: int | None):
    """Decode every image once before training; drop the ones that fail and log their count and first names."""
    checked = dataset.cast_column(image_column_name, datasets.Image(decode=False)).map(
        find_unreadable,
        batched=True,
        with_indices=True,
        fn_kwargs={"image_column_name": image_column_name, "split": split},
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        desc=f"Checking the {split} images",
    )
    errors = checked["error"]
    bad = [index for index, error in enumerate(errors) if error]
    if not bad:
        return dataset
    listed = "; ".join(f"{checked[index]['name']} ({errors[index]})" for index in bad[:10])
    logger.warning(f"{len(bad)} unreadable image(s) in {split}, left out: {listed}{' ...' if len(bad) > 10 else ''}")
    bad = set(bad)
    return dataset.select([index for index in range(len(dataset)) if index not in bad])


def load_image_dataset(
    data_args: DataTrainingArguments, seed: int, cache_dir=None, token=None, used_splits=("train", "validation", "test")
) -> DatasetDict:
    """
    The dataset the script trains on: loaded (`load_raw_dataset`), checked (`check_columns`), with a validation split
    carved from train if needed (`split_validation`), each split capped by `--max_{train,eval,predict}_samples` and,
    with `--check_images`, the unreadable images of the `used_splits` left out (Fashion-MNIST, built from arrays,
    needs no check).
    """
    dataset = check_columns(load_raw_dataset(data_args, cache_dir=cache_dir, token=token), data_args)
    dataset = split_validation(dataset, data_args.train_val_split, seed)
    max_samples = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    splits = [split for split in max_samples if split in dataset]  # train, validation, test first, in this order
    splits += [split for split in dataset if split not in max_samples]
    dataset = DatasetDict({split: select_samples(dataset[split], max_samples.get(split), seed) for split in splits})
    if (
        data_args.check_images
        and not data_args.streaming
        and (data_args.dataset_name or data_args.train_dir or data_args.validation_dir or data_args.test_dir)
    ):
        for split in used_splits:
            if split in dataset:
                dataset[split] = drop_unreadable_images(
                    dataset[split], split, data_args.image_column_name, data_args.preprocessing_num_workers
                )
    return dataset


# ---- Model and image processor ------------------------------------------------


def parse_config_overrides(overrides: str | None) -> dict:
    """`--config_overrides` JSON text -> dict; anything but one complete JSON object is refused."""
    if not overrides:
        return {}
    try:
        parsed = json.loads(overrides)
    except json.JSONDecodeError as error:
        raise InvalidArgument(
            f"--config_overrides {overrides!r} is not valid JSON ({error}); give a JSON object such as "
            '\'{"depths": [1, 1, 2, 1], "drop_path_rate": 0.1}\''
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"--config_overrides {overrides!r} must be a JSON object, not {type(parsed).__name__}")
    return parsed


def build_config(model_args: ModelArguments, recipe_args: RecipeArguments):
    """The model config: the saved model's, or a new `--model_type` one (preset, recipe drop path, overrides)."""
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}
    if model_args.model_name_or_path is not None:
        return AutoConfig.from_pretrained(
            model_args.config_name or model_args.model_name_or_path,
            trust_remote_code=model_args.trust_remote_code,
            **hub_kwargs,
        )
    if model_args.model_type not in transformers.CONFIG_MAPPING:
        raise InvalidArgument(f"--model_type {model_args.model_type} is not an AutoConfig model type")
    config_class = transformers.CONFIG_MAPPING[model_args.model_type]
    overrides = parse_config_overrides(model_args.config_overrides)
    known_fields = set(config_class().to_dict()) | set(config_class.attribute_map)
    unknown = sorted(set(overrides) - known_fields)
    if unknown:
        raise InvalidArgument(f"--config_overrides: {unknown} are not fields of {config_class.__name__}")
    kwargs = {}
    if model_args.model_type == "vision_bigbird":
        preset = model_args.model_preset
        if preset is None:
            preset = "tiny"
            logger.info("No --model_name_or_path or --model_preset: training the tiny preset from scratch")
        kwargs |= PRESETS[preset]
        if recipe_args.recipe == "imagenet":
            kwargs["drop_path_rate"] = PRESET_DROP_PATH_RATE[preset]
    if model_args.image_size is not None and "image_size" in known_fields:
        default_size = config_class().image_size
        size = model_args.image_size
        kwargs["image_size"] = type(default_size)((size, size)) if isinstance(default_size, (list, tuple)) else size
    try:
        return AutoConfig.for_model(model_args.model_type, **{**kwargs, **overrides})
    except (ValueError, TypeError, StrictDataclassError) as error:
        # a @strict config (ours) wraps the validator's ValueError: report that one
        cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
        raise InvalidArgument(f"--config_overrides: {cause}") from None


def minimum_image_size(config) -> int | None:
    """Smallest input side the model can take: its total downsampling (None when unknown for this model type)."""
    if config.model_type == "vision_bigbird":
        return 4 * 2 ** (len(config.depths) - 1)  # 4x4 stem, then 2x per later stage (the model's own check)
    if config.model_type == "pvt_v2":
        return math.prod(config.strides)
    if config.model_type in ("swin", "swinv2", "convnext", "convnextv2") and hasattr(config, "depths"):
        return config.patch_size * 2 ** (len(config.depths) - 1)
    patch_size = getattr(config, "patch_size", None)
    return patch_size if isinstance(patch_size, int) else None


def check_image_size(image_size: int | None, config):
    minimum = minimum_image_size(config)
    if image_size is not None and minimum is not None and image_size < minimum:
        raise InvalidArgument(
            f"--image_size {image_size} is below the {config.model_type} model's minimum of {minimum} pixels"
        )


def set_labels(config, labels: list[str]):
    """Give the config the dataset's label set; a soft-target loss must not turn it multi-label."""
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: index for index, label in enumerate(labels)}
    config.finetuning_task = "image-classification"
    # Mixup/CutMix labels are float: transformers would pick multi-label BCE for them from the labels' dtype.
    config.problem_type = "single_label_classification"


def override_image_size(image_processor, image_size: int):
    """Make the processor resize the shortest edge and center crop to `image_size` (resize to a square if no crop)."""
    if getattr(image_processor, "do_center_crop", False) and getattr(image_processor, "crop_size", None) is not None:
        image_processor.size = SizeDict(shortest_edge=image_size)
        image_processor.crop_size = SizeDict(height=image_size, width=image_size)
    else:
        image_processor.size = SizeDict(height=image_size, width=image_size)


def new_image_processor(model_type: str):
    """
    The processor of a new model: Vision Big Bird's own, or for a peer `BitImageProcessor` set to the same steps
    (RGB, bicubic shortest-edge resize to 256, center crop 224, ImageNet mean/std): every model of a comparison sees
    the same pixels, and a peer's folder loads with plain transformers.
    """
    if model_type == "vision_bigbird":
        return VisionBigBirdImageProcessor()
    return BitImageProcessor(
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
        resample=PILImageResampling.BICUBIC,
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
    )


def build_model_and_image_processor(model_args: ModelArguments, config):
    """(model, image_processor): loaded from `--model_name_or_path` (a new head if the labels differ and
    `--ignore_mismatched_sizes`), or a new model from `config` with a new image processor."""
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}
    if model_args.model_name_or_path is not None:
        model = AutoModelForImageClassification.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            **hub_kwargs,
        )
    else:
        model = AutoModelForImageClassification.from_config(config)
    processor_name = model_args.image_processor_name or model_args.model_name_or_path
    if processor_name is not None:
        image_processor = AutoImageProcessor.from_pretrained(
            processor_name, trust_remote_code=model_args.trust_remote_code, **hub_kwargs
        )
    else:
        image_processor = new_image_processor(config.model_type)
    if model_args.image_size is not None:
        override_image_size(image_processor, model_args.image_size)
    return model, image_processor


# ---- Augmentation with per-sample seeds, collation, loss, metrics -------------


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed from (seed, epoch, sample index, ...): the same numbers give the same augmentation anywhere."""
    return int(np.random.SeedSequence([int(number) for number in numbers]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def seeded_cpu_rng(seed: int):
    """torch's CPU generator (which torchvision's transforms draw from) seeded inside the block, restored after it:
    data loading neither uses nor moves the stream of the model's own randomness. (`torch.manual_seed` would also
    reseed every accelerator, ~0.5 ms a call.)"""
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


def parse_rand_augment(spec: str | None) -> tuple[int, int] | None:
    """timm's RandAugment notation ("rand-m9-n2", "rand-m9-mstd0.5-inc1") -> (num_ops, magnitude 0..10), or None."""
    if spec is None or spec.lower() == "none":
        return None
    parts = spec.split("-")
    num_ops, magnitude = 2, None
    for part in parts[1:] if parts[0] == "rand" else [None]:
        key = part.rstrip("0123456789.") if part else None
        value = part[len(key) :] if part else ""
        if key == "m" and value.isdigit() and int(value) <= 10:
            magnitude = int(value)
        elif key == "n" and value.isdigit() and int(value) >= 1:
            num_ops = int(value)
        elif key == "inc" and value == "1":
            pass  # torchvision's posterize/solarize already grow with the magnitude, like timm's inc1
        elif key == "mstd":
            logger.warning(f"--rand_augment {spec}: {part} ignored, torchvision's RandAugment has no magnitude noise")
        else:
            magnitude = None
            break
    if magnitude is None:
        raise InvalidArgument(
            f"--rand_augment {spec} is not timm's rand-m<magnitude 0-10>[-n<ops>][-inc1] notation, e.g. rand-m9-n2"
        )
    return num_ops, magnitude


def build_train_transform(image_processor, recipe_args: RecipeArguments) -> v2.Compose:
    """
    One RGB PIL image -> (3, h, w) float: RandomResizedCrop to the processor's output size with its resampling
    filter, horizontal flip, RandAugment, rescale (the processor's 1/255), the processor's normalization, random
    erasing; all torchvision `transforms.v2` (on PIL images, their fastest path for small images).
    """
    steps = [
        v2.RandomResizedCrop(
            crop_size_of(image_processor),
            scale=(recipe_args.min_crop_scale, 1.0),
            interpolation=pil_torch_interpolation_mapping[image_processor.resample],
            antialias=True,
        ),
        v2.RandomHorizontalFlip(),
    ]
    rand_augment = parse_rand_augment(recipe_args.rand_augment)
    if rand_augment is not None:
        num_ops, magnitude = rand_augment
        # 11 bins make magnitude m mean m/10 of each op's range, as in timm; geometric ops fill with the mean color
        fill = [round(255 * mean) for mean in image_processor.image_mean]
        steps.append(
            v2.RandAugment(
                num_ops, magnitude, num_magnitude_bins=11, interpolation=InterpolationMode.BILINEAR, fill=fill
            )
        )
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    if getattr(image_processor, "do_normalize", False):
        steps.append(v2.Normalize(mean=image_processor.image_mean, std=image_processor.image_std))
    if recipe_args.random_erasing_prob > 0:
        steps.append(v2.RandomErasing(p=recipe_args.random_erasing_prob, value="random"))
    return v2.Compose(steps)


def build_batch_mix(recipe_args: RecipeArguments, num_labels: int):
    """Mixup and/or CutMix of a batch (torchvision `transforms.v2`), one picked per batch; None when both are off."""
    mixes, weights = [], []
    if recipe_args.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=recipe_args.mixup_alpha, num_classes=num_labels))
        weights.append(1 - recipe_args.mixup_switch_prob if recipe_args.cutmix_alpha > 0 else 1.0)
    if recipe_args.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=recipe_args.cutmix_alpha, num_classes=num_labels))
        weights.append(recipe_args.mixup_switch_prob if recipe_args.mixup_alpha > 0 else 1.0)
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes, p=weights)


def crop_size_of(image_processor) -> tuple[int, int]:
    """(height, width) of the images the processor produces: its crop size, or its resize size without a crop."""
    crop_size = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop_size is not None:
        return crop_size["height"], crop_size["width"]
    size = image_processor.size
    if "shortest_edge" in size:
        return size["shortest_edge"], size["shortest_edge"]
    return size["height"], size["width"]


class EvalTransform:
    """
    RGB images -> (3, H, W) tensors by the image processor itself (resize, center crop, rescale, normalize), so
    validation and test see exactly what `pipeline(...)` sees.
    """

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        pixel_values = self.image_processor(images, input_data_format="channels_last", return_tensors="pt")
        return list(pixel_values["pixel_values"])  # B x (3, H, W)


def to_examples(values: list[dict], labels: list[int], names: list[str], keys: list[tuple], eval_transform=None,
                train_transform=None, seed: int = 0) -> list[dict | None]:  # fmt: skip
    """
    `datasets.Image` values -> examples {"pixel_values": (3, H, W), "labels": int}; an image that fails to decode is
    None (dropped by `ImageCollator`), with a warning naming it. With `train_transform`, each image draws from a
    generator seeded by (seed, *its key), and its example carries the key ("sample_key") for the batch mixing.
    """
    examples, images = [None] * len(values), {}
    for position, (value, name) in enumerate(zip(values, names)):
        try:
            images[position] = decode_rgb(value)
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ...
            logger.warning(f"Skipping unreadable image {name}: {error}")
    if train_transform is None:
        pixel_values = dict(zip(images, eval_transform(list(images.values())) if images else []))
    else:
        pixel_values = {}
        for position, image in images.items():
            with seeded_cpu_rng(derived_seed(seed, *keys[position])):
                pixel_values[position] = train_transform(PIL.Image.fromarray(image)).as_subclass(torch.Tensor)
    for position, values in pixel_values.items():
        examples[position] = {"pixel_values": values, "labels": labels[position]}
        if train_transform is not None:
            examples[position]["sample_key"] = keys[position]
    return examples


class ImageClassificationDataset(torch.utils.data.Dataset):
    """
    A `datasets` split as examples (`to_examples`), decoded here so that an unreadable image is skipped, not fatal.
    With `train_transform`, the augmentation of sample i in epoch e is seeded by (seed, e, i): a resumed run sees the
    same pixels as an uninterrupted one, whatever process or dataloader worker loads the sample. The epoch lives in
    shared memory, so `set_epoch` (called at every epoch start) reaches persistent dataloader workers too.
    """

    def __init__(self, dataset, split: str, image_column_name: str, label_column_name: str, eval_transform=None,
                 train_transform=None, seed: int = 0):  # fmt: skip
        self.dataset = dataset.cast_column(image_column_name, datasets.Image(decode=False))
        self.split, self.image_column_name, self.label_column_name = split, image_column_name, label_column_name
        self.transforms = {"eval_transform": eval_transform, "train_transform": train_transform, "seed": seed}
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int):
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict | None:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict | None]:
        batch, epoch = self.dataset[list(indices)], int(self.epoch)
        values = batch[self.image_column_name]
        names = [image_name(value, self.split, index) for value, index in zip(values, indices)]
        keys = [(epoch, index) for index in indices]
        return to_examples(values, batch[self.label_column_name], names, keys, **self.transforms)


class StreamingImageClassificationDataset(torch.utils.data.IterableDataset):
    """
    A streamed `datasets` split as examples (`to_examples`). The training stream is shuffled in a buffer and cycled
    pass after pass (one endless Trainer epoch of --max_steps); the augmentation of the example at position i of
    pass p in dataloader worker w is seeded by (seed, p, w, i), so a resumed run (which re-reads the skipped
    batches) is exact for the same number of processes and workers. `datasets` splits the stream's shards among
    dataloader workers itself.
    """

    def __init__(self, dataset, split: str, image_column_name: str, label_column_name: str, eval_transform=None,
                 train_transform=None, seed: int = 0, shuffle_buffer_size: int = 1000):  # fmt: skip
        dataset = dataset.cast_column(image_column_name, datasets.Image(decode=False))
        if train_transform is not None:
            dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        self.dataset = dataset
        self.split, self.image_column_name, self.label_column_name = split, image_column_name, label_column_name
        self.transforms = {"eval_transform": eval_transform, "train_transform": train_transform, "seed": seed}

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        passes = itertools.count() if self.transforms["train_transform"] is not None else [0]
        for pass_index in passes:
            self.dataset.set_epoch(pass_index)  # reshuffles shards and buffer with seed + pass
            position = -1
            for position, example in enumerate(self.dataset):
                value = example[self.image_column_name]
                name = image_name(value, self.split, position)
                key = (pass_index, worker_id, position)
                [result] = to_examples([value], [example[self.label_column_name]], [name], [key], **self.transforms)
                if result is not None:
                    yield result
            if position == -1:
                return  # this worker's share of the stream is empty


class ImageCollator:
    """
    Examples -> {"pixel_values": (B, 3, H, W), "labels": (B,) ids, or (B, num_labels) soft targets after Mixup/CutMix}.
    Unreadable images (None) are dropped. Mixing applies to training batches only (their examples carry a sample
    key such as (epoch, index)) and draws from a generator seeded by the seed and those keys: it too resumes exactly.
    """

    def __init__(self, batch_mix=None, seed: int = 0):
        self.batch_mix, self.seed = batch_mix, seed

    def __call__(self, examples: list[dict | None]) -> dict[str, torch.Tensor]:
        kept = [example for example in examples if example is not None]
        if not kept:
            raise RuntimeError("Every image of a batch was unreadable (see the warnings above); use --check_images")
        pixel_values = torch.stack([example["pixel_values"] for example in kept])
        labels = torch.tensor([example["labels"] for example in kept])
        keys = [example.get("sample_key") for example in kept]
        if self.batch_mix is not None and keys[0] is not None:
            with seeded_cpu_rng(derived_seed(self.seed, *(number for key in keys for number in key))):
                pixel_values, labels = self.batch_mix(pixel_values, labels)
        return {"pixel_values": pixel_values, "labels": labels}


class SoftTargetCrossEntropy:
    """
    The Trainer's `compute_loss_func`: cross-entropy of the logits against label ids or soft targets (B, num_labels),
    with `--label_smoothing_factor` (PyTorch smooths soft targets as timm's mixup_target does). Summed and divided by
    the examples of the whole accumulated batch when the Trainer counts them, as its own losses are.
    """

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        if num_items_in_batch is None:
            return torch.nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, reduction="sum")
        items_per_example = labels[0].numel()  # the Trainer counts label elements: num_labels for soft targets
        return loss / (num_items_in_batch / items_per_example)


def numpy_accuracy(predictions, references) -> dict[str, float]:
    """Fraction of predictions equal to the references: the same number as evaluate's "accuracy" metric."""
    return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


def load_accuracy(cache_dir: str | None = None):
    """
    `evaluate.load("accuracy").compute` as in the example, or `numpy_accuracy` when it cannot be loaded: evaluate
    0.4 fetches the metric's script from the Hugging Face Hub and raises FileNotFoundError offline.
    """
    try:
        return evaluate.load("accuracy", cache_dir=cache_dir).compute
    except (OSError, ConnectionError, ImportError) as error:  # FileNotFoundError offline
        logger.warning(f'evaluate.load("accuracy") failed ({error}); computing accuracy with numpy instead')
        return numpy_accuracy


def build_compute_metrics(accuracy=numpy_accuracy):
    """The Trainer's `compute_metrics`: logits (N, num_labels) and label ids (N,) -> {"accuracy": ...}."""

    def compute_metrics(eval_prediction):
        predictions = np.argmax(eval_prediction.predictions, axis=1)
        return accuracy(predictions=predictions, references=eval_prediction.label_ids)

    return compute_metrics


# ---- Weight EMA, epochs, the Trainer ------------------------------------------


class WeightEMA(TrainerCallback):
    """
    Exponential moving average of the parameters, updated after every optimizer step with
    `torch.optim.swa_utils.AveragedModel` + `get_ema_multi_avg_fn` (the first update copies the weights).
    """

    file_name = "ema_state.pt"

    def __init__(self, model: torch.nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.averaged.update_parameters(model)

    def save(self, folder: str):
        torch.save(self.averaged.state_dict(), os.path.join(folder, self.file_name))

    def load(self, folder: str):
        path = os.path.join(folder, self.file_name)
        if not os.path.isfile(path):
            raise InvalidArgument(f"--ema_decay is on but the checkpoint {folder} has no {self.file_name}")
        self.averaged.load_state_dict(torch.load(path, map_location=next(self.averaged.parameters()).device))

    def copy_to(self, model: torch.nn.Module):
        with torch.no_grad():
            for parameter, averaged in zip(model.parameters(), self.averaged.module.parameters()):
                parameter.copy_(averaged)

    @contextlib.contextmanager
    def swapped_into(self, model: torch.nn.Module):
        """The averaged weights in `model` inside the block, its live weights back after it."""
        live = [parameter.detach().clone() for parameter in model.parameters()]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, saved in zip(model.parameters(), live):
                    parameter.copy_(saved)


class EpochCallback(TrainerCallback):
    """Tells the training dataset the epoch at each epoch start (also after a resume, and under DDP, where
    accelerate's own `set_epoch` does not reach the dataset)."""

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

    def ema_weights(self):
        return self.ema.swapped_into(self.model) if self.ema is not None else contextlib.nullcontext()

    def evaluate(self, *args, **kwargs):
        with self.ema_weights():
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with self.ema_weights():
            return super().predict(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # before the Trainer's files, so that trainer_state.json (written last) still marks a complete checkpoint
        if self.ema is not None and self.args.should_save:
            folder = os.path.join(self.args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            self.ema.save(folder)
        super()._save_checkpoint(model, trial)


# ---- Training, evaluation and test --------------------------------------------


def num_examples(dataset) -> int | str:
    return len(dataset) if hasattr(dataset, "__len__") else "streamed"


def log_run_summary(training_args: TrainingArguments, dataset: DatasetDict, model, image_processor, recipe_args):
    """One block with every number that identifies the run."""
    crop_size = crop_size_of(image_processor)
    global_batch_size = (
        training_args.train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps
    )
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    logger.info(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
        f"datasets {datasets.__version__}; device {training_args.device}, world size {training_args.world_size}, "
        f"dtype {next(model.parameters()).dtype}, bf16={training_args.bf16}, fp16={training_args.fp16}"
    )
    logger.info(
        f"model {model.config.model_type} ({num_parameters / 1e6:.2f}M parameters), {model.config.num_labels} labels, "
        f"resolution {crop_size[0]}x{crop_size[1]}, per-device batch size train "
        f"{training_args.per_device_train_batch_size} / eval {training_args.per_device_eval_batch_size}, "
        f"global train batch size {global_batch_size}, learning rate {training_args.learning_rate:g}"
    )
    logger.info(
        f"augmentation: crop scale ({recipe_args.min_crop_scale}, 1), flip, rand_augment={recipe_args.rand_augment}, "
        f"mixup_alpha={recipe_args.mixup_alpha}, cutmix_alpha={recipe_args.cutmix_alpha}, random_erasing_prob="
        f"{recipe_args.random_erasing_prob}, label_smoothing_factor={training_args.label_smoothing_factor}, "
        f"ema_decay={recipe_args.ema_decay}"
    )
    logger.info("splits: " + ", ".join(f"{split} {num_examples(data)}" for split, data in dataset.items()))


def run(trainer: ImageClassificationTrainer, training_args, dataset: dict, image_processor, checkpoint: str | None):
    """Train (resuming from `checkpoint`), evaluate on validation and test as asked; save model, processor, metrics."""
    if training_args.do_train:
        if checkpoint is not None:
            logger.info(f"Resuming training from {checkpoint}")
            if trainer.ema is not None:
                trainer.ema.load(checkpoint)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        if trainer.ema is not None:
            trainer.ema.copy_to(trainer.model)  # the averaged weights are the model saved and evaluated
        trainer.save_model()
        if trainer.is_world_process_zero():
            image_processor.save_pretrained(training_args.output_dir)
        metrics = {**train_result.metrics, "train_samples": num_examples(dataset["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": num_examples(dataset["validation"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.do_predict:
        metrics = trainer.predict(dataset["test"], metric_key_prefix="test").metrics
        metrics["test_samples"] = num_examples(dataset["test"])
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)


def main(args: list[str] | None = None):
    model_args, data_args, recipe_args, training_args = parse_args(args)
    setup_logging(training_args)
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, device: "
        f"{training_args.device}, n_gpu: {training_args.n_gpu}, distributed training: "
        f"{training_args.parallel_mode.value == 'distributed'}, 16-bits training: "
        f"{training_args.fp16 or training_args.bf16}"
    )
    resolve_recipe(recipe_args, training_args, given_flags(args))
    validate_arguments(model_args, data_args, recipe_args, training_args)
    # Built before the dataset, so that bad overrides and too small images fail in seconds.
    config = build_config(model_args, recipe_args)
    check_image_size(model_args.image_size, config)
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False  # every parameter gets a gradient (tests/test_model_*)
    logger.info(f"Training/evaluation parameters {training_args}")
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)
    set_seed(training_args.seed)

    # The main process builds the dataset cache first; the others then read it instead of racing to write it.
    used_splits = {"do_train": "train", "do_eval": "validation", "do_predict": "test"}
    used_splits = {flag: split for flag, split in used_splits.items() if getattr(training_args, flag)}
    with training_args.main_process_first(desc="loading and checking the dataset"):
        dataset = load_image_dataset(
            data_args, training_args.seed, model_args.cache_dir, model_args.token, tuple(used_splits.values())
        )
    for flag, split in used_splits.items():
        if split not in dataset:
            raise InvalidArgument(f"--{flag} requires a {split} split; the dataset has {sorted(dataset)}")
    set_labels(config, next(iter(dataset.values())).features[data_args.label_column_name].names)

    model, image_processor = build_model_and_image_processor(model_args, config)
    columns = {"image_column_name": data_args.image_column_name, "label_column_name": data_args.label_column_name}
    eval_transform = EvalTransform(image_processor)
    train_transform = build_train_transform(image_processor, recipe_args)
    splits = {}
    for split in ("train", "validation", "test"):
        if split not in dataset:
            continue
        kwargs = {"eval_transform": eval_transform, "seed": training_args.seed}
        kwargs["train_transform"] = train_transform if split == "train" else None
        if data_args.streaming:
            kwargs["shuffle_buffer_size"] = data_args.shuffle_buffer_size
            splits[split] = StreamingImageClassificationDataset(dataset[split], split, **columns, **kwargs)
        else:
            splits[split] = ImageClassificationDataset(dataset[split], split, **columns, **kwargs)
    log_run_summary(training_args, dataset, model, image_processor, recipe_args)

    # The image column only becomes pixel_values in the dataset: the Trainer must not drop it beforehand.
    training_args.remove_unused_columns = False
    trainer = ImageClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"] if training_args.do_train else None,
        eval_dataset=splits["validation"] if training_args.do_eval else None,
        compute_metrics=build_compute_metrics(load_accuracy(model_args.cache_dir)),
        compute_loss_func=SoftTargetCrossEntropy(training_args.label_smoothing_factor),
        processing_class=image_processor,
        data_collator=ImageCollator(build_batch_mix(recipe_args, config.num_labels), training_args.seed),
        ema_decay=recipe_args.ema_decay,
    )
    if training_args.do_train and not data_args.streaming:
        trainer.add_callback(EpochCallback(splits["train"]))
    run(trainer, training_args, splits, image_processor, training_args.resume_from_checkpoint or last_checkpoint)

    image_folders = data_args.train_dir or data_args.validation_dir or data_args.test_dir
    kwargs = {
        "finetuned_from": model_args.model_name_or_path,
        "tasks": "image-classification",
        "dataset": data_args.dataset_name or ("imagefolder" if image_folders else "fashion_mnist"),
        "tags": ["image-classification", "vision", config.model_type],
    }
    if training_args.push_to_hub:
        trainer.push_to_hub(**kwargs)
    else:
        trainer.create_model_card(**kwargs)


if __name__ == "__main__":
    try:
        main()
    except InvalidArgument as error:
        sys.exit(f"train_image_classification.py: error: {error}")
