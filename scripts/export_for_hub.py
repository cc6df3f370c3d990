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
- `README.md`: the card given with `--model_card`, copied as it is (`scripts/make_model_cards.py --demo_dir RUN`
  writes the Fashion-MNIST card from a demo run), or, without it, a card made for this run with huggingface_hub's
  `ModelCard`/`ModelCardData`/`EvalResult` from its config and `all_results.json`.

The script reloads the written folder and checks that it gives the run's logits before reporting success; upload
the folder with `hf upload <user>/<repo> <output_dir>`.
"""

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import AutoImageProcessor, AutoModelForImageClassification, HfArgumentParser
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
CITATION = """```bibtex
@article{zhang2023visionbigbird,
  title   = {Vision Big Bird: Random Sparsification for Full Attention},
  author  = {Zhang, Zhemin and Gong, Xun},
  journal = {arXiv preprint arXiv:2311.05988},
  year    = {2023}
}
```"""


@dataclass
class ExportArguments:
    run_dir: str = field(metadata={"help": "Output folder of scripts/train_image_classification.py."})
    output_dir: str = field(metadata={"help": "Folder to write the Hub repository into (must be empty or new)."})
    model_card: str | None = field(default=None, metadata={"help": "A model card to copy as README.md."})
    model_name: str | None = field(
        default=None,
        metadata={"help": "Repository name used in a generated card (default: the output folder's name)."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Hub id of the training dataset, for a generated card's metadata."}
    )


def generated_card(model, image_processor, metrics: dict, name: str, dataset: str | None, run_dir: Path) -> ModelCard:
    """A card for a run without a hand-written one: Hub metadata (with the run's accuracy as `model-index` when the
    dataset is named), what the model is, how to load it, the measured metrics and the citation."""
    accuracies = {split: metrics[f"{split}_accuracy"] for split in ("test", "eval") if f"{split}_accuracy" in metrics}
    eval_results = [
        EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=dataset,
                   dataset_split="test" if split == "test" else "validation", metric_type="accuracy",
                   metric_value=round(accuracy, 4))
        for split, accuracy in accuracies.items()
    ] if dataset else None
    data = ModelCardData(
        library_name="transformers", pipeline_tag="image-classification", license="apache-2.0",
        tags=["image-classification", "vision", "vision_bigbird"], datasets=[dataset] if dataset else None,
        model_name=name, eval_results=eval_results,
    )
    crop = image_processor.crop_size if image_processor.do_center_crop else image_processor.size
    labels = ", ".join(model.config.id2label[index] for index in sorted(model.config.id2label))
    results = [f"| {split} accuracy | {accuracy:.4f} |" for split, accuracy in accuracies.items()]
    body = "\n".join([
        f"# {name}",
        "",
        "A **Vision Big Bird** image classifier (Zhang & Gong, *Vision Big Bird: Random Sparsification for Full",
        "Attention*, [arXiv 2311.05988](https://arxiv.org/abs/2311.05988)): a hierarchical vision transformer whose",
        "heads are split into depthwise-conv heads, random-window (RS-Win) attention heads and average-pooled global",
        "attention heads, with no position embedding.",
        "",
        f"Parameters: {model.num_parameters():,}. Labels ({model.config.num_labels}): {labels}. Input: "
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
        *(["| metric | value |", "|---|---:|", *results, "", "From the run's `all_results.json`."]
          if results else ["No accuracy was measured in this run."]),
        "",
        "## Limitations",
        "",
        "Trained only on the data above; accuracy on other data has not been measured.",
        "",
        "## Citation",
        "",
        CITATION,
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


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
    if args.model_card and not Path(args.model_card).is_file():
        raise FileNotFoundError(f"--model_card {args.model_card}: no such file")
    model = AutoModelForImageClassification.from_pretrained(run_dir)
    image_processor = AutoImageProcessor.from_pretrained(run_dir)
    metrics_path = run_dir / "all_results.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    card = None if args.model_card else generated_card(
        model, image_processor, metrics, args.model_name or output_dir.name, args.dataset, run_dir
    )

    model.save_pretrained(output_dir)
    save_image_processor_for_hub(image_processor, output_dir)
    for name in RESULT_FILES:
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, output_dir / name)
    if card is None:
        shutil.copy(args.model_card, output_dir / "README.md")
    else:
        card.save(output_dir / "README.md")

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
