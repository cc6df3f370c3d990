"""Pretrain Vision Big Bird without labels by masked image modeling (SimMIM, Xie et al., arXiv 2111.09886) with the
`Trainer`, as transformers' `examples/pytorch/image-pretraining/run_mim.py` does for Swin (same flag names). The data
flags are the classification script's (image folders, `--dataset_name`, `--streaming`, Fashion-MNIST by default);
labels, if the data has any, are not used. `--recipe simmim` is SimMIM's Swin pretraining (scripts/recipes/).
Fine-tune the result with `train_image_classification.py --model_name_or_path OUTPUT_DIR`. Docs: docs/pretraining.md.

    python scripts/pretrain_masked_image_modeling.py --model_preset tiny --image_size 32 --mask_patch_size 8 \
        --output_dir runs/mim-fmnist --do_train --do_eval --num_train_epochs 10
"""

import logging
import sys
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import transformers
from datasets import Dataset
from image_data import (
    SPLIT_FLAGS,
    DataTrainingArguments,
    EpochCallback,
    SeededImageDataset,
    StreamingSeededImageDataset,
    load_image_dataset,
    seeded_cpu_rng,
)
from torchvision.transforms import v2
from training_common import (
    InvalidArgument,
    arg,
    check_local_path,
    detect_last_checkpoint,
    parse_config_overrides,
    read_recipe,
    save_resolved_arguments,
    setup_logging,
)
from transformers import AutoModelForMaskedImageModeling, Trainer, TrainingArguments

from vision_bigbird_hf import PRESETS, VisionBigBirdConfig, VisionBigBirdImageProcessor

logger = logging.getLogger(__name__)
STEM_STRIDE, ENCODER_STRIDE = 4, 32  # the stem's token grid, and the last stage's (sides must be multiples of it)


@dataclass
class ModelArguments:
    """A new Vision Big Bird (`--model_preset`, `--config_overrides`) or a saved one to go on pretraining."""

    model_name_or_path: str | None = arg(None, "A saved model folder (or Hub id) to go on pretraining from.")
    model_preset: str | None = arg(None, "Size of a new Vision Big Bird (None: tiny).", choices=sorted(PRESETS))
    config_overrides: str | None = arg(None, "A JSON object set on the new config, e.g. '{\"depths\": [1, 1, 1, 1]}'.")
    image_size: int = arg(192, "Train on image_size x image_size crops (a multiple of 32).")
    drop_path_rate: float | None = arg(None, "Stochastic depth of a new model (None: the preset's).")
    cache_dir: str | None = arg(None, "Where to store the models and datasets downloaded from the Hub.")
    model_revision: str = arg("main", "The model version to use (branch name, tag name or commit id).")
    token: str | None = arg(None, "The token for remote files (default: the `hf auth login` one).")


@dataclass
class MaskingArguments:
    """SimMIM's masking: square patches of `mask_patch_size` pixels masked at random, `mask_ratio` of them."""

    recipe: str = arg("none", "simmim: SimMIM's Swin pretraining values for every flag not given, or none.")
    mask_patch_size: int = arg(32, "Side of a masked square in pixels (a multiple of 4 dividing image_size).")
    mask_ratio: float = arg(0.6, "Fraction of the mask patches masked, in (0, 1).")
    min_crop_scale: float = arg(0.67, "Smallest area fraction of RandomResizedCrop, in (0, 1].")
    plot_reconstructions: str | None = arg(None, "After training: 8 held-out images, masked and rebuilt, to this PNG.")


class MaskGenerator:
    """SimMIM's `MaskGenerator`: of the (size / mask_patch_size)^2 mask patches, ceil(ratio * count) chosen at random
    -> `bool_masked_pos` over the stem's (size / 4)^2 token grid, raster order."""

    def __init__(self, image_size: int, mask_patch_size: int, mask_ratio: float):
        self.patches_per_side = image_size // mask_patch_size
        self.scale = mask_patch_size // STEM_STRIDE
        self.mask_count = int(np.ceil(self.patches_per_side**2 * mask_ratio))

    def __call__(self, generator: np.random.Generator) -> torch.Tensor:
        chosen = generator.permutation(self.patches_per_side**2)[: self.mask_count]
        mask = np.zeros(self.patches_per_side**2, dtype=bool)
        mask[chosen] = True
        mask = mask.reshape(self.patches_per_side, self.patches_per_side)
        return torch.from_numpy(mask.repeat(self.scale, axis=0).repeat(self.scale, axis=1).flatten())  # (N,)


