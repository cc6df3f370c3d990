"""Write the model card of the Fashion-MNIST demo model, `model_cards/vision-bigbird-fashion-mnist/README.md`, from its
Jinja template in `model_cards/templates/`, and `docs/presets.md`, the architecture of every preset in `PRESETS`.

A card exists only for trained weights; the presets without weights are described in `docs/presets.md`. Cards use
huggingface_hub's `ModelCard.from_template`. Parameters and forward MACs are counted on the meta device. The demo
model's config, command and accuracies come from `--demo_dir`'s `demo_results.json`, copied into the card's folder
(that copy is committed, and the default); the study table comes from `docs/results.json`.

    python scripts/make_model_cards.py --demo_dir runs/demo-fashion-mnist  # after `bash scripts/run_demo.sh`
"""

import argparse
import json
import shlex
import shutil
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from model_cost import SWIN_SIZES, count_forward_flops
from transformers import SwinConfig, SwinForImageClassification

from vision_bigbird_hf import PRESETS, VisionBigBirdConfig, VisionBigBirdForImageClassification

REPO_ROOT = Path(__file__).resolve().parent.parent
CARDS = REPO_ROOT / "model_cards"
FASHION_MNIST_CARD = "vision-bigbird-fashion-mnist"
METADATA = {"library_name": "transformers", "pipeline_tag": "image-classification", "license": "apache-2.0"}
TAGS = ["vision", "image-classification", "vision_bigbird", "custom_code"]
# What each preset is for, in docs/presets.md (one entry per preset: a new preset needs its line here)
PRESET_PURPOSES = {
    "tiny": "Swin-T-sized stages, heads split as evenly as possible over the three groups; Swin-T's stochastic depth.",
    "small": "Swin-S-sized stages, heads split as evenly as possible over the three groups; Swin-S's stochastic depth.",
    "base": "Swin-B-sized stages, heads split as evenly as possible over the three groups; Swin-B's stochastic depth.",
    "demo": (
        "The Fashion-MNIST demo model (`scripts/demo.py`, weights and results in "
        "[`model_cards/vision-bigbird-fashion-mnist`](../model_cards/vision-bigbird-fashion-mnist/README.md)): 32x32 "
        "inputs, a 2-core CPU, every head group present in every stage."
    ),
    "study": (
        "The Vision Big Bird of the small-scale study ([results.md](results.md), `scripts/study_models.py`): the "
        "peers' parameter count and token grid at 32x32; the ablations override its head split or sampling."
    ),
}
# The input sizes of each preset's cost table: ImageNet's for the Swin-sized ones, the demo's and ImageNet's otherwise
COST_SIZES = {name: [224] if name in SWIN_SIZES else [32, 224] for name in PRESETS}


def architecture(config: VisionBigBirdConfig) -> str:
    """The stage table (stage i has stride 4 * 2**i) and the block settings."""
    lines = [
        "| stage | stride | channels | blocks | heads: conv / RS-Win / global | global pool grid |",
        "|---|---:|---:|---:|---|---|",
    ]
    for i, (channels, depth, pool) in enumerate(zip(config.hidden_sizes, config.depths, config.global_pool_size)):
        heads = (config.conv_heads[i], config.rswin_heads[i], config.global_heads[i])
        grid = f"{pool}x{pool}" if heads[2] else "-"
        lines.append(f"| {i + 1} | {4 * 2**i} | {channels} | {depth} | {' / '.join(map(str, heads))} | {grid} |")
    window, kernel = config.rswin_window_size, config.conv_kernel_size
    embedding = "learned absolute" if config.use_absolute_embeddings else "none"
    return "\n".join(lines) + (
        f"\n\nRS-Win windows of {window}x{window} = {window**2} tokens, depthwise-conv kernel {kernel}x{kernel}, "
        f"MLP ratio {config.mlp_ratio:g},\nstochastic depth {config.drop_path_rate:g}, position embedding: {embedding}."
    )


