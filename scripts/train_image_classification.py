"""Train or fine-tune an image classifier with the `Trainer`, as transformers' `run_image_classification.py` example
(same argument names and flow): Vision Big Bird, or any `AutoConfig` peer (`--model_type swin|pvt_v2|convnext|vit`).
`--recipe imagenet` is DeiT/Swin's ImageNet-1k recipe, from timm (scripts/recipes/imagenet.json). Data, exact resume,
multi-GPU commands and the output folder: docs/training.md.

    python scripts/train_image_classification.py --model_preset tiny --image_size 32 --min_crop_scale 0.5 \
        --output_dir runs/fmnist-tiny --do_train --do_eval --do_predict --num_train_epochs 10
"""

import logging
import math
import os
import sys
from dataclasses import dataclass

import datasets
import numpy as np
import PIL.Image
import safetensors.torch
import timm
import torch
import torchvision
import transformers
from huggingface_hub.errors import StrictDataclassError
from image_data import (
    SPLIT_FLAGS,
    SPLITS,
    DataTrainingArguments,
    EpochCallback,
    ImageClassificationDataset,
    ImageCollator,
    StreamingImageClassificationDataset,
    image_folder_files,
    load_image_dataset,
)
from timm.data import Mixup, create_transform
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from training_common import (
    InvalidArgument,
    arg,
    check_local_path,
    detect_last_checkpoint,
    parse_config_overrides,
    parse_with_recipe,
    save_resolved_arguments,
    setup_logging,
)
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments
from transformers.image_utils import SizeDict

# importing the package registers Vision Big Bird with AutoConfig, AutoModelForImageClassification, AutoImageProcessor
from vision_bigbird_hf import PRESETS, VisionBigBirdImageProcessor

logger = logging.getLogger(__name__)


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
    drop_path_rate: float | None = arg(None, "Stochastic depth of a new model (None: its config's default).")

    @property
    def hub_kwargs(self) -> dict:
        kwargs = {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token}
        return kwargs | {"trust_remote_code": self.trust_remote_code}


@dataclass
class RecipeArguments:
    """Augmentation (timm's `create_transform`), Mixup/CutMix (timm's `Mixup`), weight EMA (timm's `ModelEmaV3`) and the
    learning-rate rule; `--recipe NAME` makes scripts/recipes/NAME.json's values the defaults of every flag."""

    recipe: str = arg("none", "A recipe of scripts/recipes/ (imagenet: DeiT/Swin's ImageNet-1k), or none.")
    min_crop_scale: float = arg(0.08, "Smallest area fraction of the random resized crop, in (0, 1].")
    auto_augment: str | None = arg(None, "timm's auto_augment, e.g. rand-m9-mstd0.5-inc1 (RandAugment); none: off.")
    color_jitter: float = arg(0.0, "timm's colour jitter strength (timm skips it under RandAugment); 0: off.")
    random_erasing_prob: float = arg(0.0, "Probability of timm's random erasing per image; 0: off.")
    random_erasing_mode: str = arg("const", "What erasing fills in: const (zeros), rand (per channel) or pixel.")
    mixup_alpha: float = arg(0.0, "Mixup Beta(alpha, alpha); 0: off.")
    cutmix_alpha: float = arg(0.0, "CutMix Beta(alpha, alpha); 0: off.")
    mixup_switch_prob: float = arg(0.5, "With both Mixup and CutMix on, probability of CutMix.")
    ema_decay: float = arg(0.0, "Decay of a weight EMA (timm's ModelEmaV3), evaluated and saved; 0: off.")
    learning_rate_per_1024_images: float = arg(
        0.0, "Set --learning_rate to this x the global batch / 1024 (the anchors' linear scaling); 0: off."
    )


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
    "color_jitter": (lambda v: v >= 0, "must not be negative (0: off)"),
    "random_erasing_mode": (lambda v: v in ("const", "rand", "pixel"), "must be const, rand or pixel"),
    "drop_path_rate": (lambda v: v is None or 0 <= v < 1, "must be in [0, 1)"),
    "learning_rate_per_1024_images": (lambda v: v >= 0, "must not be negative (0: off)"),
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
    if recipe_args.auto_augment in ("none", ""):
        recipe_args.auto_augment = None
    try:  # timm parses its own notation: let it refuse what it does not know
        create_transform(32, is_training=True, auto_augment=recipe_args.auto_augment)
    except (AssertionError, ValueError, KeyError, IndexError) as error:
        raise InvalidArgument(
            f"--auto_augment {recipe_args.auto_augment} is not timm's notation ({type(error).__name__}: {error}); "
            "e.g. rand-m9-mstd0.5-inc1 (RandAugment), augmix-m5, original"
        ) from None
    if recipe_args.learning_rate_per_1024_images and training_args.learning_rate != TrainingArguments.learning_rate:
        raise InvalidArgument(
            f"--learning_rate {training_args.learning_rate:g} and --learning_rate_per_1024_images "
            f"{recipe_args.learning_rate_per_1024_images:g} both set the learning rate: give "
            "--learning_rate_per_1024_images 0 to use --learning_rate"
        )
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


