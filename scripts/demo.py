"""The README's main job: train a small Vision Big Bird from scratch on the real Fashion-MNIST (a few minutes on a
CPU), report its test accuracy, save it, classify held-out test images with `pipeline("image-classification")` and
draw them with predicted and true labels in `held_out_predictions.png`.

The training is one printed command of `scripts/train_image_classification.py`. `demo_results.json` (accuracies,
minutes, that command, the pipeline check, the date) is what `scripts/make_model_cards.py --demo_dir` reads.

    python scripts/demo.py --num_train_epochs 1 --max_train_samples 2000   # a quick look; run_demo.sh: no flags
"""

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from fashion_mnist import load_fashion_mnist

TRAINING_SCRIPT = Path(__file__).resolve().parent / "train_image_classification.py"
# The demo model: the "demo" preset of vision_bigbird_hf (all three head groups in every stage, sized for 32x32 inputs
# and a 2-core CPU; docs/presets.md).
PRESET = "demo"


def training_flags(args) -> list[str]:
    """The training script's flags: the demo preset at 32x32, a light crop and a flip. No `--recipe imagenet`: its
    RandAugment, Mixup/CutMix and random erasing suit a 300-epoch ImageNet schedule, and only slow down and cost CPU
    time in 4 epochs of a 1.6M-parameter model on 28x28 images."""
    flags = ["--model_preset", PRESET]
    flags += shlex.split(f"""
        --image_size 32 --min_crop_scale 0.85 --output_dir {shlex.quote(args.output_dir)} --overwrite_output_dir
        --do_train --do_eval --do_predict --num_train_epochs {args.num_train_epochs}
        --per_device_train_batch_size {args.batch_size} --per_device_eval_batch_size 256
        --learning_rate {args.learning_rate} --weight_decay 0.05 --lr_scheduler_type cosine --warmup_steps 0.05
        --eval_strategy epoch --save_strategy no --logging_steps 50 --report_to none --seed {args.seed}
        --disable_tqdm false
    """)
    if args.max_train_samples:
        flags += ["--max_train_samples", str(args.max_train_samples)]
    return flags


def classify_held_out_images(output_dir: Path, num_examples: int, seed: int) -> list[dict]:
    """Write `num_examples` random test-split images as PNG files and classify the files with the pipeline."""
    from transformers import pipeline

    import vision_bigbird_hf  # noqa: F401  (registers the model with the Auto classes)

    test = load_fashion_mnist()["test"]
    names = test.features["label"].names
    sample_dir = output_dir / "held_out_examples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in np.random.default_rng(seed).choice(len(test), size=num_examples, replace=False):
        example = test[int(index)]
        rows.append({"file": str(sample_dir / f"test_{int(index):05d}.png"), "truth": names[example["label"]]})
        example["image"].save(rows[-1]["file"])
    classifier = pipeline("image-classification", model=str(output_dir), device="cpu")
    for row, prediction in zip(rows, classifier([row["file"] for row in rows], top_k=1, batch_size=8)):
        row.update(prediction=prediction[0]["label"], score=prediction[0]["score"])
    return rows


def write_grid(rows: list[dict], path: Path, columns: int = 4) -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    grid_rows = -(-len(rows) // columns)
    figure = Figure(figsize=(2.6 * columns, 2.9 * grid_rows))
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, row in zip(axes.flat, rows):
        axis.imshow(Image.open(row["file"]), cmap="gray")
        title = f"pred: {row['prediction']} ({row['score']:.2f})\ntrue: {row['truth']}"
        axis.set_title(title, fontsize=8, color="darkgreen" if row["prediction"] == row["truth"] else "firebrick")
    figure.suptitle("Vision Big Bird on held-out Fashion-MNIST test images (green: correct, red: wrong)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/demo-fashion-mnist")
    parser.add_argument("--num_train_epochs", type=float, default=4)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_examples", type=int, default=16, help="held-out test images to classify")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    output_dir = Path(args.output_dir)
    flags = training_flags(args)
    print("Training command:\n  python scripts/train_image_classification.py " + shlex.join(flags), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(TRAINING_SCRIPT), *flags], check=True)
    train_minutes = (time.perf_counter() - start) / 60

    results = json.loads((output_dir / "all_results.json").read_text())
    rows = classify_held_out_images(output_dir, args.num_examples, args.seed)
    write_grid(rows, output_dir / "held_out_predictions.png")
    hits = sum(row["prediction"] == row["truth"] for row in rows)
    demo_results = {
        "test_accuracy": results["test_accuracy"],
        "eval_accuracy": results["eval_accuracy"],
        "train_minutes": round(train_minutes, 2),
        "training_command": ["scripts/train_image_classification.py", *flags],
        "pipeline_correct": hits,
        "pipeline_total": len(rows),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (output_dir / "demo_results.json").write_text(json.dumps(demo_results, indent=2) + "\n")

    print("\nHeld-out test images through pipeline('image-classification'):")
    print(f"  {'file':<24} {'truth':<12} {'prediction':<12} score")
    for row in rows:
        mark = "ok" if row["prediction"] == row["truth"] else "WRONG"
        print(f"  {Path(row['file']).name:<24} {row['truth']:<12} {row['prediction']:<12} {row['score']:.3f} {mark}")
    print(f"\nFashion-MNIST test accuracy (10,000 official test images): {results['test_accuracy']:.4f}")
    print(f"Validation accuracy: {results['eval_accuracy']:.4f}   pipeline examples right: {hits}/{len(rows)}")
    print(f"Training + evaluation wall time: {train_minutes:.1f} min on the CPU")
    print(f"Saved in {output_dir}/: model, image processor, held_out_predictions.png, demo_results.json")


if __name__ == "__main__":
    main()