def cost(config: VisionBigBirdConfig, image_sizes: list[int], swin_size: str | None = None) -> str:
    """One row per model and input size: parameters and forward MACs (FLOPs / 2) for one image, on meta."""
    lines = ["| model | input | parameters | forward MACs |", "|---|---|---:|---:|"]
    with torch.device("meta"):
        models = {f"this model, {config.num_labels}-class head": VisionBigBirdForImageClassification(config)}
        if swin_size is not None:
            swin = SwinForImageClassification(SwinConfig(**SWIN_SIZES[swin_size], num_labels=1000))
            models[f"{swin_name(swin_size)} (transformers' Swin), 1000-class head, for comparison"] = swin
        for label, model in models.items():
            params = model.eval().num_parameters()
            for size in image_sizes:
                macs = count_forward_flops(model, torch.zeros(1, 3, size, size)) / 2
                printed = f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.2f} M"
                lines.append(f"| {label} | {size}x{size} | {params:,} ({params / 1e6:.2f} M) | {printed} |")
    return "\n".join(lines)


def swin_name(size: str) -> str:
    return f"Swin-{size[0].upper()}"  # "tiny" -> "Swin-T"


def flag(argv: list[str], name: str) -> str:
    if name not in argv:
        raise ValueError(f"demo_results.json: training_command has no {name}")
    return argv[argv.index(name) + 1]


def command(argv: list[str], width: int = 100) -> str:
    """The training command as a bash block: `--flag value` groups, as many per line as fit in `width`."""
    groups = []
    for word in map(shlex.quote, argv):
        if word.startswith("--") or not groups:
            groups.append(word)
        else:
            groups[-1] += " " + word
    lines = ["python scripts/train_image_classification.py"]
    for group in groups:
        if len(lines[-1]) + len(group) + 1 > width:
            lines.append("    " + group)
        else:
            lines[-1] += " " + group
    return "```bash\n" + " \\\n".join(lines) + "\n```"


def presets_page() -> str:
    """docs/presets.md: every preset's stage table, block settings and cost, in `PRESETS` order."""
    if set(PRESET_PURPOSES) != set(PRESETS):
        raise ValueError(
            f"PRESET_PURPOSES names {sorted(PRESET_PURPOSES)}, PRESETS {sorted(PRESETS)}: keep them equal"
        )
    generated_by = (
        "<!-- Written by `python scripts/make_model_cards.py` from `PRESETS` in "
        "src/vision_bigbird_hf/configuration_vision_bigbird.py; do not edit by hand. -->"
    )
    introduction = (
        "A preset is one dict of `PRESETS` holding every per-size value of a model, stochastic depth included. "
        '`VisionBigBirdConfig.from_preset("tiny", num_labels=10)` builds one (keyword arguments override any field), '
        "and the training scripts take `--model_preset <name>`. Only the `demo` preset has trained weights (its model "
        "card); the others are architectures to train. Parameters: `model.num_parameters()`; MACs: torch's "
        "`FlopCounterMode` (FLOPs / 2, SDPA counted) for one RGB image; normalisation, activations and pooling count "
        "zero."
    )
    parts = ["# Vision Big Bird presets", "", generated_by, "", introduction]
    for name in PRESETS:
        swin_size = name if name in SWIN_SIZES else None
        config = VisionBigBirdConfig.from_preset(name, num_labels=1000 if swin_size else 10)  # ImageNet, Fashion-MNIST
        parts += ["", f"## `{name}`", "", PRESET_PURPOSES[name], "", f"`PRESETS[{name!r}]`: `{PRESETS[name]}`"]
        parts += ["", architecture(config), "", cost(config, COST_SIZES[name], swin_size)]
    return "\n".join(parts) + "\n"


