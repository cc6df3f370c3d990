"""Image data for the training scripts (train_image_classification.py, pretrain_masked_image_modeling.py): the data
flags, image folders, Hub datasets and Fashion-MNIST as a checked `DatasetDict`, faithful RGB decoding, the datasets
and collator of a classifier, and augmentation seeded per (seed, epoch, sample) so that a resumed run sees the same
pixels. An unreadable image is named in a warning and left out of its batch whenever a batch meets it (docs/training.md,
"Unreadable images": cheaper than decoding a whole folder before training, and the only way for a stream).
Imported as a sibling module (scripts/ is their folder); never run.
"""

import contextlib
import itertools
import logging
import math
import os
import random
from dataclasses import dataclass

import datasets
import numpy as np
import PIL.Image
import torch
import transformers
from datasets import ClassLabel, DatasetDict, load_dataset
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR, load_fashion_mnist
from timm.data.mixup import mixup_target
from training_common import InvalidArgument, arg
from transformers.image_transforms import convert_to_rgb

from vision_bigbird_hf.image_decoding import to_8bit

logger = logging.getLogger(__name__)

SPLIT_FLAGS = {"train": "do_train", "validation": "do_eval", "test": "do_predict"}
SPLITS = tuple(SPLIT_FLAGS)
SPLIT_DIR_FLAGS = {"train": "train_dir", "validation": "validation_dir", "test": "test_dir"}


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
    streaming: bool = arg(False, "Stream the dataset instead of preparing an Arrow copy; needs --max_steps.")
    shuffle_buffer_size: int = arg(1000, "With --streaming: examples held for shuffling.")
    overwrite_output_dir: bool = arg(False, "Start anew in a non-empty output_dir instead of resuming from it.")


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


def check_columns(dataset: DatasetDict, data_args: DataTrainingArguments, needs_labels: bool = True) -> DatasetDict:
    """Check the image column exists and, with `needs_labels`, that the label column exists and holds two classes or
    more; make it a `ClassLabel`."""
    features, label_column = next(iter(dataset.values())).features, data_args.label_column_name
    if features is None:
        raise InvalidArgument("--streaming: this dataset does not declare its features; leave --streaming out")
    columns = [("image_column_name", data_args.image_column_name)]
    columns += [("label_column_name", label_column)] if needs_labels else []
    for flag, name in columns:
        if name not in features:
            raise InvalidArgument(
                f"--{flag} {name} not found in the dataset; set --{flag} to one of {', '.join(features)}"
            )
    if not needs_labels:
        return dataset
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


