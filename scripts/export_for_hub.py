"""Turn a training output folder into a complete Hugging Face Hub repository folder.

    python scripts/export_for_hub.py --run_dir runs/demo-fashion-mnist --output_dir hub/vision-bigbird-fashion-mnist \
        --model_card model_cards/vision-bigbird-fashion-mnist/README.md

The run folder is what `scripts/train_image_classification.py` writes: model, image processor and
`{all,train,eval,test}_results.json` (checkpoints, `training_args.bin` and the Trainer's state are left out). The Hub
folder gets:

- `model.safetensors` and `config.json`, whose `auto_map` names every class (config, base model, classifier,
  backbone);
- `preprocessor_config.json`, whose `auto_map` names both image-processor backends (torchvision and PIL);
- the package's code files (`configuration_*`, `modeling_*`, both `image_processing_*`), so that
  `trust_remote_code=True` loads the folder where `vision_bigbird_hf` is not installed;
- the `*_results.json` files of the run;
- `README.md`, the model card: `--model_card` (a card from `model_cards/`) with its results filled from this run's
  `all_results.json`, or, without `--model_card`, a card generated for this run from its config and metrics.

The script reloads the written folder and checks that it gives the run's logits before reporting success; upload
the folder with `huggingface-cli upload <user>/<repo> <output_dir>`.
"""

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import AutoImageProcessor, AutoModelForImageClassification, HfArgumentParser

import make_model_cards as cards
from model_cost import count_parameters
from transformers.utils import IMAGE_PROCESSOR_NAME

import vision_bigbird_hf  # noqa: F401  (registers Vision Big Bird with the Auto classes)
from vision_bigbird_hf import image_processing_pil_vision_bigbird, image_processing_vision_bigbird


RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "test_results.json")
# Both backends, in the dict form `AutoImageProcessor.from_pretrained(..., trust_remote_code=True, backend=...)` reads
# (`save_pretrained` of one processor names only its own class).
IMAGE_PROCESSOR_AUTO_MAP = {
    "torchvision": "image_processing_vision_bigbird.VisionBigBirdImageProcessor",
    "pil": "image_processing_pil_vision_bigbird.VisionBigBirdImageProcessorPil",
}


@dataclass
class ExportArguments:
    run_dir: str = field(metadata={"help": "Output folder of scripts/train_image_classification.py."})
    output_dir: str = field(metadata={"help": "Folder to write the Hub repository into (must be empty or new)."})
    model_card: str | None = field(
        default=None,
        metadata={"help": "A card from model_cards/ to use as README.md (its results are filled from this run)."},
    )
    model_name: str | None = field(
        default=None,
        metadata={"help": "Repository name used in a generated card (default: the output folder's name)."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Hub id of the training dataset, for a generated card's metadata."}
    )


def read_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "all_results.json"
    return json.loads(path.read_text()) if path.exists() else None


def generated_card(model, image_processor, metrics: dict | None, name: str, dataset: str | None, run_dir: Path) -> str:
    """A model card for a run without a hand-written card: Hub metadata, what the model is, how to load it, the
    run's measured metrics (only those present in its results files) and the citation."""
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
        "license": "apache-2.0",
        "tags": list(cards.COMMON_TAGS),
        "datasets": [dataset] if dataset else [],
    }
    accuracies = {
        split: metrics[f"{split}_accuracy"] for split in ("test", "eval") if metrics and f"{split}_accuracy" in metrics
    }
    if accuracies and dataset:  # the Hub's model-index names the dataset a metric was measured on
        split, accuracy = next(iter(accuracies.items()))
        metadata["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image Classification"},
                        "dataset": {
                            "type": dataset, "name": dataset, "split": "test" if split == "test" else "validation"
                        },
                        "metrics": [{"type": "accuracy", "value": round(accuracy, 4), "name": "Accuracy"}],
                    }
                ],
            }
        ]
    crop = image_processor.crop_size if image_processor.do_center_crop else image_processor.size
    labels = ", ".join(model.config.id2label[index] for index in sorted(model.config.id2label))
    results = [f"| {split} accuracy | {accuracy:.4f} |" for split, accuracy in accuracies.items()]
    lines = [
        f"# {name}",
        "",
        "A **Vision Big Bird** image classifier (Zhang & Gong, *Vision Big Bird: Random Sparsification for Full",
        "Attention*, [arXiv 2311.05988](https://arxiv.org/abs/2311.05988)): a four-stage hierarchical vision",
        "transformer whose heads are split into depthwise-conv heads, random-window (RS-Win) attention heads and",
        "average-pooled global attention heads, with no position embedding.",
        "",
        f"Parameters: {count_parameters(model):,}. Labels ({model.config.num_labels}): {labels}. Input: "
        f"{crop['height']}x{crop['width']} RGB after the image processor.",
        "",
        "## How to load it",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("image-classification", model="<user>/{name}", trust_remote_code=True)',
        "```",
        "",
        "(or `import vision_bigbird_hf` with the package installed, without `trust_remote_code`).",
        "",
        "## Training",
        "",
        f"Trained with `scripts/train_image_classification.py` of the vision-bigbird-hf repository (run folder "
        f"`{run_dir.name}`).",
        "",
        "## Results",
        "",
        *(["| metric | value |", "|---|---:|", *results] if results else ["No accuracy was measured in this run."]),
        "",
        "From the run's `all_results.json`.",
        "",
        "## Limitations",
        "",
        "Trained only on the data above; accuracy on other data has not been measured.",
        "",
        "## Citation",
        "",
        "```bibtex",
        "@article{zhang2023visionbigbird,",
        "  title   = {Vision Big Bird: Random Sparsification for Full Attention},",
        "  author  = {Zhang, Zhemin and Gong, Xun},",
        "  journal = {arXiv preprint arXiv:2311.05988},",
        "  year    = {2023}",
        "}",
        "```",
    ]
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + "\n".join(lines) + "\n"


