#!/usr/bin/env python
"""
Train or fine-tune a Vision Big Bird image classifier with the `Trainer`, following transformers'
`examples/pytorch/image-classification/run_image_classification.py` (same argument names and flow).

Data, in order of precedence: `--dataset_name` (any `datasets` dataset), `--train_dir`/`--validation_dir`/`--test_dir`
(image folders with one sub-folder per class), or, with neither, Fashion-MNIST from the Debian package
`dataset-fashion-mnist` (`vision_bigbird_hf.fashion_mnist`): its official test split is the test set and a seeded
validation split is carved from train. Model: `--model_name_or_path` (a saved folder or Hub id) or `--model_preset
tiny|small|base` with `--config_overrides` to train from scratch.

    # from scratch on Fashion-MNIST at 32x32, on CPU or one GPU
    python scripts/train_image_classification.py --model_preset tiny --image_size 32 --min_crop_scale 0.5 \
        --output_dir runs/fmnist-tiny --do_train --do_eval --do_predict --num_train_epochs 10 \
        --per_device_train_batch_size 128 --learning_rate 1e-3 --eval_strategy epoch --save_strategy epoch

    # two processes (DDP; gloo on CPU), with torchrun or accelerate; a single .json file of arguments works too
    torchrun --nproc_per_node 2 scripts/train_image_classification.py --model_preset tiny ...
    accelerate launch --multi_gpu --num_processes 2 scripts/train_image_classification.py args.json

On a machine without GPU, `accelerate launch --num_processes 2` without `--multi_gpu` (and without an `accelerate
config` for multi-CPU/MPI) starts a single process; `--multi_gpu` goes through torchrun, which the script turns into
CPU (gloo) DDP.

The output folder holds the model, its image processor and {train,eval,test}_results.json; after
`import vision_bigbird_hf` it loads with `AutoModelForImageClassification.from_pretrained(output_dir)` and
`pipeline("image-classification", model=output_dir)`.

The building blocks (`load_image_dataset`, `build_model_and_image_processor`, `build_transforms`, `collate_fn`,
`build_compute_metrics`, ...) are plain functions so that other scripts can import them:

    sys.path.insert(0, "scripts"); from train_image_classification import load_image_dataset
"""

import ast
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import evaluate
import numpy as np
import torch
import torchvision
from datasets import ClassLabel, DatasetDict, load_dataset
from torchvision.transforms import Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop, ToTensor

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.image_utils import SizeDict, pil_torch_interpolation_mapping
from transformers.trainer_utils import get_last_checkpoint

# importing the package registers Vision Big Bird with AutoConfig, AutoModelForImageClassification, AutoImageProcessor
from vision_bigbird_hf import PRESETS, VisionBigBirdConfig, VisionBigBirdImageProcessor
from vision_bigbird_hf.fashion_mnist import DEFAULT_FASHION_MNIST_DIR, load_fashion_mnist


