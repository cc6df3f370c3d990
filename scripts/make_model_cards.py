"""Regenerate the measured parts of the model cards in `model_cards/`, so no number in a card is typed by hand.

    python scripts/make_model_cards.py                 # every card: YAML header, architecture, parameters / GMACs
    python scripts/make_model_cards.py --fashion_mnist_results runs/demo-fashion-mnist/all_results.json

Each card's hand-written text stays as it is; the script rewrites
- the YAML header (Hub metadata; a `model-index` only where accuracy was measured: none for the presets, which
  have no trained weights; the Fashion-MNIST card once a results file is given);
- `<!-- architecture:start -->...<!-- architecture:end -->`: stages, channels, blocks and head groups of the config;
- `<!-- cost:start -->...<!-- cost:end -->`: parameters and forward GMACs, counted by `scripts/model_cost.py`
  (`count_parameters`, `count_forward_macs`) on the meta device (shapes only; the same counts as on CPU);
- Fashion-MNIST card only: `<!-- command:start -->` (the training command `scripts/demo.py` runs, i.e. the README's
  main job) and `<!-- results:start -->` (accuracies from the `all_results.json` the demo writes). Without a results
  file the results section and the `model-index` are left as they are.

The configs are built by the same code that builds the models: `VisionBigBirdConfig.from_preset` for the presets,
the training script's `parse_args` + `build_config` on the demo's command for the Fashion-MNIST model.
`tests/test_model_cards.py` checks that every card is what this script writes.
"""

import json
import re
import shlex
import sys
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


@dataclass
class ModelCardArguments:
    fashion_mnist_results: str | None = field(
        default=None,
        metadata={"help": "all_results.json of the demo run (scripts/run_demo.sh) to fill the Fashion-MNIST results."},
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


def render_card(card: str, text: str, metrics: dict | None = None, metrics_path: str | None = None) -> str:
    """The card `text` with its generated parts rewritten (results only when `metrics` are given)."""
    old_metadata, body = split_front_matter(text)
    if card == FASHION_MNIST_CARD:
        config, image_sizes = fashion_mnist_config(), [demo_image_size(), COST_IMAGE_SIZE]
        body = replace_section(body, "command", command_section())
        if metrics is not None:
            body = replace_section(body, "results", results_section(metrics, metrics_path))
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
    print(f"torch {torch.__version__}; counting on the meta device, batch 1")
    for card in [*PRESET_CARDS, FASHION_MNIST_CARD]:
        path = Path(args.cards_dir) / card / "README.md"
        card_metrics = metrics if card == FASHION_MNIST_CARD else None
        path.write_text(render_card(card, path.read_text(), card_metrics, args.fashion_mnist_results))
        print(f"updated {path}" + (f" (results from {args.fashion_mnist_results})" if card_metrics else ""))


if __name__ == "__main__":
    main()