def load_image_dataset(data_args: DataTrainingArguments, seed: int, cache_dir=None, token=None, needs_labels=True):
    """`--dataset_name`, image folders or Fashion-MNIST: checked, a validation split carved from train if none, each
    split capped by --max_*_samples. Images stay undecoded until a batch needs them."""
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
    dataset, fraction = check_columns(dataset, data_args, needs_labels), data_args.train_val_split
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
    return dataset


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed from (seed, epoch, sample index, ...): the same numbers give the same augmentation anywhere."""
    return int(np.random.SeedSequence([int(number) for number in numbers]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def seeded_cpu_rng(seed: int):
    """Python's `random`, numpy's global generator and torch's CPU generator seeded in the block, their states restored
    after: timm's transforms and `Mixup` draw from all three (its RandAugment picks ops with `np.random.choice`)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # the CPU only: `torch.manual_seed` would reseed every accelerator
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)  # the low bits of a `derived_seed` hash
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class EpochCallback(transformers.TrainerCallback):
    """Tells the training dataset the epoch (also after a resume, and under DDP, where accelerate's does not)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch or 0))


def stream_rows(dataset, endless: bool):
    """Rows of a streamed split as (seed key, row), the key (pass, dataloader worker, position): `endless` (training)
    cycles the stream, one endless epoch of --max_steps, reshuffled at each pass; a resume re-reads it to the same
    keys."""
    worker_id = getattr(torch.utils.data.get_worker_info(), "id", 0)  # None in the main process
    for pass_index in itertools.count() if endless else [0]:
        dataset.set_epoch(pass_index)  # reshuffles shards and buffer with seed + pass
        position = -1
        for position, row in enumerate(dataset):
            yield (pass_index, worker_id, position), row
        if position == -1:
            return  # this worker's share of the stream is empty


class SeededImageDataset(torch.utils.data.Dataset):
    """A `datasets` split of images -> `self.example(image, sample_seed)` per sample ((H, W, 3) uint8 RGB in, None for
    an unreadable image, warned), the seed derived from (seed, epoch, index): the same pixels on any process, worker
    or resume. `set_epoch` (by `EpochCallback`) reaches persistent dataloader workers through shared memory."""

    def __init__(self, dataset, image_column: str, seed: int):
        self.dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.image_column, self.seed = image_column, seed
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int):
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict | None:
        image, error, name = try_decode_rgb(
            self.dataset[index][self.image_column], self.dataset.split or "data", index
        )
        if error:
            logger.warning(f"Skipping unreadable image {name}: {error}")
            return None
        return self.example(image, derived_seed(self.seed, int(self.epoch), index))

    def example(self, image: np.ndarray, sample_seed: int) -> dict:
        raise NotImplementedError


class StreamingSeededImageDataset(torch.utils.data.IterableDataset):
    """The streamed twin of `SeededImageDataset`: each example seeded by its `stream_rows` key, (seed, pass, worker,
    position)."""

    def __init__(self, dataset, image_column: str, seed: int, endless: bool):
        self.dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.image_column, self.seed, self.endless = image_column, seed, endless

    def __iter__(self):
        for key, row in stream_rows(self.dataset, self.endless):
            image, error, name = try_decode_rgb(row[self.image_column], "stream", key[-1])
            if error:
                logger.warning(f"Skipping unreadable image {name}: {error}")
                continue
            yield self.example(image, derived_seed(self.seed, *key))

    def example(self, image: np.ndarray, sample_seed: int) -> dict:
        raise NotImplementedError


class ImageExamples:
    """A classifier's examples: `datasets.Image` values -> {"pixel_values": (3, H, W), "labels": int} (None if
    unreadable, named in a warning); with `train_transform`, augmented under generators seeded by (seed, *key), the key
    kept as "sample_key" for mixing; without, the image processor's evaluation pixels, as `pipeline` makes them."""

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
                    pixel_values[position] = self.train_transform(PIL.Image.fromarray(image))
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
        for key, row in stream_rows(self.dataset, endless=self.train_transform is not None):
            [result] = self.examples(
                {name: [value] for name, value in row.items()}, [key[-1]], [key]
            )  # a batch of one
            if result is not None:
                yield result


class ImageCollator:
    """Examples (None: unreadable, dropped) -> {"pixel_values": (B, 3, H, W), "labels": (B,) ids, or (B, num_labels)
    soft targets after `batch_mix` (timm's `Mixup`), which draws under generators seeded by the batch's sample keys.
    timm's `Mixup` pairs image i with image B-1-i, so an odd batch's last example (an epoch's last batch, or one that
    lost an unreadable image) is left unmixed, its targets label-smoothed as the mixed ones (`mixup_target`)."""

    def __init__(self, batch_mix=None, seed: int = 0):
        self.batch_mix, self.seed = batch_mix, seed

    def __call__(self, examples: list[dict | None]) -> dict[str, torch.Tensor]:
        kept = [example for example in examples if example is not None]
        if not kept:
            raise RuntimeError("Every image of a batch was unreadable (named in the warnings above)")
        batch = torch.utils.data.default_collate(kept)
        keys = batch.pop("sample_key", None)  # training batches only
        if self.batch_mix is None or keys is None:
            return batch
        mix, pixel_values, labels, paired = self.batch_mix, batch["pixel_values"], batch["labels"], len(kept) // 2 * 2
        targets = mixup_target(labels, mix.num_classes, smoothing=mix.label_smoothing)  # kept for an odd one out
        if paired:
            with seeded_cpu_rng(derived_seed(self.seed, *torch.stack(keys, dim=1).flatten().tolist())):
                pixel_values[:paired], targets[:paired] = mix(pixel_values[:paired], labels[:paired])
        batch["labels"] = targets
        return batch