logger = logging.getLogger(__name__)


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
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of training examples to this "
            "value if set."
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of evaluation examples to this "
            "value if set."
        },
    )
    max_predict_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of test examples to this "
            "value if set."
        },
    )
    image_column_name: str = field(
        default="image",
        metadata={"help": "The name of the dataset column containing the image data. Defaults to 'image'."},
    )
    label_column_name: str = field(
        default="label",
        metadata={"help": "The name of the dataset column containing the labels. Defaults to 'label'."},
    )
    min_crop_scale: float = field(
        default=0.08,
        metadata={
            "help": "Smallest area fraction of RandomResizedCrop during training (0.08 is the ImageNet recipe; 0.5 or "
            "more suits small images such as Fashion-MNIST)."
        },
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
    model_preset: str | None = field(
        default=None,
        metadata={
            "help": "Train a new Vision Big Bird from scratch with this preset instead of loading a model.",
            "choices": sorted(PRESETS),
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Override preset config fields when training from scratch, as key=value pairs separated by "
            "commas; values are Python literals, e.g. "
            "'hidden_sizes=[24,48,72,96],depths=[1,1,1,1],num_heads=[3,3,3,3],drop_path_rate=0.0'."
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Pretrained config name or path if not the same as model_name."}
    )
    image_processor_name: str | None = field(
        default=None,
        metadata={
            "help": "Name or path of preprocessor config (defaults to the model's, or a new "
            "VisionBigBirdImageProcessor when training from scratch)."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Train and evaluate on image_size x image_size inputs: overrides the image processor's resize "
            "and crop sizes (saved with the model). At least 32; e.g. 32 for Fashion-MNIST."
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

    def __post_init__(self):
        if (self.model_name_or_path is None) == (self.model_preset is None):
            raise ValueError("Pass exactly one of --model_name_or_path (a saved model) or --model_preset (new model)")
        if self.config_overrides is not None and self.model_preset is None:
            raise ValueError("--config_overrides only applies when training from scratch with --model_preset")


# ---- Arguments and logging --------------------------------------------------


def parse_args(args: list[str] | None = None) -> tuple[ModelArguments, DataTrainingArguments, TrainingArguments]:
    """Command-line flags, or a single .json file holding them, into the three argument dataclasses."""
    args = sys.argv[1:] if args is None else args
    # Under torchrun on a machine without GPU/accelerator, accelerate only sets up multi-process (gloo) training when
    # told to use the CPU; otherwise every process silently trains alone on the whole dataset. Tell it, as
    # `accelerate launch --cpu` does, before TrainingArguments builds the distributed state.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(args[0]))
    return parser.parse_args_into_dataclasses(args=args)


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


def detect_last_checkpoint(training_args: TrainingArguments, overwrite_output_dir: bool) -> str | None:
    """The last `checkpoint-*` in output_dir to resume from, unless told to overwrite; refuse other non-empty dirs."""
    if not (os.path.isdir(training_args.output_dir) and training_args.do_train) or overwrite_output_dir:
        return None
    last_checkpoint = get_last_checkpoint(training_args.output_dir)
    if last_checkpoint is None and len(os.listdir(training_args.output_dir)) > 0:
        raise ValueError(
            f"Output directory ({training_args.output_dir}) already exists and is not empty. "
            "Use --overwrite_output_dir to overcome."
        )
    if last_checkpoint is not None and training_args.resume_from_checkpoint is None:
        logger.info(
            f"Checkpoint detected, resuming training at {last_checkpoint}. To avoid this behavior, change "
            "the `--output_dir` or add `--overwrite_output_dir` to train from scratch."
        )
    return last_checkpoint


# ---- Dataset: loading, splits, selection ------------------------------------


def load_raw_dataset(data_args: DataTrainingArguments, cache_dir: str | None = None, token: str | None = None):
    """A `DatasetDict` from `--dataset_name`, from image folders, or Fashion-MNIST when neither is given."""
    if data_args.dataset_name is not None:
        return load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    folders = {"train": data_args.train_dir, "validation": data_args.validation_dir, "test": data_args.test_dir}
    data_files = {split: os.path.join(folder, "**") for split, folder in folders.items() if folder is not None}
    if data_files:
        return load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
    logger.info(f"No --dataset_name or image folder given: using Fashion-MNIST from {data_args.fashion_mnist_dir}")
    return load_fashion_mnist(data_args.fashion_mnist_dir)


def check_columns(dataset: DatasetDict, data_args: DataTrainingArguments) -> DatasetDict:
    """Check the image and label columns exist; turn a label column of strings or ints into a `ClassLabel`."""
    features = next(iter(dataset.values())).features
    columns = {"--image_column_name": data_args.image_column_name, "--label_column_name": data_args.label_column_name}
    for flag, name in columns.items():
        if name not in features:
            raise ValueError(f"{flag} {name} not found in the dataset; set {flag} to one of {', '.join(features)}")
    if not isinstance(features[data_args.label_column_name], ClassLabel):
        dataset = dataset.class_encode_column(data_args.label_column_name)
    return dataset


def split_validation(dataset: DatasetDict, train_val_split: float, seed: int) -> DatasetDict:
    """Carve a validation split out of train when there is none; seeded, so every process gets the same split."""
    if "validation" in dataset or "train" not in dataset or train_val_split <= 0:
        return dataset
    test_size = int(train_val_split) if train_val_split >= 1 else train_val_split
    split = dataset["train"].train_test_split(test_size=test_size, seed=seed)
    dataset["train"], dataset["validation"] = split["train"], split["test"]
    return dataset


def select_samples(dataset, max_samples: int | None, seed: int):
    """A seeded random subset of `max_samples` examples (all of them if there are fewer or `max_samples` is None)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def load_image_dataset(data_args: DataTrainingArguments, seed: int, cache_dir=None, token=None) -> DatasetDict:
    """
    The dataset the script trains on: loaded (`load_raw_dataset`), checked (`check_columns`), with a validation split
    carved from train if needed (`split_validation`) and each split capped by `--max_{train,eval,predict}_samples`.
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
    return DatasetDict({split: select_samples(dataset[split], max_samples.get(split), seed) for split in splits})


# ---- Model and image processor ----------------------------------------------


def parse_config_overrides(overrides: str | None) -> dict:
    """
    "key=value,key=value" -> dict. Values are Python literals, so lists may hold commas ("depths=[1,1,2,1]");
    `true`/`false`/`none` in any case are booleans/None and anything else is kept as a string ("hidden_act=gelu").
    """
    if not overrides:
        return {}
    pairs, depth, start = [], 0, 0
    for position, character in enumerate(overrides + ","):
        if character in "[(":
            depth += 1
        elif character in "])":
            depth -= 1
        elif character == "," and depth == 0:
            pairs.append(overrides[start:position])
            start = position + 1
    words = {"true": True, "false": False, "none": None}
    parsed = {}
    for pair in filter(str.strip, pairs):
        key, separator, value = pair.partition("=")
        if not separator:
            raise ValueError(f"--config_overrides: {pair!r} is not of the form key=value")
        value = value.strip()
        try:
            parsed[key.strip()] = words[value.lower()] if value.lower() in words else ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key.strip()] = value
    return parsed


def build_config(model_args: ModelArguments, labels: list[str]):
    """The model config with the label set, from the saved model or from `--model_preset` + `--config_overrides`."""
    label_kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
        "finetuning_task": "image-classification",
    }
    if model_args.model_preset is None:
        return AutoConfig.from_pretrained(
            model_args.config_name or model_args.model_name_or_path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
            **label_kwargs,
        )
    overrides = parse_config_overrides(model_args.config_overrides)
    known_fields = {config_field.name for config_field in dataclasses.fields(VisionBigBirdConfig)}
    known_fields |= set(VisionBigBirdConfig.attribute_map)
    unknown = sorted(set(overrides) - known_fields)
    if unknown:
        raise ValueError(f"--config_overrides: {unknown} are not VisionBigBirdConfig fields")
    if model_args.image_size is not None:
        overrides.setdefault("image_size", model_args.image_size)
    return VisionBigBirdConfig.from_preset(model_args.model_preset, **overrides, **label_kwargs)


def override_image_size(image_processor, image_size: int):
    """Make the processor resize the shortest edge and center crop to `image_size` (resize to a square if no crop)."""
    if getattr(image_processor, "do_center_crop", False) and getattr(image_processor, "crop_size", None) is not None:
        image_processor.size = SizeDict(shortest_edge=image_size)
        image_processor.crop_size = SizeDict(height=image_size, width=image_size)
    else:
        image_processor.size = SizeDict(height=image_size, width=image_size)


def build_model_and_image_processor(model_args: ModelArguments, labels: list[str]):
    """(model, image_processor): loaded from `--model_name_or_path` (a new head if the labels differ and
    `--ignore_mismatched_sizes`), or a new model from `--model_preset` with a default `VisionBigBirdImageProcessor`."""
    config = build_config(model_args, labels)
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}
    if model_args.model_preset is None:
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
        image_processor = VisionBigBirdImageProcessor()
    if model_args.image_size is not None:
        override_image_size(image_processor, model_args.image_size)
    return model, image_processor


# ---- Transforms, collation, metrics -----------------------------------------


def crop_size_of(image_processor) -> tuple[int, int]:
    """(height, width) of the images the processor produces: its crop size, or its resize size without a crop."""
    crop_size = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop_size is not None:
        return crop_size["height"], crop_size["width"]
    size = image_processor.size
    if "shortest_edge" in size:
        return size["shortest_edge"], size["shortest_edge"]
    return size["height"], size["width"]


class TrainTransforms:
    """
    Training augmentation of a list of RGB PIL images into (3, H, W) tensors: RandomResizedCrop to the processor's
    output size with its resampling filter, horizontal flip, ToTensor (the processor's rescale by 1/255) and the
    processor's normalization.
    """

    def __init__(self, image_processor, min_crop_scale: float = 0.08):
        interpolation = pil_torch_interpolation_mapping[image_processor.resample]
        steps = [
            RandomResizedCrop(crop_size_of(image_processor), scale=(min_crop_scale, 1.0), interpolation=interpolation),
            RandomHorizontalFlip(),
            ToTensor(),
        ]
        if getattr(image_processor, "do_normalize", False):
            steps.append(Normalize(mean=image_processor.image_mean, std=image_processor.image_std))
        self.transform = Compose(steps)

    def __call__(self, images: list) -> list[torch.Tensor]:
        return [self.transform(image) for image in images]


class EvalTransforms:
    """
    Evaluation preprocessing of a list of RGB PIL images into (3, H, W) tensors: the image processor itself (resize,
    center crop, rescale, normalize), so validation and test see exactly what `pipeline(...)` sees. torchvision's
    `Resize` + `CenterCrop` would be close but not equal: `CenterCrop` rounds the crop offset where the processors
    floor it, a one-pixel shift for some image sizes.
    """

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images: list) -> list[torch.Tensor]:
        return list(self.image_processor(images, return_tensors="pt")["pixel_values"])  # B x (3, H, W)