def resolve_learning_rate(recipe_args: RecipeArguments, training_args: TrainingArguments):
    """`--learning_rate_per_1024_images`: the anchors' linear scaling of the learning rate with the global batch."""
    if recipe_args.learning_rate_per_1024_images == 0:
        return
    global_batch_size = training_args.per_device_train_batch_size * training_args.world_size
    global_batch_size *= training_args.gradient_accumulation_steps
    training_args.learning_rate = recipe_args.learning_rate_per_1024_images * global_batch_size / 1024
    logger.info(
        f"learning rate {training_args.learning_rate:g} = {recipe_args.learning_rate_per_1024_images:g} x global "
        f"batch {global_batch_size} / 1024 (--learning_rate_per_1024_images)"
    )


def build_config(model_args: ModelArguments):
    """The model config: the saved model's, or a new `--model_type` one (preset, drop path, overrides on top)."""
    if model_args.model_name_or_path is not None:
        name = model_args.config_name or model_args.model_name_or_path
        overrides = {} if model_args.drop_path_rate is None else {"drop_path_rate": model_args.drop_path_rate}
        return AutoConfig.from_pretrained(name, **model_args.hub_kwargs, **overrides)
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
        if model_args.model_preset is None:
            logger.info("No --model_name_or_path or --model_preset: training the tiny preset from scratch")
        kwargs |= PRESETS[model_args.model_preset or "tiny"]
    if model_args.drop_path_rate is not None:
        kwargs["drop_path_rate"] = model_args.drop_path_rate
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
        if any(architecture.endswith("ForMaskedImageModeling") for architecture in config.architectures or []):
            logger.info(
                f"{name} is a masked-image-modeling run: its encoder is loaded; its decoder and mask token are left out, the classifier is new"
            )
    processor_name = model_args.image_processor_name or name
    if processor_name is not None:
        image_processor = AutoImageProcessor.from_pretrained(processor_name, **hub_kwargs)
    else:
        image_processor = new_image_processor(config.model_type)
    if model_args.image_size is not None:
        override_image_size(image_processor, model_args.image_size)
    return model, image_processor


def build_train_transform(image_processor, recipe_args: RecipeArguments):
    """timm's `create_transform(is_training=True)` at the processor's crop size, filter, mean and std: one RGB PIL image
    -> (3, h, w) float (random resized crop, flip, auto-augment or colour jitter, normalize, random erasing)."""
    normalize = getattr(image_processor, "do_normalize", False)
    mean, std = (image_processor.image_mean, image_processor.image_std) if normalize else ((0.0,) * 3, (1.0,) * 3)
    return create_transform(
        crop_size_of(image_processor),
        is_training=True,
        scale=(recipe_args.min_crop_scale, 1.0),
        color_jitter=recipe_args.color_jitter or None,
        auto_augment=recipe_args.auto_augment,
        interpolation=PIL.Image.Resampling(image_processor.resample).name.lower(),
        mean=tuple(mean),
        std=tuple(std),
        re_prob=recipe_args.random_erasing_prob,
        re_mode=recipe_args.random_erasing_mode,
    )


