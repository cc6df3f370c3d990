#!/usr/bin/env python
"""Write the model cards `model_cards/<card>/README.md`, whole, from the templates in `model_cards/templates/`.

    python scripts/make_model_cards.py                                     # from the committed sources
    python scripts/make_model_cards.py --demo_dir runs/demo-fashion-mnist  # after `bash scripts/run_demo.sh`

The cards are huggingface_hub `ModelCard`s: the Hub metadata is a `ModelCardData` (with an `EvalResult` only where
weights were trained and tested: the Fashion-MNIST demo model), the text a Jinja template. Every number is computed
here or read from a file: architecture and cost from the config (parameters with `num_parameters()`, forward MACs
with torch's `FlopCounterMode`, both on the meta device); the Fashion-MNIST model's config, command and accuracies from
the demo's `demo_results.json` (`--demo_dir` copies it into the card's folder, which is the committed source); the
study table from `docs/results.json` (`python scripts/compare_models.py --report`). `--validate` also checks the
metadata with the Hub (`ModelCard.validate()`, needs the network).
"""

import json
import shlex
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser, SwinConfig, SwinForImageClassification

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


REPO_ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_CARD = "vision-bigbird-fashion-mnist"
PRESETS = {"tiny": "Tiny", "small": "Small", "base": "Base"}
# transformers' Swin-T/S/B (window 7, 224x224), the sizes the presets follow
SWIN = {
    "tiny": ("Swin-T", {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]}),
    "small": ("Swin-S", {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]}),
    "base": ("Swin-B", {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]}),
}
TAGS = ["vision", "image-classification", "vision_bigbird", "custom_code"]


@dataclass
class CardArguments:
    demo_dir: str = field(
        default=str(REPO_ROOT / "model_cards" / FASHION_MNIST_CARD),
        metadata={"help": "Folder with the demo's demo_results.json (default: the card's committed copy)."},
    )
    study_results: str = field(
        default=str(REPO_ROOT / "docs" / "results.json"), metadata={"help": "The study's results.json."}
    )
    cards_dir: str = field(default=str(REPO_ROOT / "model_cards"), metadata={"help": "Where the cards are written."})
    templates_dir: str = field(
        default=str(REPO_ROOT / "model_cards" / "templates"), metadata={"help": "The cards' Jinja templates."}
    )
    validate: bool = field(default=False, metadata={"help": "Check each card's metadata with the Hub (online)."})


# ---- Sections -----------------------------------------------------------------


def architecture(config: VisionBigBirdConfig) -> str:
    lines = ["| stage | stride | channels | blocks | heads: conv / RS-Win / global | global pool grid |",
             "|---|---:|---:|---:|---|---|"]
    for stage, (channels, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        heads = f"{config.conv_heads[stage]} / {config.rswin_heads[stage]} / {config.global_heads[stage]}"
        pool = config.global_pool_size[stage]
        grid = f"{pool}x{pool}" if config.global_heads[stage] else "-"
        lines.append(f"| {stage + 1} | {4 * 2**stage} | {channels} | {depth} | {heads} | {grid} |")
    window = config.rswin_window_size
    lines += ["", f"RS-Win windows of {window}x{window} = {window**2} tokens, depthwise-conv kernel "
              f"{config.conv_kernel_size}x{config.conv_kernel_size}, MLP ratio {config.mlp_ratio:g},",
              f"stochastic depth {config.drop_path_rate:g}, position embedding: "
              f"{'learned absolute' if config.use_absolute_embeddings else 'none'}."]
    return "\n".join(lines)


def cost_rows(label: str, build, image_sizes: list[int]) -> list[str]:
    """One table row per input size: parameters and forward MACs (FLOPs / 2) of `build()`, on the meta device."""
    rows = []
    with torch.device("meta"):
        model = build().eval()
        for size in image_sizes:
            with FlopCounterMode(display=False) as counter:
                model(torch.zeros(1, 3, size, size))
            macs = counter.get_total_flops() / 2
            printed = f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.2f} M"
            params = model.num_parameters()
            rows.append(f"| {label} | {size}x{size} | {params:,} ({params / 1e6:.2f} M) | {printed} |")
    return rows


def cost(config: VisionBigBirdConfig, image_sizes: list[int], preset: str | None = None) -> str:
    lines = ["| model | input | parameters | forward MACs |", "|---|---|---:|---:|"]
    lines += cost_rows(f"this model, {config.num_labels}-class head",
                       lambda: VisionBigBirdForImageClassification(config), image_sizes)
    if preset is not None:
        swin_name, swin_sizes = SWIN[preset]
        lines += cost_rows(f"{swin_name} (transformers' Swin), 1000-class head, for comparison",
                           lambda: SwinForImageClassification(SwinConfig(**swin_sizes, num_labels=1000)), image_sizes)
    lines += ["", "Parameters: `model.num_parameters()`; MACs: torch's `FlopCounterMode` (FLOPs / 2, SDPA counted) for",
              "one RGB image; normalisation, activations and pooling count zero."]
    return "\n".join(lines)


def flag(argv: list[str], name: str) -> str:
    if name not in argv:
        raise ValueError(f"demo_results.json: training_command has no {name}")
    return argv[argv.index(name) + 1]


def command(argv: list[str], width: int = 100) -> str:
    """The training command as a bash block, a few `--flag value` pairs per line."""
    groups = []
    for word in argv:
        if word.startswith("--") or not groups:
            groups.append(shlex.quote(word))
        else:
            groups[-1] += " " + shlex.quote(word)
    lines = ["python scripts/train_image_classification.py"]
    for group in groups:
        if len(lines[-1]) + len(group) + 1 > width:
            lines.append("    " + group)
        else:
            lines[-1] += " " + group
    return "```bash\n" + " \\\n".join(lines) + "\n```"