def build_transforms(image_processor, min_crop_scale: float = 0.08) -> tuple[TrainTransforms, EvalTransforms]:
    """(train, eval) transforms from the image processor's sizes, resampling, mean and std."""
    return TrainTransforms(image_processor, min_crop_scale), EvalTransforms(image_processor)


class BatchTransform:
    """
    `Dataset.set_transform` callable: a batch of examples -> {"pixel_values": [(3, H, W) tensors], "labels": [...]}.
    Grayscale, palette and RGBA images are converted to RGB first. A class rather than a closure, so that dataloader
    workers can pickle it.
    """

    def __init__(self, images_transform, image_column_name: str = "image", label_column_name: str = "label"):
        self.images_transform = images_transform
        self.image_column_name = image_column_name
        self.label_column_name = label_column_name

    def __call__(self, example_batch: dict) -> dict:
        images = [image.convert("RGB") for image in example_batch[self.image_column_name]]
        return {"pixel_values": self.images_transform(images), "labels": example_batch[self.label_column_name]}


def collate_fn(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Examples from a `BatchTransform`-ed dataset -> {"pixel_values": (B, 3, H, W), "labels": (B,)}."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    labels = torch.tensor([example["labels"] for example in examples])
    return {"pixel_values": pixel_values, "labels": labels}


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


# ---- Training, evaluation and test ------------------------------------------


def log_run_summary(training_args: TrainingArguments, dataset: DatasetDict, model, image_processor):
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
        f"global train batch size {global_batch_size}"
    )
    logger.info("splits: " + ", ".join(f"{split} {len(data)}" for split, data in dataset.items()))