# Architecture fields a card's generated sections describe; a run exported with that card must have the same.
ARCHITECTURE_FIELDS = (
    "hidden_sizes", "depths", "num_heads", "conv_heads", "rswin_heads", "global_heads", "rswin_window_size",
    "global_pool_size", "conv_kernel_size", "mlp_ratio", "use_absolute_embeddings", "num_labels",
)


def card_from_model_cards(card_path: Path, model, metrics: dict | None, run_dir: Path) -> str:
    """The Fashion-MNIST card from model_cards/ with its generated sections refreshed and its results filled from this
    run, after checking that the run trained the model the card describes."""
    card = card_path.parent.name
    if card != cards.FASHION_MNIST_CARD:
        raise ValueError(
            f"{card_path} describes an untrained preset; leave out --model_card to generate a card for this run"
        )
    expected = cards.fashion_mnist_config()
    different = [name for name in ARCHITECTURE_FIELDS if getattr(model.config, name) != getattr(expected, name)]
    if different:
        raise ValueError(
            f"{card_path} describes the demo model, but {run_dir} differs in {different}; leave out --model_card to "
            "generate a card for this run"
        )
    return cards.render_card(card, card_path.read_text(), metrics, str(run_dir / "all_results.json"))


def check_reload(model, output_dir: Path) -> float:
    """Largest logit difference between the run's model and the written folder, on a random batch."""
    reloaded = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    pixel_values = torch.randn(2, model.config.num_channels, 64, 64)
    with torch.no_grad():
        return (reloaded(pixel_values).logits - model.eval()(pixel_values).logits).abs().max().item()


def save_image_processor_for_hub(image_processor, output_dir: Path) -> None:
    """Save the image processor with the code files of both backends and an `auto_map` naming both."""
    image_processor.save_pretrained(output_dir)
    for module in (image_processing_vision_bigbird, image_processing_pil_vision_bigbird):
        shutil.copy(module.__file__, output_dir)
    path = output_dir / IMAGE_PROCESSOR_NAME
    processor_config = json.loads(path.read_text())
    processor_config["auto_map"] = {"AutoImageProcessor": dict(IMAGE_PROCESSOR_AUTO_MAP)}
    path.write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")


def export(args: ExportArguments) -> Path:
    run_dir, output_dir = Path(args.run_dir), Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty: give a new or empty --output_dir")
    model = AutoModelForImageClassification.from_pretrained(run_dir)
    image_processor = AutoImageProcessor.from_pretrained(run_dir)
    metrics = read_metrics(run_dir)
    if args.model_card:
        card = card_from_model_cards(Path(args.model_card), model, metrics, run_dir)
    else:
        name = args.model_name or output_dir.name
        card = generated_card(model, image_processor, metrics, name, args.dataset, run_dir)

    model.save_pretrained(output_dir)
    save_image_processor_for_hub(image_processor, output_dir)
    for name in RESULT_FILES:
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, output_dir / name)
    (output_dir / "README.md").write_text(card)

    difference = check_reload(model, output_dir)
    if difference > 1e-5:
        raise RuntimeError(f"{output_dir} reloads with logits differing by {difference:.2e} from {run_dir}")
    print(f"wrote {output_dir}: {', '.join(sorted(path.name for path in output_dir.iterdir()))}")
    print(f"reloaded with transformers: logits match the run's model (max |difference| {difference:.1e})")
    return output_dir


def main():
    (args,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses()
    export(args)


if __name__ == "__main__":
    main()
