"""Regenerate the measured parts of the model cards in `model_cards/`, so no number in a card is typed by hand.

    python scripts/make_model_cards.py                 # every card: YAML header, architecture, parameters / GMACs,
                                                       # and the study section of the Fashion-MNIST card
    python scripts/make_model_cards.py --fashion_mnist_results runs/demo-fashion-mnist/all_results.json

Each card's hand-written text stays as it is; the script rewrites
- the YAML header (Hub metadata; a `model-index` only where accuracy was measured: none for the presets, which
  have no trained weights; the Fashion-MNIST card once a results file is given);
- `<!-- architecture:start -->...<!-- architecture:end -->`: stages, channels, blocks and head groups of the config;
- `<!-- cost:start -->...<!-- cost:end -->`: parameters and forward GMACs, counted by `scripts/model_cost.py`
  (`count_parameters`, `count_forward_macs`) on the meta device (shapes only; the same counts as on CPU);
- Fashion-MNIST card only: `<!-- command:start -->` (the training command `scripts/demo.py` runs, i.e. the README's
  main job), `<!-- results:start -->` (this model's accuracies, from the `all_results.json` the demo writes; without
  `--fashion_mnist_results` the results section and the `model-index` are left as they are) and
  `<!-- study:start -->` (how the architecture compares with same-size peers and its own ablations: the numbers and
  claims of the small-scale study `docs/results.md`, read from the `docs/results.json` that
  `python scripts/compare_models.py --report` writes with it; `--study_results` picks another file; without the
  file the study section is left as it is). The `model-index` holds only this model's own test accuracy.

The configs are built by the same code that builds the models: `VisionBigBirdConfig.from_preset` for the presets,
the training script's `parse_args` + `build_config` on the demo's command for the Fashion-MNIST model.
`tests/test_model_cards.py` checks that every card is what this script writes.
"""

import json
import re
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch
import yaml
from transformers import HfArgumentParser

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification
from vision_bigbird_hf.fashion_mnist import FASHION_MNIST_CLASSES


SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

from model_cost import SWIN_NAMES, build_swin, count_forward_macs, count_parameters  # noqa: E402


MODEL_CARDS = REPO_ROOT / "model_cards"
FASHION_MNIST_CARD = "vision-bigbird-fashion-mnist"
PRESET_CARDS = {"vision-bigbird-tiny": "tiny", "vision-bigbird-small": "small", "vision-bigbird-base": "base"}
COMMON_TAGS = ["vision", "image-classification", "vision_bigbird", "custom_code"]
COST_IMAGE_SIZE = 224
STUDY_RESULTS = REPO_ROOT / "docs" / "results.json"
STUDY_HEADING = "## How the architecture compares (small-scale study)"


@dataclass
class ModelCardArguments:
    fashion_mnist_results: str | None = field(
        default=None,
        metadata={"help": "all_results.json of the demo run (scripts/run_demo.sh) to fill the Fashion-MNIST results."},
    )
    study_results: str = field(
        default=str(STUDY_RESULTS),
        metadata={
            "help": "results.json of the small-scale study (python scripts/compare_models.py --report writes it "
            "next to docs/results.md) to fill the Fashion-MNIST card's study section (default: docs/results.json)."
        },
    )
    cards_dir: str = field(default=str(MODEL_CARDS), metadata={"help": "Folder holding one folder per card."})


# ---- Configs of the cards ------------------------------------------------------


def preset_config(preset: str) -> VisionBigBirdConfig:
    """The preset with an ImageNet-sized (1000-class) head, the size its parameter count is quoted at."""
    return VisionBigBirdConfig.from_preset(preset, num_labels=1000)


def demo_training_command() -> list[str]:
    """The arguments `scripts/demo.py` passes to the training script, with the demo's default options."""
    import demo

    with mock.patch.object(sys, "argv", ["demo.py"]):
        return demo.training_command(demo.parse_args())


def fashion_mnist_config() -> VisionBigBirdConfig:
    """The config the demo trains: the training script's own argument parsing and config building on its command."""
    import train_image_classification

    model_args, _, _ = train_image_classification.parse_args(demo_training_command())
    return train_image_classification.build_config(model_args, FASHION_MNIST_CLASSES)


def demo_image_size() -> int:
    command = demo_training_command()
    return int(command[command.index("--image_size") + 1])


def demo_min_crop_scale() -> float:
    command = demo_training_command()
    return float(command[command.index("--min_crop_scale") + 1])


