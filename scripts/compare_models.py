#!/usr/bin/env python
"""
The claims of Vision Big Bird (arXiv 2311.05988), tested at small scale on the real Fashion-MNIST: test accuracy
against same-size peers from transformers (Swin, ConvNeXt, PVTv2, ViT) and the paper's ablations, every run trained
from scratch with one shared recipe, over several seeds. Writes `docs/results.md`, `docs/results_curves.png` and
`docs/results.json` (the same numbers, machine-readable: `scripts/make_model_cards.py` puts them in the Fashion-MNIST
model card).

    python scripts/compare_models.py --calibrate        # time a few training steps of every model (about 1 min)
    python scripts/compare_models.py                    # the study: resumable, then docs/results.md (~90 min)
    python scripts/compare_models.py --report           # docs/results.md + .json from whatever runs are finished
    python scripts/compare_models.py --only vbb swin --seeds 0 1     # a part of it
    python scripts/compare_models.py --smoke            # every configuration for a few steps (what the test runs)

Data, model building blocks and the Trainer come from `scripts/train_image_classification.py` (its Fashion-MNIST
loader: the official test split is the test set and a validation split is carved from train with the run's seed;
its augmentation, collation, metrics and its `run`, which trains, evaluates and saves the metrics). A Vision Big Bird
run is exactly `python scripts/train_image_classification.py <flags>`, with the flags `results.md` lists.

Models (all at 32x32 input, 10 labels; parameters and MACs in results.md):
- `vbb`: Vision Big Bird, hidden sizes 30-60-120-240, depths 1-1-2-1, 3-3-6-6 heads split evenly into conv / RS-Win /
  global heads in every stage (so that each ablation removes something in every stage), RS-Win windows of 4x4 = 16
  tokens (as many tokens as Swin's window here), global keys pooled to 2x2 (stage 1: 16x fewer keys than tokens,
  as the paper's 7x7 pooling of a 56x56 map does 64x). About 1.4 M parameters.
- peers scaled to the same parameter count (within 10%; `check_parameter_budget` raises otherwise), each keeping its
  own family's proportions, on the same token grid: stride-4 stems and 8x8, 4x4, 2x2, 1x1 stages for the
  hierarchical models; `swin` (patch 4, window 4, head dim 32), `convnext` (depths 1-1-3-1), `pvtv2` (widths 1:2:5:8
  as b0, spatial reduction 4-2-1-1, so its keys are pooled to 2x2 like the global heads), `vit` (patch 4: 8x8 tokens
  + CLS, 7 layers of width 128).
- ablations of `vbb`, same recipe: `vbb-no-conv`, `vbb-no-rswin`, `vbb-no-global` (that group's heads dealt out one
  at a time to the other two groups, the first remaining one in paper order first, so every stage keeps its width
  and head count), `vbb-grid` (`rswin_sampling="grid"`: fixed 4x4 windows instead of random ones) and `vbb-abs-pos`
  (`use_absolute_embeddings=True`: a learned position embedding, which the paper finds unnecessary).

Recipe (every model, every seed): AdamW, learning rate 2e-3, weight decay 0.05, cosine schedule with 5% warmup,
batch 128, the training script's augmentation (RandomResizedCrop with scale (0.85, 1) + horizontal flip), drop path
0.05 where the model has it (ViT in transformers has none), default initialisation of each model. The crop scale:
with the demo's 0.6, a seed-0 Vision Big Bird reached 80.8% test accuracy in this short schedule, with 0.85 85.6%
and with 1.0 86.5% (one run each); 0.85 keeps some augmentation without spending the short budget on it.

Scale (`--scale study`): 20,000 training images (a seeded subset of the 54,000 left after carving 6,000 validation
images), 4 epochs (628 steps), validation on 2,000 of the held-out images 8 times per run, test on the full 10,000
official test images, 32x32 input, seeds 0, 1, 2 (the seed picks the subset, the initialisation, the data order and
the augmentation; runs with the same seed see the same images, so differences are also compared per seed).
Why: `--calibrate` (one torch thread; load average 1.7-2.8 from other work on the 2 cores) measured per training
step of 128 images, data pipeline included, 0.12-0.16 s for Vision Big Bird, its ablations and the hierarchical
peers and 1.33 s for ViT (its 65 tokens all run at full width: 97 M MACs per image against 4-5 M), and 0.6 ms
(ViT 3.5 ms) per evaluated image. A whole seed-0 `vbb` job through the Trainer took 95 s (628 steps in 84 s),
under the 1.9 min estimated. Jobs run as single-threaded processes, two at a time (`--workers 2`): small matrices
parallelise poorly over threads, so two one-thread processes should use the two cores better than one two-thread
process (not measured alone: with other work on the machine two threads were 2-5x slower per step than one). The
estimate assumes each worker has a core to itself when the study runs alone (shared caches and memory bandwidth
may add 10-20%). Estimate:
about 2 min per hierarchical job, 16 min per ViT job, 100 worker-minutes, 57 min of wall time for the 30 jobs
(the last ViT job runs alone at the end), so 60-70 min with the margin. Measured (docs/results.md, *Time*): 134
worker-minutes and 86 min of wall time, the ViT jobs taking about 21 min each next to other work. The full 54,000
images or more epochs do not fit in that time; a smaller input would not keep four stages. `--scale full` (54,000 images, 10 epochs) is
about 7x longer.

Order: seed 0 of `vbb` and the hierarchical peers first, then the seed-0 ablations, then seed-0 ViT, then the same
for seed 1 and seed 2, so a truncated study still answers most questions. Each (configuration, seed) is a job with
its own folder `<output_dir>/<name>/seed<k>`; a job is finished when its `metrics.json` exists. On restart finished
jobs are skipped, a job with a `checkpoint-*` (saved every epoch) resumes from it, and a folder with neither is
cleared and the job restarts. Stop a study with Ctrl-C (or SIGTERM to this process: it stops its workers).
"""

import dataclasses
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    HfArgumentParser,
    PvtV2Config,
    PvtV2ForImageClassification,
    SwinConfig,
    SwinForImageClassification,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    set_seed,
)
from transformers.models.swin.modeling_swin import SwinLayer, SwinRelativePositionBias
from transformers.trainer_utils import get_last_checkpoint


SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import train_image_classification as training  # noqa: E402  (data, transforms, collation, metrics, run)
from model_cost import count_forward_macs, count_parameters  # noqa: E402

from vision_bigbird_hf import VisionBigBirdImageProcessor  # noqa: E402
from vision_bigbird_hf.configuration_vision_bigbird import split_heads_evenly  # noqa: E402
from vision_bigbird_hf.fashion_mnist import FASHION_MNIST_CLASSES  # noqa: E402