def recorded_preset(argv: list[str]) -> tuple[str, VisionBigBirdConfig]:
    """The preset the recorded command trained, and its config: `--model_preset` with any `--config_overrides` (how
    commands spelled the demo model before it became the `demo` preset) must give a preset's config exactly."""
    overrides = json.loads(flag(argv, "--config_overrides")) if "--config_overrides" in argv else {}
    config = VisionBigBirdConfig.from_preset(flag(argv, "--model_preset"), num_labels=10, **overrides)
    for name in PRESETS:
        if VisionBigBirdConfig.from_preset(name, num_labels=10).to_dict() == config.to_dict():
            return name, config
    raise ValueError(f"demo_results.json: the training command's model is none of the presets {sorted(PRESETS)}")


def fashion_mnist_card(demo: dict, study: dict, study_source: str, template: Path) -> ModelCard:
    argv = demo["training_command"]
    argv = argv[1:] if argv and argv[0].endswith(".py") else argv
    preset, config = recorded_preset(argv)
    image_size = int(flag(argv, "--image_size"))
    accuracy = EvalResult(
        task_type="image-classification",
        task_name="Image Classification",
        dataset_type="zalando-datasets/fashion_mnist",
        dataset_name="Fashion-MNIST",
        dataset_split="test",
        metric_type="accuracy",
        metric_name="Accuracy",
        metric_value=round(demo["test_accuracy"], 4),
    )
    data = ModelCardData(
        **METADATA,
        tags=[*TAGS, "fashion-mnist"],
        datasets=["zalando-datasets/fashion_mnist"],
        metrics=["accuracy"],
        model_name=FASHION_MNIST_CARD,
        eval_results=[accuracy],
    )
    return ModelCard.from_template(
        data,
        str(template),
        image_size=image_size,
        preset=preset,
        min_crop_scale=flag(argv, "--min_crop_scale"),
        architecture=architecture(config),
        cost=cost(config, sorted({image_size, 224})),
        command=command(argv),
        demo=demo,
        study=study,
        study_source=study_source,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo_dir", type=Path, default=CARDS / FASHION_MNIST_CARD, help="the demo's output folder")
    parser.add_argument("--study_results", type=Path, default=REPO_ROOT / "docs/results.json", help="study results")
    parser.add_argument("--cards_dir", type=Path, default=CARDS, help="where the cards are written")
    parser.add_argument("--presets_page", type=Path, default=REPO_ROOT / "docs/presets.md", help="the presets' page")
    parser.add_argument("--templates_dir", type=Path, default=CARDS / "templates", help="the cards' Jinja templates")
    parser.add_argument("--validate", action="store_true", help="check each card's metadata with the Hub (online)")
    args = parser.parse_args()
    demo_file, study_file = args.demo_dir / "demo_results.json", args.study_results.resolve()
    for path, what in ((demo_file, "--demo_dir: demo_results.json"), (study_file, "--study_results")):
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {path} does not exist")
    committed_demo = args.cards_dir / FASHION_MNIST_CARD / "demo_results.json"
    committed_demo.parent.mkdir(parents=True, exist_ok=True)
    if demo_file.resolve() != committed_demo.resolve():
        shutil.copyfile(demo_file, committed_demo)
        print(f"copied {demo_file} to {committed_demo}")
    demo, study = json.loads(committed_demo.read_text()), json.loads(study_file.read_text())
    study_source = study_file.relative_to(REPO_ROOT) if study_file.is_relative_to(REPO_ROOT) else study_file
    templates = args.templates_dir
    card = fashion_mnist_card(demo, study, str(study_source), templates / "fashion_mnist.md")
    if args.validate:
        card.validate()
    card.save(args.cards_dir / FASHION_MNIST_CARD / "README.md")
    print(f"wrote {args.cards_dir / FASHION_MNIST_CARD / 'README.md'}")
    args.presets_page.parent.mkdir(parents=True, exist_ok=True)
    args.presets_page.write_text(presets_page())
    print(f"wrote {args.presets_page}")


if __name__ == "__main__":
    main()