# ---- Measured sections -------------------------------------------------------------


def measure_cost(model_builder, image_sizes: list[int]) -> dict:
    """Parameters and forward MACs (batch 1, square RGB input of each size) of the model `model_builder()` returns,
    built and run on the meta device."""
    with torch.device("meta"):
        model = model_builder().eval()
        macs = {size: count_forward_macs(model, torch.randn(1, 3, size, size)) for size in image_sizes}
    return {"params": count_parameters(model), "macs": macs}


def format_macs(macs: int) -> str:
    """MACs with two decimals, in G (or in M below 0.1 G, where two decimals of G would round to nothing)."""
    return f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.2f} M"


def cost_rows(name: str, cost: dict) -> list[str]:
    params = f"{cost['params']:,} ({cost['params'] / 1e6:.2f} M)"
    return [f"| {name} | {size}x{size} | {params} | {format_macs(macs)} |" for size, macs in cost["macs"].items()]


def cost_section(config: VisionBigBirdConfig, image_sizes: list[int], swin_size: str | None = None) -> str:
    """Parameters and MACs of the classifier for `config` (and of transformers' Swin of the same size, if given)."""
    lines = ["| model | input | parameters | forward MACs |", "|---|---|---:|---:|"]
    cost = measure_cost(lambda: VisionBigBirdForImageClassification(config), image_sizes)
    lines += cost_rows(f"this model, {config.num_labels}-class head", cost)
    if swin_size is not None:
        swin_cost = measure_cost(lambda: build_swin(swin_size), image_sizes)
        lines += cost_rows(f"{SWIN_NAMES[swin_size]} (transformers' Swin), 1000-class head, for comparison", swin_cost)
    lines += [
        "",
        "Counted by `python scripts/make_model_cards.py` with `count_parameters` and `count_forward_macs` of",
        "`scripts/model_cost.py`: torch's `FlopCounterMode` with SDPA counted, MACs = FLOPs / 2, batch size 1, RGB",
        "input; normalisation, activations, softmax and pooling count zero.",
    ]
    return "\n".join(lines)


def architecture_section(config: VisionBigBirdConfig) -> str:
    lines = [
        "| stage | stride | channels | blocks | heads: conv / RS-Win / global | global pool grid |",
        "|---|---:|---:|---:|---|---|",
    ]
    for stage, (channels, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        heads = f"{config.conv_heads[stage]} / {config.rswin_heads[stage]} / {config.global_heads[stage]}"
        pool = config.global_pool_size[stage]
        pool_grid = f"{pool}x{pool}" if config.global_heads[stage] else "-"
        lines.append(f"| {stage + 1} | {4 * 2**stage} | {channels} | {depth} | {heads} | {pool_grid} |")
    lines += [
        "",
        f"RS-Win windows of {config.rswin_window_size}x{config.rswin_window_size} = {config.rswin_window_size**2} "
        f"tokens, depthwise-conv kernel {config.conv_kernel_size}x{config.conv_kernel_size}, MLP ratio "
        f"{config.mlp_ratio:g},",
        f"stochastic depth {config.drop_path_rate:g}, "
        f"position embedding: {'learned absolute' if config.use_absolute_embeddings else 'none'}.",
    ]
    return "\n".join(lines)


def command_section(width: int = 100) -> str:
    """The demo's training command as a bash block, one line per few `--flag value` pairs."""
    groups = []
    for word in shlex.split(shlex.join(demo_training_command())):
        if word.startswith("--") or not groups:
            groups.append(word)
        else:
            groups[-1] += " " + shlex.quote(word)
    lines = ["python scripts/train_image_classification.py"]
    for group in groups:
        if len(lines[-1]) + len(group) + 1 > width:
            lines.append("    " + group)
        else:
            lines[-1] += " " + group
    return "```bash\n" + " \\\n".join(lines) + "\n```"


def results_section(metrics: dict, metrics_path: str) -> str:
    epochs = metrics["epoch"]
    return "\n".join([
        "| split | images | accuracy |",
        "|---|---:|---:|",
        f"| test (official Fashion-MNIST test set) | {metrics['test_samples']:,} | {metrics['test_accuracy']:.4f} |",
        f"| validation (held out from the training split) | {metrics['eval_samples']:,} "
        f"| {metrics['eval_accuracy']:.4f} |",
        "",
        f"Trained on {metrics['train_samples']:,} images for {epochs:g} epoch{'' if epochs == 1 else 's'} in "
        f"{metrics['train_runtime'] / 60:.1f} min (`train_runtime`).",
        f"Numbers from `{metrics_path}`, the training run's metrics (`bash scripts/run_demo.sh` writes",
        "`runs/demo-fashion-mnist/all_results.json`), put here by",
        f"`python scripts/make_model_cards.py --fashion_mnist_results {metrics_path}`.",
    ])


def format_accuracy(entry: dict) -> str:
    """'85.47 ± 0.22 (n=3)', as `docs/results.md` prints a configuration's test accuracy (in percent)."""
    if not entry["n_seeds"]:
        return "not run"
    mean, sd = entry["test_accuracy_mean"], entry["test_accuracy_sd"]
    return f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "") + f" (n={entry['n_seeds']})"