class MaskedImages:
    """{"pixel_values": (3, S, S), "bool_masked_pos": (N,)}: SimMIM's crop, flip and normalization, and a mask, drawn
    by generators seeded per sample by the dataset (seed, epoch, index), so a resumed run sees the same pixels and
    masks; held-out splits stay at epoch 0: the same crop and mask of each image at every evaluation."""

    def set_up(self, image_processor, masking_args: "MaskingArguments", image_size: int, train: bool):
        scale = (masking_args.min_crop_scale, 1.0) if train else (1.0, 1.0)
        self.transform = v2.Compose([
            v2.RandomResizedCrop(image_size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=v2.InterpolationMode.BICUBIC),
            v2.RandomHorizontalFlip(0.5 if train else 0.0),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=image_processor.image_mean, std=image_processor.image_std),
        ])  # fmt: skip
        self.mask_generator = MaskGenerator(image_size, masking_args.mask_patch_size, masking_args.mask_ratio)

    def example(self, image: np.ndarray, sample_seed: int) -> dict:
        with seeded_cpu_rng(sample_seed):
            pixel_values = self.transform(PIL.Image.fromarray(image)).as_subclass(torch.Tensor)
        return {
            "pixel_values": pixel_values,
            "bool_masked_pos": self.mask_generator(np.random.default_rng(sample_seed)),
        }


class MaskedImageDataset(MaskedImages, SeededImageDataset):
    def __init__(self, dataset, image_column, image_processor, masking_args, image_size, seed, train):
        SeededImageDataset.__init__(self, dataset, image_column, seed)
        self.set_up(image_processor, masking_args, image_size, train)


class StreamingMaskedImageDataset(MaskedImages, StreamingSeededImageDataset):
    def __init__(self, dataset, image_column, image_processor, masking_args, image_size, seed, train):
        StreamingSeededImageDataset.__init__(self, dataset, image_column, seed, endless=train)
        self.set_up(image_processor, masking_args, image_size, train)


def validate_arguments(model_args, data_args: DataTrainingArguments, masking_args, training_args: TrainingArguments):
    size, patch = model_args.image_size, masking_args.mask_patch_size
    if size < ENCODER_STRIDE or size % ENCODER_STRIDE:
        raise InvalidArgument(f"--image_size {size} must be a positive multiple of {ENCODER_STRIDE} (the last stride)")
    if patch < STEM_STRIDE or patch % STEM_STRIDE or size % patch:
        raise InvalidArgument(f"--mask_patch_size {patch} must be a multiple of {STEM_STRIDE} that divides {size}")
    if not 0 < masking_args.mask_ratio < 1:
        raise InvalidArgument(f"--mask_ratio {masking_args.mask_ratio} must be in (0, 1)")
    if not 0 < masking_args.min_crop_scale <= 1:
        raise InvalidArgument(f"--min_crop_scale {masking_args.min_crop_scale} must be in (0, 1]")
    if model_args.model_name_or_path is not None:
        check_local_path("--model_name_or_path", model_args.model_name_or_path)
        for flag in ("model_preset", "config_overrides", "drop_path_rate"):
            if getattr(model_args, flag) is not None:
                raise InvalidArgument(f"--{flag} builds a new model; it cannot be used with --model_name_or_path")
    if training_args.do_train and training_args.max_steps == 0:
        raise InvalidArgument("--max_steps 0 must be positive (or -1: use epochs)")
    if data_args.streaming and data_args.dataset_name is None and data_args.train_dir is None:
        raise InvalidArgument("--streaming needs --dataset_name or --train_dir (Fashion-MNIST is built in memory)")
    if data_args.streaming and training_args.do_train and training_args.max_steps < 1:
        raise InvalidArgument("--streaming has no dataset length to count epochs with: give --max_steps")


def build_model(model_args: ModelArguments):
    if model_args.model_name_or_path is not None:
        kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}
        return AutoModelForMaskedImageModeling.from_pretrained(model_args.model_name_or_path, **kwargs)
    overrides = parse_config_overrides(model_args.config_overrides)
    if model_args.drop_path_rate is not None:
        overrides["drop_path_rate"] = model_args.drop_path_rate
    try:
        config = VisionBigBirdConfig.from_preset(model_args.model_preset or "tiny", **overrides)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"--config_overrides {model_args.config_overrides}: {error}") from None
    return AutoModelForMaskedImageModeling.from_config(config)


def collate(examples: list[dict | None]) -> dict[str, torch.Tensor]:
    kept = [example for example in examples if example is not None]  # unreadable images were warned about
    if not kept:
        raise RuntimeError("Every image of a batch was unreadable (named in the warnings above)")
    return torch.utils.data.default_collate(kept)