def run(trainer: Trainer, training_args, dataset: DatasetDict, image_processor, checkpoint: str | None):
    """Train (resuming from `checkpoint`), evaluate on validation and test as asked; save model, processor, metrics."""
    if training_args.do_train:
        if checkpoint is not None:
            logger.info(f"Resuming training from {checkpoint}")
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        if trainer.is_world_process_zero():
            image_processor.save_pretrained(training_args.output_dir)
        metrics = {**train_result.metrics, "train_samples": len(dataset["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    if training_args.do_eval:
        metrics = {**trainer.evaluate(), "eval_samples": len(dataset["validation"])}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.do_predict:
        metrics = trainer.predict(dataset["test"], metric_key_prefix="test").metrics
        metrics["test_samples"] = len(dataset["test"])
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)


def main(args: list[str] | None = None):
    model_args, data_args, training_args = parse_args(args)
    setup_logging(training_args)
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, device: "
        f"{training_args.device}, n_gpu: {training_args.n_gpu}, distributed training: "
        f"{training_args.parallel_mode.value == 'distributed'}, 16-bits training: "
        f"{training_args.fp16 or training_args.bf16}"
    )
    logger.info(f"Training/evaluation parameters {training_args}")
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)
    set_seed(training_args.seed)

    # The main process builds the dataset cache first; the others then read it instead of racing to write it.
    with training_args.main_process_first(desc="loading the dataset"):
        dataset = load_image_dataset(
            data_args, training_args.seed, cache_dir=model_args.cache_dir, token=model_args.token
        )
    for flag, split in (("do_train", "train"), ("do_eval", "validation"), ("do_predict", "test")):
        if getattr(training_args, flag) and split not in dataset:
            raise ValueError(f"--{flag} requires a {split} split; the dataset has {sorted(dataset)}")
    labels = next(iter(dataset.values())).features[data_args.label_column_name].names

    model, image_processor = build_model_and_image_processor(model_args, labels)
    train_transforms, eval_transforms = build_transforms(image_processor, data_args.min_crop_scale)
    split_transforms = {"train": train_transforms, "validation": eval_transforms, "test": eval_transforms}
    for split, images_transform in split_transforms.items():
        if split in dataset:
            dataset[split].set_transform(
                BatchTransform(images_transform, data_args.image_column_name, data_args.label_column_name)
            )
    log_run_summary(training_args, dataset, model, image_processor)

    # The image column only becomes pixel_values inside the transform: the Trainer must not drop it beforehand.
    training_args.remove_unused_columns = False
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"] if training_args.do_train else None,
        eval_dataset=dataset["validation"] if training_args.do_eval else None,
        compute_metrics=build_compute_metrics(load_accuracy(model_args.cache_dir)),
        processing_class=image_processor,
        data_collator=collate_fn,
    )
    run(trainer, training_args, dataset, image_processor, training_args.resume_from_checkpoint or last_checkpoint)

    image_folders = data_args.train_dir or data_args.validation_dir or data_args.test_dir
    kwargs = {
        "finetuned_from": model_args.model_name_or_path,
        "tasks": "image-classification",
        "dataset": data_args.dataset_name or ("imagefolder" if image_folders else "fashion_mnist"),
        "tags": ["image-classification", "vision", "vision_bigbird"],
    }
    if training_args.push_to_hub:
        trainer.push_to_hub(**kwargs)
    else:
        trainer.create_model_card(**kwargs)


if __name__ == "__main__":
    main()
