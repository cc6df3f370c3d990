"""Turn a training output folder into a complete Hugging Face Hub repository folder.

The folder gets what `save_pretrained` writes for the model and its image processor (weights, `config.json` and
`preprocessor_config.json` with their `auto_map`, and the code files, so that `trust_remote_code=True` loads the folder
without `vision_bigbird_hf`); the run's `*_results.json`; and `README.md`: `--model_card` copied as it is, or a card
made from `model_cards/templates/run.md`. The folder is reloaded and must give the run's logits. Upload it with
`hf upload <user>/<repo> <output_dir>`.

    python scripts/export_for_hub.py --run_dir runs/demo-fashion-mnist --output_dir hub/vision-bigbird-fashion-mnist \
        --model_card model_cards/vision-bigbird-fashion-mnist/README.md
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import AutoImageProcessor, AutoModelForImageClassification

import vision_bigbird_hf  # noqa: F401  (registers Vision Big Bird with the Auto classes and for remote code)

CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "templates" / "run.md"
RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "test_results.json")


def generated_card(model, image_processor, run_dir: Path, name: str, dataset: str | None) -> ModelCard:
    """A card from `model_cards/templates/run.md`; the run's accuracies become `model-index` when `dataset` is named."""
    metrics_file = run_dir / "all_results.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    accuracies = {split: metrics[f"{split}_accuracy"] for split in ("test", "eval") if f"{split}_accuracy" in metrics}
    eval_results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="test" if split == "test" else "validation",
            metric_type="accuracy",
            metric_value=round(accuracy, 4),
        )
        for split, accuracy in accuracies.items()
    ]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=["image-classification", "vision", "vision_bigbird"],
        datasets=[dataset] if dataset else None,
        model_name=name,
        eval_results=eval_results if dataset else None,
    )
    id2label = model.config.id2label
    return ModelCard.from_template(
        data,
        str(CARD_TEMPLATE),
        model_name=name,
        parameters=model.num_parameters(),
        labels=[id2label[index] for index in sorted(id2label)],
        crop=image_processor.crop_size if image_processor.do_center_crop else image_processor.size,
        run_name=run_dir.name,
        accuracies=accuracies,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", type=Path, required=True, help="output folder of train_image_classification.py")
    parser.add_argument("--output_dir", type=Path, required=True, help="the Hub folder to write (new or empty)")
    parser.add_argument("--model_card", help="a model card to copy as README.md")
    parser.add_argument("--model_name", help="repository name in a generated card (default: the output folder's)")
    parser.add_argument("--dataset", help="Hub id of the training dataset, for a generated card's metadata")
    args = parser.parse_args()
    run_dir, output_dir = args.run_dir, args.output_dir
    if not run_dir.is_dir():  # else transformers reads the path as a Hub repository id and blames the Hub
        raise FileNotFoundError(f"--run_dir {run_dir}: no such folder (give the --output_dir of a training run)")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty: give a new or empty --output_dir")
    if args.model_card and not Path(args.model_card).is_file():
        raise FileNotFoundError(f"--model_card {args.model_card}: no such file")
    model = AutoModelForImageClassification.from_pretrained(run_dir).eval()
    image_processor = AutoImageProcessor.from_pretrained(run_dir)

    model.save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    for name in RESULT_FILES:
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, output_dir / name)
    if args.model_card:
        shutil.copy(args.model_card, output_dir / "README.md")
    else:
        card = generated_card(model, image_processor, run_dir, args.model_name or output_dir.name, args.dataset)
        card.save(output_dir / "README.md")

    reloaded = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    pixel_values = torch.randn(2, model.config.num_channels, 64, 64)
    with torch.no_grad():
        difference = (reloaded(pixel_values).logits - model(pixel_values).logits).abs().max().item()
    if difference > 1e-5:
        raise RuntimeError(f"{output_dir} reloads with logits differing by {difference:.2e} from {run_dir}")
    print(f"wrote {output_dir}: {', '.join(sorted(path.name for path in output_dir.iterdir()))}")
    print(f"reloaded with transformers: logits match the run's model (max |difference| {difference:.1e})")


if __name__ == "__main__":
    main()