def plot_reconstructions(model, dataset: MaskedImageDataset, image_processor, path: str, count: int = 8):
    """Rows: held-out images, the model's input (masked patches grey), the reconstruction (masked patches pasted in)."""
    from matplotlib.figure import Figure

    examples = [dataset[index] for index in range(min(count, len(dataset)))]
    batch = collate(examples)
    model.eval()
    with torch.no_grad():
        inputs = {name: tensor.to(model.device) for name, tensor in batch.items()}
        reconstruction = model(**inputs).reconstruction.cpu()
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    size = batch["pixel_values"].shape[-1]
    mask = batch["bool_masked_pos"].reshape(-1, 1, size // STEM_STRIDE, size // STEM_STRIDE).float()
    mask = torch.nn.functional.interpolate(mask, scale_factor=STEM_STRIDE)  # (B, 1, S, S)
    original = (batch["pixel_values"] * std + mean).clamp(0, 1)
    rows = {
        "original": original,
        "masked (input)": original * (1 - mask) + 0.5 * mask,
        "reconstructed": original * (1 - mask) + (reconstruction * std + mean).clamp(0, 1) * mask,
    }
    figure = Figure(figsize=(1.2 * len(examples), 3.9))
    axes = figure.subplots(len(rows), len(examples), squeeze=False)
    for row, (title, images) in enumerate(rows.items()):
        for column, image in enumerate(images):
            axes[row][column].imshow(image.permute(1, 2, 0).numpy())
            axes[row][column].set_axis_off()
        axes[row][0].set_title(title, fontsize=8, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    logger.info(f"Reconstructions of {len(examples)} held-out images written to {path}")


def main(args: list[str] | None = None):
    args = sys.argv[1:] if args is None else args
    parser = transformers.HfArgumentParser(
        (ModelArguments, DataTrainingArguments, MaskingArguments, TrainingArguments), allow_abbrev=False
    )
    read_recipe(parser, args)  # its values become the defaults: a flag on the command line always wins
    model_args, data_args, masking_args, training_args = parser.parse_args_into_dataclasses(args=args)
    setup_logging(training_args)
    validate_arguments(model_args, data_args, masking_args, training_args)
    last_checkpoint = detect_last_checkpoint(training_args, data_args.overwrite_output_dir)
    transformers.set_seed(training_args.seed)
    model = build_model(model_args)  # before the data: a bad config fails in seconds
    image_processor = VisionBigBirdImageProcessor(
        size={"height": model_args.image_size, "width": model_args.image_size}, do_center_crop=False
    )

    needed = [split for split, flag in SPLIT_FLAGS.items() if getattr(training_args, flag)]
    with training_args.main_process_first(desc="loading the dataset"):
        dataset = load_image_dataset(
            data_args, training_args.seed, model_args.cache_dir, model_args.token, needs_labels=False
        )
    kwargs = {"image_processor": image_processor, "masking_args": masking_args, "image_size": model_args.image_size}
    dataset_class = StreamingMaskedImageDataset if data_args.streaming else MaskedImageDataset
    splits = {
        split: dataset_class(dataset[split], data_args.image_column_name, seed=training_args.seed, train=split == "train", **kwargs)
        for split in ("train", "validation")
        if split in dataset
    }  # fmt: skip
    for split in [split for split in ("train", "validation") if split in needed and split not in splits]:
        raise InvalidArgument(f"--{SPLIT_FLAGS[split]} requires a {split} split; the dataset has {sorted(dataset)}")
    logger.info(
        f"model vision_bigbird ({model.num_parameters() / 1e6:.2f}M parameters), {model_args.image_size}x"
        f"{model_args.image_size} crops, mask patch {masking_args.mask_patch_size}, mask ratio {masking_args.mask_ratio}; "
        + ", ".join(
            f"{split} {len(data) if hasattr(data, '__len__') else 'streamed'}" for split, data in splits.items()
        )
    )

    training_args.remove_unused_columns = False  # the image column becomes pixel_values in the dataset
    # the mask plays the labels' part: with it the model returns its loss, which is all evaluation reports
    training_args.label_names, training_args.prediction_loss_only = ["bool_masked_pos"], True
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits.get("train") if training_args.do_train else None,
        eval_dataset=splits.get("validation") if training_args.do_eval else None,
        processing_class=image_processor,
        data_collator=collate,
    )
    if training_args.do_train:
        if not data_args.streaming:
            trainer.add_callback(EpochCallback(splits["train"]))
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
        trainer.save_model()
        trainer.save_state()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        if trainer.is_world_process_zero():
            save_resolved_arguments(training_args.output_dir, model_args, data_args, masking_args, training_args)
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    held_out = "test" if "test" in dataset else "validation"
    if masking_args.plot_reconstructions and trainer.is_world_process_zero() and held_out in dataset:
        plot_dataset = MaskedImageDataset(
            Dataset.from_list(list(dataset[held_out].take(8))) if data_args.streaming else dataset[held_out],
            data_args.image_column_name, seed=training_args.seed, train=False, **kwargs,
        )  # fmt: skip
        plot_reconstructions(trainer.model, plot_dataset, image_processor, masking_args.plot_reconstructions)
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "masked-image-modeling"}
    card |= {"dataset": data_args.dataset_name or "imagefolder", "tags": ["masked-image-modeling", "vision_bigbird"]}
    if training_args.push_to_hub:
        trainer.push_to_hub(**card)
    else:
        trainer.create_model_card(**card)


if __name__ == "__main__":
    try:
        main()
    except InvalidArgument as error:
        sys.exit(f"pretrain_masked_image_modeling.py: error: {error}")