def describe_overrides(overrides: str) -> str:
    """'widths 30-60-120-240, depths 1-1-2-1, heads 3-3-6-6' from a `--config_overrides` string of the training
    script (parsed by the training script's own parser)."""
    import train_image_classification

    fields = train_image_classification.parse_config_overrides(overrides)
    labels = {"hidden_sizes": "widths", "depths": "depths", "num_heads": "heads"}
    return ", ".join(f"{label} {'-'.join(map(str, fields[key]))}" for key, label in labels.items() if key in fields)


def study_section(study: dict, study_path: str, model_params: int, model_min_crop_scale: float) -> str:
    """The study's table and reading (from its results.json `study`) for the Fashion-MNIST card, with what sets the
    study's Vision Big Bird apart from this model (`model_params` parameters, crops of `model_min_crop_scale`-1)."""
    (vbb,) = [entry for entry in study["configurations"] if entry["kind"] == "vbb"]
    settings = study["scale_settings"]
    epochs = settings["num_train_epochs"]
    if vbb["params"] == model_params:
        size = "as large as"
    else:
        size = "smaller than" if vbb["params"] < model_params else "larger than"
    intro = (
        f"These are not this model's numbers: they come from the small-scale study `{study['report']}` of the "
        f"vision-bigbird-hf repository (`{study['generated_by']}` writes it and `{study_path}`, from which this "
        "section is generated). There every configuration is trained from scratch on Fashion-MNIST with one shared "
        f"recipe ({study['train_images']:,} training images, {epochs:g} epoch{'' if epochs == 1 else 's'} = "
        f"{study['steps_per_run']} steps of batch {settings['batch_size']}, "
        f"{study['image_size']}x{study['image_size']} input, random crops of scale "
        f"{study['recipe']['min_crop_scale']:g}-1) once for each of the seeds "
        f"{', '.join(map(str, study['seeds']))}, and tested on the {study['test_images']:,} official test images. "
        f"The study's Vision Big Bird, `{vbb['name']}` ({vbb['description']}; "
        f"{describe_overrides(vbb['config_overrides'])}; {vbb['params'] / 1e6:.2f} M parameters), is a different "
        f"model, {size} this demo model ({model_params / 1e6:.2f} M parameters, trained with crops of scale "
        f"{model_min_crop_scale:g}-1, see *Training*), so its accuracies are not this model's. The peers are "
        "transformers' models scaled to its parameter count; the ablations remove one part of it."
    )
    lines = [
        textwrap.fill(intro, width=115, break_long_words=False, break_on_hyphens=False),
        "",
        "| configuration | what | test accuracy % (mean ± sd, n seeds) | params (M) |",
        "|---|---|---:|---:|",
    ]
    for entry in study["configurations"]:
        lines.append(
            f"| `{entry['name']}` | {entry['description']} | {format_accuracy(entry)} | {entry['params'] / 1e6:.3f} |"
        )
    lines += [
        "",
        f"The study's reading of its numbers ({study['finished_runs']} of {study['planned_runs']} planned runs "
        "finished):",
        "",
        *study["claims"],
        "",
        study["caveats"],
    ]
    return "\n".join(lines)


def load_study(path: Path) -> dict | None:
    """The study's results.json, or None (with a note) when there is none."""
    if not path.is_file():
        print(f"note: no study results at {path}: the Fashion-MNIST card's study section is left as it is")
        return None
    return json.loads(path.read_text())


def display_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ---- YAML header -----------------------------------------------------------------