IMAGE_SIZE = 32
DROP_PATH_RATE = 0.05
PARAMETER_TOLERANCE = 0.10  # every peer within 10% of Vision Big Bird's parameter count
HEAD_GROUPS = ("conv_heads", "rswin_heads", "global_heads")

# ---- Models -----------------------------------------------------------------

# Vision Big Bird for the study, as `--config_overrides` of the training script (on top of the tiny preset).
VBB_OVERRIDES = (
    "hidden_sizes=[30,60,120,240],depths=[1,1,2,1],num_heads=[3,3,6,6],"
    f"rswin_window_size=4,global_pool_size=[2,2,2,2],drop_path_rate={DROP_PATH_RATE}"
)
VBB_NUM_HEADS = training.parse_config_overrides(VBB_OVERRIDES)["num_heads"]


def heads_without(group: str, num_heads: list[int]) -> dict[str, list[int]]:
    """The even split with `group`'s heads dealt out one at a time to the two other groups (in paper order: conv,
    RS-Win, global), so that every stage keeps `num_heads` heads and its width."""
    even_splits = [split_heads_evenly(heads) for heads in num_heads]  # the config's default (conv, rswin, global)
    split = {name: [stage_split[index] for stage_split in even_splits] for index, name in enumerate(HEAD_GROUPS)}
    remaining = [name for name in HEAD_GROUPS if name != group]
    for stage, removed in enumerate(split[group]):
        for head in range(removed):
            split[remaining[head % 2]][stage] += 1
        split[group][stage] = 0
    return split


def overrides_with(**fields) -> str:
    """VBB_OVERRIDES plus extra config fields, in the training script's `key=value,...` syntax."""
    extra = [f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in fields.items()]
    return ",".join([VBB_OVERRIDES, *extra]).replace(" ", "")


def study_image_processor() -> VisionBigBirdImageProcessor:
    """The preprocessing of every model: Vision Big Bird's processor (ImageNet mean/std) resized to 32x32."""
    image_processor = VisionBigBirdImageProcessor()
    training.override_image_size(image_processor, IMAGE_SIZE)
    return image_processor