def build_batch_mix(recipe_args: RecipeArguments, num_labels: int, label_smoothing: float) -> Mixup | None:
    """timm's `Mixup` (Mixup or CutMix per batch) with the label smoothing folded into its soft targets; None if off."""
    if recipe_args.mixup_alpha == 0 and recipe_args.cutmix_alpha == 0:
        return None
    alphas = {"mixup_alpha": recipe_args.mixup_alpha, "cutmix_alpha": recipe_args.cutmix_alpha}
    return Mixup(
        **alphas, switch_prob=recipe_args.mixup_switch_prob, label_smoothing=label_smoothing, num_classes=num_labels
    )


def crop_size_of(image_processor) -> tuple[int, int]:
    """(height, width) of the images the processor produces: its crop size, or its resize size without a crop."""
    crop_size, size = getattr(image_processor, "crop_size", None), image_processor.size
    if getattr(image_processor, "do_center_crop", False) and crop_size is not None:
        return crop_size["height"], crop_size["width"]
    return (size["shortest_edge"],) * 2 if "shortest_edge" in size else (size["height"], size["width"])


class SoftTargetLoss:
    """The Trainer's `compute_loss_func`: timm's `SoftTargetCrossEntropy` on (B, num_labels) targets; label ids (eval,
    or training without Mixup/CutMix) become label-smoothed one-hot targets first (timm's `mixup_target`)."""

    def __init__(self, num_labels: int, label_smoothing: float):
        self.num_labels, self.label_smoothing, self.loss = num_labels, label_smoothing, SoftTargetCrossEntropy()

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        elements_per_example = labels[0].numel()  # the Trainer counts label elements in `num_items_in_batch`
        if not labels.is_floating_point():
            labels = mixup_target(labels, self.num_labels, smoothing=self.label_smoothing)
        loss = self.loss(outputs["logits"].float(), labels)
        if num_items_in_batch is None:
            return loss
        return loss * len(labels) / (num_items_in_batch / elements_per_example)  # per example of the accumulated batch


def compute_metrics(eval_prediction) -> dict[str, float]:
    """The Trainer's `compute_metrics`: logits (N, num_labels) and label ids (N,) -> {"accuracy": ...}."""
    return {"accuracy": float(np.mean(np.argmax(eval_prediction.predictions, axis=1) == eval_prediction.label_ids))}


class ModelEmaCallback(transformers.TrainerCallback):
    """timm's `ModelEmaV3` of the weights, updated after every optimizer step as timm's train.py does (the first update
    copies the weights). Swapped into the model for each evaluation during training; saved as safetensors in every
    checkpoint before the Trainer's files (its trainer_state.json, written last, marks a checkpoint complete), and read
    back from the checkpoint a run resumes from."""

    file_name = "model_ema.safetensors"

    def __init__(self, decay: float, resume_from: str | None = None):
        self.decay, self.resume_from, self.ema, self.live_weights = decay, resume_from, None, None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.ema = ModelEmaV3(model, decay=self.decay)  # on the model's device, as the Trainer placed it
        if self.resume_from is not None:
            path = os.path.join(self.resume_from, self.file_name)
            if not os.path.isfile(path):
                raise InvalidArgument(
                    f"--ema_decay is on but the checkpoint {self.resume_from} has no {self.file_name}"
                )
            safetensors.torch.load_model(self.ema.module, path, device=str(next(model.parameters()).device))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model, step=state.global_step)
        self.on_epoch_end(args, state, control, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):  # what the Trainer is about to do
        if control.should_save:
            self.save(args, state, overwrite=True)
        if control.should_evaluate and self.live_weights is None:
            self.live_weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
            model.load_state_dict(self.ema.module.state_dict())

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self.live_weights is not None:  # training goes on from the live weights
            model.load_state_dict(self.live_weights)
            self.live_weights = None

    def on_save(self, args, state, control, **kwargs):
        self.save(args, state)  # a checkpoint decided after evaluation (--save_strategy best)

    def save(self, args, state, overwrite: bool = False):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if args.should_save and (overwrite or not os.path.isfile(os.path.join(folder, self.file_name))):
            os.makedirs(folder, exist_ok=True)
            safetensors.torch.save_model(self.ema.module, os.path.join(folder, self.file_name))