def front_matter(card: str, model_index: list | None) -> dict:
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
        "license": "apache-2.0",
        "tags": list(COMMON_TAGS),
    }
    if card == FASHION_MNIST_CARD:
        metadata["tags"].append("fashion-mnist")
        metadata["datasets"] = ["zalando-datasets/fashion_mnist"]
        metadata["metrics"] = ["accuracy"]
    else:
        metadata["datasets"] = []  # architecture only: no weights trained on any dataset
    if model_index:
        metadata["model-index"] = model_index
    return metadata


def fashion_mnist_model_index(metrics: dict) -> list:
    return [
        {
            "name": FASHION_MNIST_CARD,
            "results": [
                {
                    "task": {"type": "image-classification", "name": "Image Classification"},
                    "dataset": {"type": "zalando-datasets/fashion_mnist", "name": "Fashion-MNIST", "split": "test"},
                    "metrics": [{"type": "accuracy", "value": round(metrics["test_accuracy"], 4), "name": "Accuracy"}],
                }
            ],
        }
    ]


# ---- Card text -------------------------------------------------------------------


def split_front_matter(text: str) -> tuple[dict, str]:
    """(parsed YAML header, the rest of the card)."""
    match = re.match(r"---\n(.*?)^---\n", text, flags=re.DOTALL | re.MULTILINE)
    if match is None:
        raise ValueError("a model card must start with a YAML header between '---' lines")
    return yaml.safe_load(match.group(1)) or {}, text[match.end() :]


def section_pattern(name: str) -> str:
    return rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)"


def read_section(text: str, name: str) -> str:
    """The text between `<!-- name:start -->` and `<!-- name:end -->` (without the newline before the end marker)."""
    match = re.search(section_pattern(name), text, flags=re.DOTALL)
    if match is None:
        raise ValueError(f"no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return match.group(2).removesuffix("\n")


def replace_section(text: str, name: str, body: str) -> str:
    read_section(text, name)  # fails clearly if the markers are missing
    return re.sub(
        section_pattern(name), lambda match: match.group(1) + body + "\n" + match.group(3), text, flags=re.DOTALL
    )


def render_card(
    card: str,
    text: str,
    metrics: dict | None = None,
    metrics_path: str | None = None,
    study: dict | None = None,
    study_path: str | None = None,
) -> str:
    """The card `text` with its generated parts rewritten (results only when `metrics` are given, the Fashion-MNIST
    card's study section only when the study's results.json `study` is given)."""
    old_metadata, body = split_front_matter(text)
    if card == FASHION_MNIST_CARD:
        config, image_sizes = fashion_mnist_config(), [demo_image_size(), COST_IMAGE_SIZE]
        body = replace_section(body, "command", command_section())
        if metrics is not None:
            body = replace_section(body, "results", results_section(metrics, metrics_path))
        if study is not None:
            with torch.device("meta"):
                params = count_parameters(VisionBigBirdForImageClassification(config))
            body = replace_section(body, "study", study_section(study, study_path, params, demo_min_crop_scale()))
        model_index = fashion_mnist_model_index(metrics) if metrics is not None else old_metadata.get("model-index")
    else:
        config, image_sizes, model_index = preset_config(PRESET_CARDS[card]), [COST_IMAGE_SIZE], None
    body = replace_section(body, "architecture", architecture_section(config))
    body = replace_section(body, "cost", cost_section(config, image_sizes, PRESET_CARDS.get(card)))
    header = yaml.safe_dump(front_matter(card, model_index), sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n{body}"


def main():
    (args,) = HfArgumentParser(ModelCardArguments).parse_args_into_dataclasses()
    metrics = json.loads(Path(args.fashion_mnist_results).read_text()) if args.fashion_mnist_results else None
    study_path = Path(args.study_results)
    study = load_study(study_path)
    print(f"torch {torch.__version__}; counting on the meta device, batch 1")
    for card in [*PRESET_CARDS, FASHION_MNIST_CARD]:
        path = Path(args.cards_dir) / card / "README.md"
        if card == FASHION_MNIST_CARD:
            text = render_card(
                card, path.read_text(), metrics, args.fashion_mnist_results, study, display_path(study_path)
            )
            sources = [f"results from {args.fashion_mnist_results}"] if metrics else []
            sources += [f"study from {display_path(study_path)}"] if study else []
        else:
            text, sources = render_card(card, path.read_text()), []
        path.write_text(text)
        print(f"updated {path}" + (f" ({'; '.join(sources)})" if sources else ""))


if __name__ == "__main__":
    main()