def label_kwargs(labels: list[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
    }


def shrink_swin_windows(model: SwinForImageClassification) -> None:
    """
    Give each Swin block whose feature map is smaller than the window a window of the map's size, with a relative
    position table of that size: what the original Swin does in its constructor. transformers 5.24 shrinks the window
    only in `forward` and keeps the table of `config.window_size`, so a map smaller than the window (here stage 3,
    2x2, and stage 4, 1x1, with window 4) fails with a shape mismatch. The table starts at zero, like Swin's own.
    The model trains and saves normally; `from_pretrained` of its folder would not load (table shapes differ).
    """
    for layer in model.modules():
        if isinstance(layer, SwinLayer) and min(layer.input_resolution) < layer.window_size:
            window_size = min(layer.input_resolution)
            num_heads = layer.attention.relative_position_bias.relative_position_bias_table.shape[1]
            layer.attention.relative_position_bias = SwinRelativePositionBias(num_heads, (window_size, window_size))
            layer.window_size, layer.shift_size = window_size, 0


def build_swin(labels: list[str]) -> SwinForImageClassification:
    config = SwinConfig(
        image_size=IMAGE_SIZE, patch_size=4, embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
        window_size=4, drop_path_rate=DROP_PATH_RATE, **label_kwargs(labels),
    )
    model = SwinForImageClassification(config)
    shrink_swin_windows(model)
    return model


def build_convnext(labels: list[str]) -> ConvNextForImageClassification:
    config = ConvNextConfig(
        image_size=IMAGE_SIZE, patch_size=4, hidden_sizes=[35, 70, 140, 280], depths=[1, 1, 3, 1],
        drop_path_rate=DROP_PATH_RATE, **label_kwargs(labels),
    )
    return ConvNextForImageClassification(config)


def build_pvtv2(labels: list[str]) -> PvtV2ForImageClassification:
    config = PvtV2Config(
        image_size=IMAGE_SIZE, hidden_sizes=[26, 52, 130, 208], depths=[1, 1, 2, 1], num_attention_heads=[1, 2, 5, 8],
        sr_ratios=[4, 2, 1, 1], mlp_ratios=[8, 8, 4, 4], drop_path_rate=DROP_PATH_RATE, **label_kwargs(labels),
    )
    return PvtV2ForImageClassification(config)


def build_vit(labels: list[str]) -> ViTForImageClassification:
    config = ViTConfig(
        image_size=IMAGE_SIZE, patch_size=4, hidden_size=128, num_hidden_layers=7, num_attention_heads=4,
        intermediate_size=512, **label_kwargs(labels),
    )
    return ViTForImageClassification(config)


@dataclass(frozen=True)
class StudyConfig:
    """One configuration of the study: a Vision Big Bird (built by the training script from `vbb_overrides`) or a
    peer (built by `build_peer`)."""

    name: str
    kind: str  # "vbb", "peer" or "ablation"
    description: str
    vbb_overrides: str | None = None
    build_peer: Callable[[list[str]], torch.nn.Module] | None = None

    def model_flags(self) -> list[str]:
        """The training script's model flags of a Vision Big Bird configuration."""
        return ["--model_preset", "tiny", "--config_overrides", self.vbb_overrides, "--image_size", str(IMAGE_SIZE)]

    def build(self, labels: list[str]):
        """(model, image_processor), freshly initialised from the current torch seed."""
        if self.vbb_overrides is not None:
            model_args = training.ModelArguments(
                model_preset="tiny", config_overrides=self.vbb_overrides, image_size=IMAGE_SIZE
            )
            return training.build_model_and_image_processor(model_args, labels)
        return self.build_peer(labels), study_image_processor()


CONFIGS = {
    config.name: config
    for config in [
        StudyConfig(
            "vbb", "vbb", "Vision Big Bird: conv + RS-Win + global heads, no position embedding", VBB_OVERRIDES
        ),
        StudyConfig("convnext", "peer", "ConvNeXt, depths 1-1-3-1, widths 35-280", build_peer=build_convnext),
        StudyConfig("swin", "peer", "Swin, patch 4, window 4, depths 1-1-2-1, widths 32-256", build_peer=build_swin),
        StudyConfig("pvtv2", "peer", "PVTv2, depths 1-1-2-1, widths 26-208, sr 4-2-1-1", build_peer=build_pvtv2),
        StudyConfig(
            "vbb-no-conv", "ablation", "VBB without conv heads (given to RS-Win/global)",
            overrides_with(**heads_without("conv_heads", VBB_NUM_HEADS)),
        ),
        StudyConfig(
            "vbb-no-rswin", "ablation", "VBB without RS-Win heads (given to conv/global)",
            overrides_with(**heads_without("rswin_heads", VBB_NUM_HEADS)),
        ),
        StudyConfig(
            "vbb-no-global", "ablation", "VBB without global heads (given to conv/RS-Win)",
            overrides_with(**heads_without("global_heads", VBB_NUM_HEADS)),
        ),
        StudyConfig(
            "vbb-grid", "ablation", "VBB with fixed 4x4 windows instead of random ones",
            overrides_with(rswin_sampling="grid"),
        ),
        StudyConfig(
            "vbb-abs-pos", "ablation", "VBB + learned absolute position embedding",
            overrides_with(use_absolute_embeddings=True),
        ),
        StudyConfig("vit", "peer", "ViT, patch 4 (64 tokens + CLS), 7 layers of width 128", build_peer=build_vit),
    ]
}


def cost_of(model: torch.nn.Module) -> dict:
    """Parameters and forward MACs of one IMAGE_SIZE x IMAGE_SIZE image (counted in eval mode; the mode is kept)."""
    training_mode = model.training
    macs = count_forward_macs(model.eval(), torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    model.train(training_mode)
    return {"params": count_parameters(model), "macs": macs}


def model_cost(config: StudyConfig) -> dict:
    """`cost_of` a freshly built model of `config`."""
    return cost_of(config.build(FASHION_MNIST_CLASSES)[0])


def check_parameter_budget(names: list[str] | None = None) -> dict[str, int]:
    """Build Vision Big Bird and every peer among `names` (all by default) and raise unless each peer's parameter
    count is within PARAMETER_TOLERANCE of Vision Big Bird's. Returns the counts."""
    names = [name for name in (names or CONFIGS) if CONFIGS[name].kind == "peer"]
    counts = {"vbb": count_parameters(CONFIGS["vbb"].build(FASHION_MNIST_CLASSES)[0])}
    for name in names:
        counts[name] = count_parameters(CONFIGS[name].build(FASHION_MNIST_CLASSES)[0])
    off = {name: count / counts["vbb"] - 1 for name, count in counts.items() if name != "vbb"}
    off = {name: ratio for name, ratio in off.items() if abs(ratio) > PARAMETER_TOLERANCE}
    if off:
        details = ", ".join(f"{name} {counts[name]:,} ({ratio:+.1%})" for name, ratio in off.items())
        raise ValueError(
            f"peers not within {PARAMETER_TOLERANCE:.0%} of Vision Big Bird's {counts['vbb']:,} parameters: {details}; "
            "rescale them in scripts/compare_models.py"
        )
    return counts


# ---- Scale, recipe and jobs -------------------------------------------------


@dataclass(frozen=True)
class Scale:
    max_train_samples: int | None
    num_train_epochs: float
    max_eval_samples: int | None
    max_predict_samples: int | None
    batch_size: int = 128


SCALES = {
    "smoke": Scale(
        max_train_samples=192, num_train_epochs=1, max_eval_samples=64, max_predict_samples=128, batch_size=48
    ),
    "study": Scale(max_train_samples=20_000, num_train_epochs=4, max_eval_samples=2_000, max_predict_samples=None),
    "full": Scale(max_train_samples=None, num_train_epochs=10, max_eval_samples=None, max_predict_samples=None),
}
# The recipe shared by every run (see recipe_flags)
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 0.05
MIN_CROP_SCALE = 0.85
TRAIN_POOL = 54_000  # Fashion-MNIST train minus the 10% validation split
VALIDATION_POOL = 6_000
TEST_SIZE = 10_000
EVALS_PER_RUN = 8  # validation points of each learning curve


def recipe_flags(scale: Scale, seed: int, output_dir: str) -> list[str]:
    """The training script's data and training flags shared by every run (the recipe)."""
    flags = [
        "--min_crop_scale", str(MIN_CROP_SCALE),
        "--output_dir", output_dir,
        "--do_train", "--do_eval", "--do_predict",
        "--num_train_epochs", str(scale.num_train_epochs),
        "--per_device_train_batch_size", str(scale.batch_size),
        "--per_device_eval_batch_size", "256",
        "--optim", "adamw_torch",
        "--learning_rate", str(LEARNING_RATE),
        "--weight_decay", str(WEIGHT_DECAY),
        "--lr_scheduler_type", "cosine",
        "--warmup_steps", "0.05",
        "--eval_strategy", "steps",
        "--eval_steps", str(1 / EVALS_PER_RUN),
        "--save_strategy", "epoch",
        "--save_total_limit", "1",
        "--logging_steps", "0.02",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--dataloader_pin_memory", "false",
        "--log_level", "warning",
        "--seed", str(seed),
    ]
    for flag, value in (
        ("--max_train_samples", scale.max_train_samples),
        ("--max_eval_samples", scale.max_eval_samples),
        ("--max_predict_samples", scale.max_predict_samples),
    ):
        if value is not None:
            flags += [flag, str(value)]
    return flags


def job_order(names: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(name, seed) jobs, most informative first: per seed, VBB and the hierarchical peers, then the ablations, then
    ViT (the slowest, and from scratch on small data the weakest peer)."""
    rank = {"vbb": 0, "peer": 1, "ablation": 2}
    ordered = sorted(names, key=lambda name: (name == "vit", rank[CONFIGS[name].kind], list(CONFIGS).index(name)))
    return [(name, seed) for seed in seeds for name in ordered]


def run_dir_of(output_dir: Path, name: str, seed: int) -> Path:
    return output_dir / name / f"seed{seed}"


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def training_command(config: StudyConfig, scale_name: str, seed: int, run_dir: Path) -> str:
    """The command that reproduces one run: the training script's for Vision Big Bird, this script's for a peer."""
    if config.vbb_overrides is not None:
        flags = config.model_flags() + recipe_flags(SCALES[scale_name], seed, str(run_dir))
        return "python scripts/train_image_classification.py " + shlex.join(flags)
    return f"python scripts/compare_models.py --scale {scale_name} --only {config.name} --seeds {seed}"


def run_job(name: str, seed: int, scale_name: str, output_dir: Path) -> dict:
    """Train, validate and test one (configuration, seed) in `output_dir/name/seed<k>`, resuming from its last
    checkpoint if it has one; write its metrics.json last. Returns the metrics."""
    config, scale = CONFIGS[name], SCALES[scale_name]
    run_dir = run_dir_of(output_dir, name, seed)
    if is_finished(run_dir):
        return json.loads((run_dir / "metrics.json").read_text())
    checkpoint = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    if checkpoint is None and run_dir.is_dir():
        shutil.rmtree(run_dir)  # interrupted before its first checkpoint: start again
    parser = HfArgumentParser((training.DataTrainingArguments, TrainingArguments))
    data_args, training_args = parser.parse_args_into_dataclasses(recipe_flags(scale, seed, str(run_dir)))
    training.setup_logging(training_args)

    set_seed(seed)
    dataset = training.load_image_dataset(data_args, seed)
    labels = dataset["train"].features["label"].names
    model, image_processor = config.build(labels)
    cost = cost_of(model)
    train_transforms, eval_transforms = training.build_transforms(image_processor, data_args.min_crop_scale)
    split_transforms = {"train": train_transforms, "validation": eval_transforms, "test": eval_transforms}
    for split, images_transform in split_transforms.items():
        dataset[split].set_transform(training.BatchTransform(images_transform))
    training_args.remove_unused_columns = False  # the image column becomes pixel_values inside the transform
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        compute_metrics=training.build_compute_metrics(),
        processing_class=image_processor,
        data_collator=training.collate_fn,
    )
    print(
        f"[{name} seed {seed}] {cost['params'] / 1e6:.3f}M parameters, {cost['macs'] / 1e6:.1f}M MACs at "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}; train {len(dataset['train'])}, validation {len(dataset['validation'])}, "
        f"test {len(dataset['test'])} images; {torch.get_num_threads()} torch thread(s)"
        + (f"; resuming from {checkpoint}" if checkpoint else ""),
        flush=True,
    )
    start = time.perf_counter()
    training.run(trainer, training_args, dataset, image_processor, checkpoint)
    wall_seconds = time.perf_counter() - start

    results = json.loads((run_dir / "all_results.json").read_text())
    metrics = {
        "name": name,
        "seed": seed,
        "scale": scale_name,
        "scale_settings": dataclasses.asdict(scale),
        "test_accuracy": results["test_accuracy"],
        "eval_accuracy": results["eval_accuracy"],
        "train_loss": results.get("train_loss"),
        "train_runtime": results["train_runtime"],
        "global_steps": trainer.state.global_step,
        "job_wall_seconds": wall_seconds,
        "resumed_from": checkpoint,
        "params": cost["params"],
        "macs": cost["macs"],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": training_command(config, scale_name, seed, run_dir),
    }
    temporary = run_dir / "metrics.json.tmp"
    temporary.write_text(json.dumps(metrics, indent=2))
    os.replace(temporary, run_dir / "metrics.json")  # the job counts as finished only once this file exists
    for old_checkpoint in run_dir.glob("checkpoint-*"):
        shutil.rmtree(old_checkpoint)
    print(
        f"[{name} seed {seed}] test accuracy {metrics['test_accuracy']:.4f}, validation "
        f"{metrics['eval_accuracy']:.4f}, {metrics['global_steps']} steps in {metrics['train_runtime']:.0f} s",
        flush=True,
    )
    return metrics


# ---- Calibration and time estimate ------------------------------------------


def calibrate(names: list[str], scale_name: str, steps: int = 8, threads: int = 1) -> dict:
    """Seconds per training step (batch of the scale, real augmented Fashion-MNIST batches, data pipeline, forward,
    backward and AdamW step) and per evaluated image (preprocessing + forward) of each configuration, with `threads`
    torch threads. Returns {name: {"train_step": [...], "eval_image": ...}}."""
    torch.set_num_threads(threads)
    scale = SCALES[scale_name]
    data_args = training.DataTrainingArguments(max_train_samples=scale.batch_size * (steps + 2), max_eval_samples=256)
    dataset = training.load_image_dataset(data_args, seed=0)
    labels = dataset["train"].features["label"].names
    timings = {}
    for name in names:
        set_seed(0)
        model, image_processor = CONFIGS[name].build(labels)
        train_transforms, eval_transforms = training.build_transforms(image_processor, MIN_CROP_SCALE)
        dataset["train"].set_transform(training.BatchTransform(train_transforms))
        dataset["validation"].set_transform(training.BatchTransform(eval_transforms))
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        model.train()
        step_times = []
        for step in range(steps + 1):
            start = time.perf_counter()
            rows = range(step * scale.batch_size, (step + 1) * scale.batch_size)
            batch = training.collate_fn([dataset["train"][row] for row in rows])
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step > 0:  # the first step warms up the allocator and kernels
                step_times.append(time.perf_counter() - start)
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            model(**training.collate_fn([dataset["validation"][row] for row in range(256)]))
        eval_image = (time.perf_counter() - start) / 256
        timings[name] = {"train_step": step_times, "eval_image": eval_image}
        print(
            f"{name:14s} train step (batch {scale.batch_size}): median {statistics.median(step_times):.3f} s, "
            f"min {min(step_times):.3f} s; eval {eval_image * 1e3:.2f} ms/image",
            flush=True,
        )
    return timings


def steps_per_run(scale: Scale) -> int:
    train_images = min(scale.max_train_samples or TRAIN_POOL, TRAIN_POOL)
    return math.ceil(train_images / scale.batch_size) * math.ceil(scale.num_train_epochs)


def estimate_job_seconds(timing: dict, scale: Scale, statistic: Callable = statistics.median) -> float:
    """Training steps x step time + validation and test images x eval time + 15 s of start-up and checkpoints."""
    validation_images = min(scale.max_eval_samples or VALIDATION_POOL, VALIDATION_POOL) * (EVALS_PER_RUN + 1)
    test_images = min(scale.max_predict_samples or TEST_SIZE, TEST_SIZE)
    evaluated = validation_images + test_images
    return steps_per_run(scale) * statistic(timing["train_step"]) + evaluated * timing["eval_image"] + 15.0


def makespan(job_seconds: list[float], workers: int) -> float:
    """Wall time of running jobs in order on `workers` workers, each starting the next job when it is free."""
    free_at = [0.0] * workers
    for seconds in job_seconds:
        worker = free_at.index(min(free_at))
        free_at[worker] += seconds
    return max(free_at)


def estimate_study(timings: dict, scale_name: str, jobs: list[tuple[str, int]], workers: int) -> dict:
    scale = SCALES[scale_name]
    per_config = {
        name: {"median": estimate_job_seconds(timing, scale), "min": estimate_job_seconds(timing, scale, min)}
        for name, timing in timings.items()
    }
    jobs = [job for job in jobs if job[0] in per_config]
    return {
        "per_job_seconds": per_config,
        "total_seconds": makespan([per_config[name]["median"] for name, _ in jobs], workers),
        "total_seconds_min": makespan([per_config[name]["min"] for name, _ in jobs], workers),
        "worker_seconds": sum(per_config[name]["median"] for name, _ in jobs),
        "jobs": len(jobs),
        "workers": workers,
        "steps_per_run": steps_per_run(scale),
    }


# ---- Report -----------------------------------------------------------------


def finished_runs(output_dir: Path) -> dict[str, list[dict]]:
    """name -> metrics of its finished runs, by seed."""
    runs = {}
    for name in CONFIGS:
        paths = sorted((output_dir / name).glob("seed*/metrics.json"), key=lambda path: int(path.parent.name[4:]))
        runs[name] = [json.loads(path.read_text()) for path in paths]
    return runs


def accuracies(runs: list[dict]) -> dict[int, float]:
    """seed -> test accuracy in percent."""
    return {run["seed"]: 100 * run["test_accuracy"] for run in runs}


def summary(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation or None for fewer than 2 values)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean(values: list[float], unit: str = "") -> str:
    if not values:
        return "not run"
    mean, spread = summary(values)
    return f"{mean:.2f}{unit}" + (f" ± {spread:.2f}" if spread is not None else "") + f" (n={len(values)})"


def paired_difference(runs: dict[str, list[dict]], first: str, second: str) -> list[float]:
    """Test accuracy of `first` minus `second`, in points, for every seed both have finished."""
    first_accuracy, second_accuracy = accuracies(runs[first]), accuracies(runs[second])
    return [first_accuracy[seed] - second_accuracy[seed] for seed in sorted(first_accuracy) if seed in second_accuracy]


def describe_difference(differences: list[float]) -> str:
    """'+0.42 points (per seed: +0.30, +0.54; n=2)' plus whether the per-seed differences agree in sign."""
    if not differences:
        return "not measured yet (no seed finished for both)"
    mean = statistics.mean(differences)
    per_seed = ", ".join(f"{value:+.2f}" for value in differences)
    text = f"{mean:+.2f} points (per seed: {per_seed}; n={len(differences)})"
    if len(differences) == 1:
        return text + ", one seed only: no spread to judge it against"
    if all(value > 0 for value in differences) or all(value < 0 for value in differences):
        return text + ", the same sign for every seed"
    return text + ", the sign changes between seeds: within seed-to-seed noise"


def claims(runs: dict[str, list[dict]]) -> list[str]:
    """The plain reading: each claim with its numbers and whether it holds at this scale."""
    mean_of = {name: statistics.mean(accuracies(r).values()) for name, r in runs.items() if r}
    lines = []
    peers = [name for name in mean_of if CONFIGS[name].kind == "peer"]
    if "vbb" in mean_of and peers:
        best = max(peers, key=mean_of.get)
        ranking = sorted(mean_of, key=mean_of.get, reverse=True)
        gap = mean_of["vbb"] - mean_of[best]
        verdict = "holds" if gap >= 0 else "does not hold"
        lines.append(
            f"- **Against the best same-size peer.** Vision Big Bird's mean test accuracy is {mean_of['vbb']:.2f}% vs "
            f"{mean_of[best]:.2f}% for the best peer, {best} (gap {gap:+.2f} points; paired by seed: "
            f"{describe_difference(paired_difference(runs, 'vbb', best))}). The claim that Vision Big Bird at least "
            f"matches the best same-size peer under the same budget **{verdict}** at this scale. Ranking of all "
            "trained models: " + ", ".join(f"{name} {mean_of[name]:.2f}" for name in ranking) + "."
        )
    else:
        lines.append("- **Against the best same-size peer.** Not measured yet (needs `vbb` and at least one peer).")
    if "vbb" in mean_of and "vbb-abs-pos" in mean_of:
        cost = mean_of["vbb-abs-pos"] - mean_of["vbb"]
        verdict = "holds" if cost <= 0.3 else "does not hold"
        lines.append(
            f"- **No position embedding.** Vision Big Bird without a position embedding: {mean_of['vbb']:.2f}%; with a "
            f"learned absolute one: {mean_of['vbb-abs-pos']:.2f}%. Leaving it out costs {cost:+.2f} points (negative: "
            f"it helps to leave it out; per seed, with minus without: "
            f"{describe_difference(paired_difference(runs, 'vbb-abs-pos', 'vbb'))}). The paper's claim that removing "
            f"the position embedding costs at most 0.3 points **{verdict}** here."
        )
    else:
        lines.append("- **No position embedding.** Not measured yet (needs `vbb` and `vbb-abs-pos`).")
    for ablation, part in (
        ("vbb-no-conv", "conv heads"),
        ("vbb-no-rswin", "RS-Win heads"),
        ("vbb-no-global", "global heads"),
        ("vbb-grid", "random sampling of the windows (vs fixed 4x4 windows)"),
    ):
        if "vbb" in mean_of and ablation in mean_of:
            contribution = mean_of["vbb"] - mean_of[ablation]
            per_seed = describe_difference(paired_difference(runs, "vbb", ablation))
            differences = paired_difference(runs, "vbb", ablation)
            consistent = len(differences) > 1 and (all(d > 0 for d in differences) or all(d < 0 for d in differences))
            if not consistent:
                direction = "higher" if contribution > 0 else "not higher"
                effect = f"shows no effect these seeds can tell from noise (the mean is {direction} with it)"
            else:
                effect = "helps" if contribution > 0 else "does not help (removing it is better on every seed)"
            lines.append(
                f"- **Contribution of the {part}** (VBB minus `{ablation}`, {mean_of[ablation]:.2f}%): "
                f"{contribution:+.2f} points; per seed {per_seed}. "
                f"At this scale it {effect}."
            )
        else:
            lines.append(f"- **Contribution of the {part}.** Not measured yet (needs `vbb` and `{ablation}`).")
    return lines


def plot_curves(runs: dict[str, list[dict]], output_dir: Path, path: Path) -> bool:
    """Validation accuracy and training loss against epochs of every finished run (one colour per configuration,
    one line per seed). Returns False when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = {}
    for name, name_runs in runs.items():
        for run in name_runs:
            state_path = run_dir_of(output_dir, name, run["seed"]) / "trainer_state.json"
            if state_path.is_file():
                histories.setdefault(name, []).append(json.loads(state_path.read_text())["log_history"])
    if not histories:
        return False
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(13, 5))
    colours = plt.get_cmap("tab10")
    styles = {"vbb": "-", "peer": "--", "ablation": ":"}
    for index, name in enumerate(CONFIGS):
        for seed_index, history in enumerate(histories.get(name, [])):
            evals = [(entry["epoch"], 100 * entry["eval_accuracy"]) for entry in history if "eval_accuracy" in entry]
            losses = [(entry["epoch"], entry["loss"]) for entry in history if "loss" in entry]
            style = {"color": colours(index), "linestyle": styles[CONFIGS[name].kind], "linewidth": 1.4}
            label = name if seed_index == 0 else None
            if evals:
                accuracy_axis.plot(*zip(*evals), marker="o", markersize=2.5, label=label, **style)
            if losses:
                loss_axis.plot(*zip(*losses), label=label, **style)
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy (one line per seed)")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="Training loss (logged every 2% of the steps)")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
    plotted = [
        100 * entry["eval_accuracy"]
        for name_histories in histories.values()
        for history in name_histories
        for entry in history
        if "eval_accuracy" in entry
    ]
    if plotted:  # the first evaluations of a short run are far below the rest: keep the informative range in view
        accuracy_axis.set_ylim(max(min(plotted) - 1, np.percentile(plotted, 5) - 3), max(plotted) + 0.5)
    loss_axis.legend(fontsize=8, ncol=2)
    figure.suptitle("Fashion-MNIST 32x32, from scratch, same recipe (solid: VBB, dashed: peers, dotted: ablations)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_report(output_dir: Path, results_path: Path, scale_name: str, seeds: list[int], workers: int) -> str:
    """results.md, its learning-curve PNG and results.json (the numbers of results.md for other tools, e.g. the
    Fashion-MNIST model card) beside it, from the finished runs under `output_dir`. Returns the markdown."""
    runs = finished_runs(output_dir)
    curves_path = results_path.with_name(results_path.stem + "_curves.png")
    has_curves = plot_curves(runs, output_dir, curves_path)
    calibration_path = output_dir / "calibration.json"
    calibration = json.loads(calibration_path.read_text()) if calibration_path.is_file() else None
    scale = SCALES[scale_name]
    n_finished = sum(len(name_runs) for name_runs in runs.values())
    n_planned = len(CONFIGS) * len(seeds)
    test_images = min(scale.max_predict_samples or TEST_SIZE, TEST_SIZE)
    costs = {name: run_cost(config, runs[name]) for name, config in CONFIGS.items()}
    claim_lines = claims(runs)

    lines = [
        "# Vision Big Bird vs same-size peers and ablations, Fashion-MNIST (small scale)",
        "",
        "Generated by `scripts/compare_models.py` from the finished runs in "
        f"`{display_path(output_dir)}` ({n_finished} of {n_planned} planned runs finished: {len(CONFIGS)} "
        f"configurations x seeds {', '.join(map(str, seeds))}). Every model is trained from scratch on the real "
        f"Fashion-MNIST with one recipe; test accuracy is on {test_images:,} images of the official test split.",
        "",
        "## Setup",
        "",
        f"- Scale `{scale_name}`: {scale.max_train_samples or TRAIN_POOL:,} training images "
        f"(seeded subset of the {TRAIN_POOL:,} left after the validation split), {scale.num_train_epochs:g} epoch(s) = "
        f"{steps_per_run(scale)} steps of batch {scale.batch_size}, input {IMAGE_SIZE}x{IMAGE_SIZE} (28x28 images "
        f"resized), validation on {min(scale.max_eval_samples or VALIDATION_POOL, VALIDATION_POOL):,} held-out "
        f"training images {EVALS_PER_RUN} times per run, test on {test_images:,} official test images.",
        f"- Recipe, the same for every run: AdamW, lr {LEARNING_RATE:g}, weight decay {WEIGHT_DECAY:g}, cosine "
        f"schedule with 5% warmup, RandomResizedCrop (scale {MIN_CROP_SCALE:g}-1) + horizontal flip, drop path "
        f"{DROP_PATH_RATE:g} where the model has it (not ViT).",
        "- Why this scale: the 30 runs (10 configurations x 3 seeds) fit in about 90 minutes of a 2-core CPU (see "
        "*Time* below); the full training set or more epochs would not, and 32x32 is the smallest input that keeps "
        "four stages. The crop scale 0.85 (not the demo's 0.6) because heavier augmentation cost Vision Big Bird "
        "about 5 points in this short schedule.",
        "- Seeds pick the training subset and validation split, the initialisation, the data order, the augmentation "
        "and the RS-Win windows; runs with the same seed see the same images, so differences are also given per seed.",
        f"- Peers are scaled to Vision Big Bird's parameter count (within {PARAMETER_TOLERANCE:.0%}, checked before "
        "training) and run on the same token grid: stride-4 stem, 8x8 tokens in stage 1, then 4x4, 2x2, 1x1 (ViT: "
        "8x8 patches of 4 pixels + CLS at every layer). GMACs: forward pass of one 32x32 image "
        "(`scripts/model_cost.py`).",
        "",
        "## Results",
        "",
        "| configuration | what | test accuracy % (mean ± sd, n seeds) | per seed | validation % | params (M) | "
        "GMACs | train time / run (min) |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, config in CONFIGS.items():
        name_runs = runs[name]
        cost = costs[name]
        test = list(accuracies(name_runs).values())
        per_seed = ", ".join(f"s{run['seed']}: {100 * run['test_accuracy']:.2f}" for run in name_runs) or "—"
        validation = format_mean([100 * run["eval_accuracy"] for run in name_runs]) if name_runs else "—"
        minutes = f"{statistics.mean(run['train_runtime'] for run in name_runs) / 60:.1f}" if name_runs else "—"
        if any(run["resumed_from"] for run in name_runs):
            minutes += " (a run resumed: its time counts from the resume)"
        lines.append(
            f"| `{name}` | {config.description} | {format_mean(test)} | {per_seed} | {validation} | "
            f"{cost['params'] / 1e6:.3f} | {cost['macs'] / 1e9:.4f} | {minutes} |"
        )
    lines += [
        "",
        f"GMACs: multiply-accumulates of one forward pass at {IMAGE_SIZE}x{IMAGE_SIZE}, in billions. Train time: the "
        "Trainer's `train_runtime` (validation included) with the job's torch threads (see below).",
        "",
        "## What the numbers show",
        "",
        *claim_lines,
        "",
        caveats(scale, seeds),
        "",
        "## Learning curves",
        "",
        f"![learning curves]({curves_path.name})" if has_curves else "No finished run yet.",
        "",
        "## Time: calibration and actual",
        "",
    ]
    if calibration:
        estimate = calibration["estimate"]
        lines += [
            f"`--calibrate` ({calibration['threads']} torch thread, {calibration['context']}) measured per training "
            f"step of batch {scale.batch_size} (augmented Fashion-MNIST batch, forward, backward, AdamW) and per "
            "evaluated image; a job is estimated as steps x step time + evaluated images x eval time + 15 s.",
            "",
            "| configuration | step, median (s) | step, min (s) | eval (ms/image) | estimated job (min) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, timing in calibration["timings"].items():
            lines.append(
                f"| `{name}` | {statistics.median(timing['train_step']):.3f} | {min(timing['train_step']):.3f} | "
                f"{1e3 * timing['eval_image']:.2f} | {estimate['per_job_seconds'][name]['median'] / 60:.1f} |"
            )
        lines += [
            "",
            f"Estimated study: {estimate['jobs']} jobs, {estimate['worker_seconds'] / 60:.0f} worker-minutes, "
            f"{estimate['total_seconds'] / 60:.0f} min of wall time with {estimate['workers']} single-threaded "
            f"workers (from the minimum step times: {estimate['total_seconds_min'] / 60:.0f} min). "
            f"{calibration['assumption']}",
        ]
    else:
        lines.append("No calibration in this output folder (`--calibrate` writes one).")
    all_runs = [run for name_runs in runs.values() for run in name_runs]
    if all_runs:
        lines += [
            "",
            f"Actual: {len(all_runs)} finished runs took {sum(run['job_wall_seconds'] for run in all_runs) / 60:.0f} "
            f"worker-minutes (training + validation + test; {all_runs[0]['torch_threads']} torch thread(s) per job).",
        ]
    invocations_path = output_dir / "invocations.jsonl"
    if invocations_path.is_file():
        invocations = [json.loads(line) for line in invocations_path.read_text().splitlines() if line.strip()]
        lines.append(
            f"Study wall time: {sum(item['wall_seconds'] for item in invocations) / 60:.0f} min over "
            f"{len(invocations)} completed invocation(s) of the study (an interrupted invocation is not counted), "
            f"{invocations[-1]['workers']} worker(s) x {invocations[-1]['threads']} torch thread(s)."
        )
    lines += [
        "",
        "## Commands",
        "",
        "```bash",
        "python scripts/compare_models.py --calibrate     # step times and the study's estimate, about 1 min",
        f"python scripts/compare_models.py --scale {scale_name} --seeds {' '.join(map(str, seeds))} "
        f"--workers {workers}   # the study (resumable)",
        f"python scripts/compare_models.py --scale {scale_name} --report   # this file, from the finished runs",
        "```",
        "",
        "One run of each Vision Big Bird configuration is exactly this training-script command (seed 0 shown; "
        "`--seed` also picks the data subset). Peers are built by `scripts/compare_models.py` (no command-line "
        "equivalent): `python scripts/compare_models.py --only swin --seeds 0` trains one.",
        "",
        "```bash",
    ]
    for name, config in CONFIGS.items():
        if config.vbb_overrides is not None:
            lines.append(f"# {name}")
            lines.append(training_command(config, scale_name, 0, Path("runs/reproduce") / name))
    lines += ["```", ""]
    text = "\n".join(lines)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(text)
    summary_json = {
        "title": lines[0].removeprefix("# "),
        "report": display_path(results_path),
        "runs_dir": display_path(output_dir),
        "generated_by": f"python scripts/compare_models.py --scale {scale_name} --seeds {' '.join(map(str, seeds))} "
        "--report",
        "scale": scale_name,
        "scale_settings": dataclasses.asdict(scale),
        "steps_per_run": steps_per_run(scale),
        "train_images": min(scale.max_train_samples or TRAIN_POOL, TRAIN_POOL),
        "test_images": test_images,
        "image_size": IMAGE_SIZE,
        "recipe": {"learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, "min_crop_scale": MIN_CROP_SCALE,
                   "drop_path_rate": DROP_PATH_RATE, "batch_size": scale.batch_size},
        "seeds": list(seeds),
        "finished_runs": n_finished,
        "planned_runs": n_planned,
        "accuracy_unit": "percent",
        "configurations": [
            configuration_summary(config, runs[name], costs[name]) for name, config in CONFIGS.items()
        ],
        "claims": claim_lines,
        "caveats": caveats(scale, seeds),
    }
    results_path.with_suffix(".json").write_text(json.dumps(summary_json, indent=2) + "\n")
    return text


def run_cost(config: StudyConfig, name_runs: list[dict]) -> dict:
    """Parameters and MACs recorded by the finished runs of `config`, or counted on a freshly built model."""
    if name_runs:
        return {"params": name_runs[0]["params"], "macs": name_runs[0]["macs"]}
    return model_cost(config)


def configuration_summary(config: StudyConfig, name_runs: list[dict], cost: dict) -> dict:
    """One configuration's entry in results.json: accuracies in percent (sd None below 2 seeds, mean None without
    a finished run), its cost and mean training time."""
    test = accuracies(name_runs)
    test_mean, test_sd = summary(list(test.values())) if test else (None, None)
    validation = [100 * run["eval_accuracy"] for run in name_runs]
    validation_mean, validation_sd = summary(validation) if validation else (None, None)
    return {
        "name": config.name,
        "kind": config.kind,
        "description": config.description,
        "config_overrides": config.vbb_overrides,
        "n_seeds": len(name_runs),
        "test_accuracy_per_seed": {str(seed): value for seed, value in test.items()},
        "test_accuracy_mean": test_mean,
        "test_accuracy_sd": test_sd,
        "validation_accuracy_mean": validation_mean,
        "validation_accuracy_sd": validation_sd,
        "params": cost["params"],
        "macs": cost["macs"],
        "train_minutes_mean": statistics.mean(run["train_runtime"] for run in name_runs) / 60 if name_runs else None,
        "resumed": any(run["resumed_from"] for run in name_runs),
    }


def caveats(scale: Scale, seeds: list[int]) -> str:
    """The paragraph that goes with the claims."""
    return (
        "Caveats: this is a small-scale test: ~1.4M-parameter models, 32x32 grayscale images, "
        f"{steps_per_run(scale)} training steps, {len(seeds)} seed(s) at most. These short runs reach about 85% "
        "(small models trained to convergence reach 90-93% on Fashion-MNIST), and differences of a few tenths of a "
        "point are within the seed-to-seed spread unless every seed agrees; a mean over 2-3 seeds can flip with one more seed. At 32x32 the maps are 8x8, 4x4, 2x2 and 1x1: "
        "RS-Win and fixed windows differ only in stage 1 (4 windows of 16 tokens; from stage 2 on one window holds "
        "every token), global heads pool 8x8 and 4x4 maps to 2x2 and see everything later, so the head-group "
        "ablations test stages 1 and 2 above all, and the paper's ImageNet-scale results (224x224, 300 epochs) are "
        "not tested here. The shared recipe (tuned for none of the models) favours no family on purpose, but ViT in "
        "particular is known to need far more data or augmentation from scratch."
    )


def display_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ---- The study --------------------------------------------------------------


@dataclass
class CompareArguments:
    scale: str = field(default="study", metadata={"help": "Training scale.", "choices": sorted(SCALES)})
    smoke: bool = field(default=False, metadata={"help": "Same as --scale smoke: a few steps on a few hundred images."})
    only: list[str] = field(
        default_factory=list, metadata={"help": f"Configurations to run (default: all of {list(CONFIGS)})."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds of every configuration."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Run folders (default: runs/compare_models/<scale>)."}
    )
    results_md: str | None = field(
        default=None,
        metadata={
            "help": "Report path (default: docs/results.md for --scale study, else <output_dir>/results.md); "
            "results.json and results_curves.png are written beside it."
        },
    )
    workers: int = field(
        default=2, metadata={"help": "Jobs run at once, each in its own process (1: one after the other, in-process)."}
    )
    threads: int | None = field(
        default=None, metadata={"help": "Torch threads per job (default: CPU cores / workers)."}
    )
    report: bool = field(default=False, metadata={"help": "Only write the report from the finished runs."})
    calibrate: bool = field(default=False, metadata={"help": "Time training steps of each configuration; estimate."})
    job: str | None = field(default=None, metadata={"help": "Internal: run the one job NAME:SEED and exit."})

    def __post_init__(self):
        if self.smoke:
            self.scale = "smoke"
        unknown = sorted(set(self.only) - set(CONFIGS))
        if unknown:
            raise ValueError(f"--only {unknown}: choose from {list(CONFIGS)}")
        self.only = self.only or list(CONFIGS)
        self.output_dir = Path(self.output_dir or REPO_ROOT / "runs" / "compare_models" / self.scale)
        default_results = REPO_ROOT / "docs" / "results.md" if self.scale == "study" else self.output_dir / "results.md"
        self.results_md = Path(self.results_md or default_results)
        self.threads = self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def run_workers(jobs: list[tuple[str, int]], args: CompareArguments) -> tuple[list, list]:
    """Run `jobs` in order, `args.workers` at a time, each as `--job NAME:SEED` in its own process (log in
    `<output_dir>/logs/`). Returns (trained, failed)."""
    log_dir = args.output_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, trained, failed = list(jobs), {}, [], []

    def stop_workers(signum, frame):
        for process, _ in running.values():
            process.terminate()
        raise SystemExit(128 + signum)

    previous_handler = signal.signal(signal.SIGTERM, stop_workers)
    try:
        while pending or running:
            while pending and len(running) < args.workers:
                name, seed = pending.pop(0)
                command = [
                    sys.executable, str(Path(__file__).resolve()), "--job", f"{name}:{seed}", "--scale", args.scale,
                    "--output_dir", str(args.output_dir), "--threads", str(args.threads),
                ]
                log = open(log_dir / f"{name}-seed{seed}.log", "a")
                running[(name, seed)] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
                print(f"start {name} seed {seed} (log: {display_path(log_dir / f'{name}-seed{seed}.log')})", flush=True)
            time.sleep(2)
            for job, (process, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[job]
                if process.returncode == 0:
                    metrics = json.loads((run_dir_of(args.output_dir, *job) / "metrics.json").read_text())
                    print(f"done  {job[0]} seed {job[1]}: test accuracy {metrics['test_accuracy']:.4f}", flush=True)
                    trained.append(job)
                else:
                    print(f"FAILED {job[0]} seed {job[1]} (exit {process.returncode}); see its log", flush=True)
                    failed.append(job)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return trained, failed


def run_study(args: CompareArguments) -> dict:
    """Check the parameter budget, skip finished jobs, run the others, write the report. Returns
    {"trained": [...], "skipped": [...], "failed": [...]} as (name, seed) lists."""
    counts = check_parameter_budget(args.only)
    print(
        f"torch {torch.__version__}, CPU, {args.workers} worker(s) x {args.threads} torch thread(s), scale "
        f"{args.scale} {SCALES[args.scale]}, seeds {args.seeds}; parameters: "
        + ", ".join(f"{name} {count / 1e6:.3f}M" for name, count in counts.items()),
        flush=True,
    )
    study_start = time.time()
    jobs = job_order(args.only, args.seeds)
    skipped = [job for job in jobs if is_finished(run_dir_of(args.output_dir, *job))]
    for name, seed in skipped:
        run_dir = display_path(run_dir_of(args.output_dir, name, seed))
        print(f"skip  {name} seed {seed}: finished ({run_dir})", flush=True)
    pending = [job for job in jobs if job not in skipped]
    if args.workers == 1:
        torch.set_num_threads(args.threads)
        trained, failed = [], []
        for name, seed in pending:
            try:
                run_job(name, seed, args.scale, args.output_dir)
                trained.append((name, seed))
            except Exception:  # one broken job should not stop a long study; reported at the end
                traceback.print_exc()
                failed.append((name, seed))
    else:
        trained, failed = run_workers(pending, args)
    invocation = {"start": study_start, "wall_seconds": time.time() - study_start, "trained": len(trained),
                  "workers": args.workers, "threads": args.threads}
    with open(args.output_dir / "invocations.jsonl", "a") as handle:
        handle.write(json.dumps(invocation) + "\n")
    write_report(args.output_dir, args.results_md, args.scale, args.seeds, args.workers)
    print(
        f"wrote {display_path(args.results_md)}; trained {len(trained)}, skipped {len(skipped)}, failed {len(failed)}"
    )
    return {"trained": trained, "skipped": skipped, "failed": failed}


def run_calibration(args: CompareArguments) -> dict:
    load = os.getloadavg()
    context = f"load average {load[0]:.1f} on {os.cpu_count()} cores at the start"
    print(f"calibration: torch {torch.__version__}, CPU, 1 torch thread, {context}", flush=True)
    timings = calibrate(args.only, args.scale)
    estimate = estimate_study(timings, args.scale, job_order(args.only, args.seeds), args.workers)
    calibration = {
        "threads": 1,
        "context": context,
        "timings": timings,
        "estimate": estimate,
        "assumption": (
            "Assumption: run alone, each single-threaded worker gets a core to itself, so a step takes about the "
            "measured single-threaded time; the medians were measured with other work on the machine and are "
            "therefore on the slow side."
        ),
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "calibration.json").write_text(json.dumps(calibration, indent=2))
    print(f"\n{estimate['steps_per_run']} steps per run; estimated job minutes (median step time):")
    for name, seconds in estimate["per_job_seconds"].items():
        print(f"  {name:14s} {seconds['median'] / 60:5.1f} (min-based {seconds['min'] / 60:.1f})")
    print(
        f"study: {estimate['jobs']} jobs, {estimate['worker_seconds'] / 60:.0f} worker-min, about "
        f"{estimate['total_seconds'] / 60:.0f} min with {args.workers} workers "
        f"({estimate['total_seconds_min'] / 60:.0f} min from the minimum step times)"
    )
    return calibration


def main(argv: list[str] | None = None) -> dict | None:
    (args,) = HfArgumentParser(CompareArguments).parse_args_into_dataclasses(argv)
    if args.job is not None:
        name, seed = args.job.split(":")
        torch.set_num_threads(args.threads)
        run_job(name, int(seed), args.scale, args.output_dir)
        return None
    if args.calibrate:
        return run_calibration(args)
    if args.report:
        write_report(args.output_dir, args.results_md, args.scale, args.seeds, args.workers)
        print(
            f"wrote {display_path(args.results_md)} and {display_path(args.results_md.with_suffix('.json'))} from the "
            f"finished runs in {display_path(args.output_dir)}"
        )
        return None
    return run_study(args)


if __name__ == "__main__":
    result = main()
    if result and result.get("failed"):
        sys.exit(1)