def num_examples(dataset) -> int | str:
    return len(dataset) if hasattr(dataset, "__len__") else "streamed"


def main(args: list[str] | None = None):
    args = sys.argv[1:] if args is None else args
    # Under torchrun without GPU/accelerator, accelerate only sets up multi-process (gloo) training when told to use
    # the CPU (as `accelerate launch --cpu` does); otherwise every process silently trains alone on the whole dataset.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    argument_groups = (ModelArguments, DataTrainingArguments, RecipeArguments, TrainingArguments)
    parser = transformers.HfArgumentParser(argument_groups, allow_abbrev=False)
    model_args, data_args, recipe_args, training_args = parse_with_recipe(parser, args)  # a flag wins over the recipe
    setup_logging(training_args)
    validate_arguments(model_args, data_args, recipe_args, training_args)
    resolve_learning_rate(recipe_args, training_args)
    # Built before the dataset, so that bad overrides and too small images fail in seconds.
    config = build_config(model_args)
    check_image_size(model_args.image_size, config)
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False  # every parameter gets a gradient (tests/test_model_*)
    logger.info(f"Training/evaluation parameters {training_args}")
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)
    transformers.set_seed(training_args.seed)

    # The main process builds the dataset cache first; the others then read it instead of racing to write it.
    needed = [split for split, flag in SPLIT_FLAGS.items() if getattr(training_args, flag)]
    with training_args.main_process_first(desc="loading the dataset"):
        dataset = load_image_dataset(data_args, training_args.seed, model_args.cache_dir, model_args.token)
    for split in [split for split in needed if split not in dataset]:
        raise InvalidArgument(f"--{SPLIT_FLAGS[split]} requires a {split} split; the dataset has {sorted(dataset)}")
    set_labels(config, next(iter(dataset.values())).features[data_args.label_column_name].names)

    model, image_processor = build_model_and_image_processor(model_args, config)
    model_args.drop_path_rate = getattr(model.config, "drop_path_rate", model_args.drop_path_rate)  # as trained
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
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, transformers "
        f"{transformers.__version__}, datasets {datasets.__version__}; model {config.model_type} "
        f"({model.num_parameters() / 1e6:.2f}M parameters, {model.dtype}), {config.num_labels} labels, resolution "
        f"{height}x{width}; batch size per device {batch_size} (eval {training_args.per_device_eval_batch_size}), "
        f"global {world_batch_size}, learning rate {training_args.learning_rate:g}"
    )
    if "train" in splits:
        logger.info(f"train transform (timm): {splits['train'].train_transform}")
    logger.info("splits: " + ", ".join(f"{split} {num_examples(data)}" for split, data in dataset.items()))

    # The image column only becomes pixel_values in the dataset: the Trainer must not drop it beforehand.
    training_args.remove_unused_columns = False
    smoothing = training_args.label_smoothing_factor
    ema = ModelEmaCallback(recipe_args.ema_decay) if recipe_args.ema_decay > 0 else None
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"] if training_args.do_train else None,
        eval_dataset=splits["validation"] if training_args.do_eval else None,
        compute_metrics=compute_metrics,
        compute_loss_func=SoftTargetLoss(config.num_labels, smoothing),
        processing_class=image_processor,
        data_collator=ImageCollator(build_batch_mix(recipe_args, config.num_labels, smoothing), training_args.seed),
        callbacks=[ema] if ema else None,
    )
    if training_args.do_train and not data_args.streaming:
        trainer.add_callback(EpochCallback(splits["train"]))
    last_checkpoint = training_args.resume_from_checkpoint or last_checkpoint
    results = {}
    if training_args.do_train:
        if last_checkpoint is not None:
            logger.info(f"Resuming training from {last_checkpoint}")
            if ema is not None:
                ema.resume_from = last_checkpoint
        train_result = trainer.train(resume_from_checkpoint=last_checkpoint)
        if ema is not None:
            trainer.model.load_state_dict(ema.ema.module.state_dict())  # the averaged weights: saved and evaluated
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
    if trainer.is_world_process_zero():  # every value the run used, recipe and flags resolved
        save_resolved_arguments(training_args.output_dir, model_args, data_args, recipe_args, training_args)

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