def results(demo: dict, source: str) -> str:
    return "\n".join([
        "| split | accuracy |",
        "|---|---:|",
        f"| test (the 10,000 official Fashion-MNIST test images) | {demo['test_accuracy']:.4f} |",
        f"| validation (held out from the training split) | {demo['eval_accuracy']:.4f} |",
        "",
        textwrap.fill(
            f"{demo['train_minutes']:.1f} min of training and evaluation on a 2-core CPU; "
            f"`pipeline(\"image-classification\")` labelled "
            f"{demo['pipeline_correct']} of {demo['pipeline_total']} held-out test images correctly. Run of "
            f"{demo['date_utc']}, numbers from `{source}`.", width=115,
        ),
    ])


def study(study_results: dict, source: str) -> str:
    rows = ["| configuration | what | test accuracy % (mean ± sd, n seeds) | params (M) |", "|---|---|---:|---:|"]
    for entry in study_results["configurations"]:
        accuracy = "not run"
        if entry["n_seeds"]:
            sd = f" ± {entry['test_accuracy_sd']:.2f}" if entry["test_accuracy_sd"] is not None else ""
            accuracy = f"{entry['test_accuracy_mean']:.2f}{sd} (n={entry['n_seeds']})"
        params = f"{entry['params'] / 1e6:.3f}" if entry["params"] else "—"
        rows.append(f"| `{entry['name']}` | {entry['description']} | {accuracy} | {params} |")
    settings = study_results["settings"]
    intro = (f"Not this model: the models of the repository's study `docs/results.md` (numbers from `{source}`), "
             f"each trained from scratch for {settings['steps_per_run']} steps on {settings['train_images']:,} "
             f"Fashion-MNIST images at {settings['image_size']}x{settings['image_size']}, once per seed, and tested "
             "on the 10,000 official test images; no weights of these runs are published. `docs/results.md` reads "
             "the numbers against the paper's claims.")
    return "\n".join([textwrap.fill(intro, width=115), "", *rows])


# ---- Cards --------------------------------------------------------------------


def preset_card(preset: str, template: Path) -> ModelCard:
    config = VisionBigBirdConfig.from_preset(preset, num_labels=1000)
    data = ModelCardData(library_name="transformers", pipeline_tag="image-classification", license="apache-2.0",
                         tags=TAGS)
    return ModelCard.from_template(
        data, template_path=str(template), title=f"Vision Big Bird-{PRESETS[preset]}", preset=preset,
        swin_name=SWIN[preset][0], architecture=architecture(config), cost=cost(config, [224], preset),
    )


def fashion_mnist_card(demo: dict, demo_source: str, study_results: dict, study_source: str,
                       template: Path) -> ModelCard:
    argv = demo["training_command"]
    argv = argv[1:] if argv and argv[0].endswith(".py") else argv
    overrides = json.loads(flag(argv, "--config_overrides"))
    config = VisionBigBirdConfig.from_preset(flag(argv, "--model_preset"), num_labels=10, **overrides)
    image_size = int(flag(argv, "--image_size"))
    accuracy = EvalResult(
        task_type="image-classification", task_name="Image Classification",
        dataset_type="zalando-datasets/fashion_mnist", dataset_name="Fashion-MNIST", dataset_split="test",
        metric_type="accuracy", metric_name="Accuracy", metric_value=round(demo["test_accuracy"], 4),
    )
    data = ModelCardData(library_name="transformers", pipeline_tag="image-classification", license="apache-2.0",
                         tags=[*TAGS, "fashion-mnist"], datasets=["zalando-datasets/fashion_mnist"],
                         metrics=["accuracy"], model_name=FASHION_MNIST_CARD, eval_results=[accuracy])
    return ModelCard.from_template(
        data, template_path=str(template), image_size=image_size, min_crop_scale=flag(argv, "--min_crop_scale"),
        architecture=architecture(config), cost=cost(config, sorted({image_size, 224})), command=command(argv),
        results=results(demo, demo_source), study=study(study_results, study_source),
    )


def display(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main():
    (args,) = HfArgumentParser(CardArguments).parse_args_into_dataclasses()
    cards_dir, templates = Path(args.cards_dir), Path(args.templates_dir)
    demo_file, study_file = Path(args.demo_dir) / "demo_results.json", Path(args.study_results)
    for path, what in ((demo_file, "--demo_dir: demo_results.json"), (study_file, "--study_results")):
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {path} does not exist")
    committed_demo = cards_dir / FASHION_MNIST_CARD / "demo_results.json"
    committed_demo.parent.mkdir(parents=True, exist_ok=True)
    if demo_file.resolve() != committed_demo.resolve():
        shutil.copyfile(demo_file, committed_demo)
        print(f"copied {demo_file} to {committed_demo}")
    demo, study_results = json.loads(committed_demo.read_text()), json.loads(study_file.read_text())
    cards = {f"vision-bigbird-{preset}": preset_card(preset, templates / "preset.md") for preset in PRESETS}
    cards[FASHION_MNIST_CARD] = fashion_mnist_card(
        demo, f"model_cards/{FASHION_MNIST_CARD}/demo_results.json", study_results, display(study_file),
        templates / "fashion_mnist.md",
    )
    print(f"torch {torch.__version__}; parameters and MACs counted on the meta device, batch 1")
    for name, card in cards.items():
        if args.validate:
            card.validate()
        card.save(cards_dir / name / "README.md")
        print(f"wrote {cards_dir / name / 'README.md'}")


if __name__ == "__main__":
    main()
