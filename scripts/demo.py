"""The README's main job: train a small Vision Big Bird from scratch on the real Fashion-MNIST (CPU, about ten
minutes), report its test accuracy, save it, classify held-out test images through `pipeline("image-classification")`
and write a PNG grid of them with predicted and true labels.

    python scripts/demo.py                      # what `bash scripts/run_demo.sh` runs
    python scripts/demo.py --num_train_epochs 1 --max_train_samples 2000   # a quick look

The training is one run of the public training script, `scripts/train_image_classification.py`, as a command: it
is printed first, so it can be rerun by hand. Besides the script's `all_results.json`, the output folder gets
`demo_results.json` (test and validation accuracy, training minutes, the script's exact argv, the pipeline check,
the date), which `scripts/make_model_cards.py` reads.

The demo trains without `--recipe imagenet`: that recipe (RandAugment, Mixup/CutMix, random erasing, 20-of-300
warmup epochs) regularizes a Swin-sized model through a 300-epoch ImageNet schedule; this is a 0.5M-parameter model
trained for 4 epochs on 28x28 images, where the same regularization slows convergence and costs CPU time. A light
crop (scale 0.85 to 1) and a flip are the whole augmentation.
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

# The demo model: Vision Big Bird with all three head groups in every stage, sized for 32x32 inputs and a 2-core CPU.
DEMO_CONFIG = {
    "hidden_sizes": [32, 64, 128, 256],
    "depths": [1, 1, 2, 1],
    "num_heads": [2, 2, 4, 8],
    "conv_heads": [1, 1, 1, 2],
    "rswin_heads": [1, 1, 2, 3],
    "global_heads": [0, 0, 1, 3],
    "rswin_window_size": 4,
    "global_pool_size": [4, 4, 2, 1],
    "drop_path_rate": 0.05,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/demo-fashion-mnist")
    parser.add_argument("--num_train_epochs", type=float, default=4)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_examples", type=int, default=16, help="held-out test images to classify with pipeline")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def training_flags(args) -> list[str]:
    """The flags of the training script's run."""
    command = [
        "--model_preset", "tiny",
        "--config_overrides", json.dumps(DEMO_CONFIG, separators=(",", ":")),
        "--image_size", "32",
        "--min_crop_scale", "0.85",
        "--output_dir", args.output_dir,
        "--overwrite_output_dir",
        "--do_train", "--do_eval", "--do_predict",
        "--num_train_epochs", str(args.num_train_epochs),
        "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "256",
        "--learning_rate", str(args.learning_rate),
        "--weight_decay", "0.05",
        "--lr_scheduler_type", "cosine",
        "--warmup_steps", "0.05",
        "--eval_strategy", "epoch",
        "--save_strategy", "no",
        "--logging_steps", "50",
        "--report_to", "none",
        "--seed", str(args.seed),
        "--disable_tqdm", "false",
    ]
    if args.max_train_samples:
        command += ["--max_train_samples", str(args.max_train_samples)]
    return command


def classify_held_out_images(output_dir: Path, num_examples: int, seed: int) -> list[dict]:
    """Write `num_examples` random test-split images as PNG files and classify the files with the pipeline."""
    from transformers import pipeline

    import vision_bigbird_hf  # noqa: F401  (registers the model with the Auto classes)

    test = load_fashion_mnist()["test"]
    names = test.features["label"].names
    picks = np.random.default_rng(seed).choice(len(test), size=num_examples, replace=False)
    sample_dir = output_dir / "held_out_examples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    paths, truths = [], []
    for index in picks:
        example = test[int(index)]
        path = sample_dir / f"test_{int(index):05d}.png"
        example["image"].save(path)
        paths.append(str(path))
        truths.append(names[example["label"]])

    classifier = pipeline("image-classification", model=str(output_dir), device="cpu")
    predictions = classifier(paths, top_k=1, batch_size=8)
    return [
        {"file": path, "truth": truth, "prediction": prediction[0]["label"], "score": prediction[0]["score"]}
        for path, truth, prediction in zip(paths, truths, predictions)
    ]


def write_grid(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    columns = 4
    grid_rows = -(-len(rows) // columns)
    figure, axes = plt.subplots(grid_rows, columns, figsize=(2.6 * columns, 2.9 * grid_rows))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, row in zip(np.ravel(axes), rows):
        axis.imshow(Image.open(row["file"]), cmap="gray")
        correct = row["prediction"] == row["truth"]
        axis.set_title(
            f"pred: {row['prediction']} ({row['score']:.2f})\ntrue: {row['truth']}",
            fontsize=8, color="darkgreen" if correct else "firebrick",
        )
    figure.suptitle("Vision Big Bird on held-out Fashion-MNIST test images (green: correct, red: wrong)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    args = parse_args()
    output_dir = Path(args.output_dir)
    flags = training_flags(args)
    print("Training command:\n  python scripts/train_image_classification.py " + shlex.join(flags), flush=True)

    start = time.perf_counter()
    subprocess.run([sys.executable, str(TRAINING_SCRIPT), *flags], check=True)
    train_minutes = (time.perf_counter() - start) / 60

    results = json.loads((output_dir / "all_results.json").read_text())
    rows = classify_held_out_images(output_dir, args.num_examples, args.seed)
    grid_path = output_dir / "held_out_predictions.png"
    write_grid(rows, grid_path)
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
    print(
        f"\nFashion-MNIST test accuracy (10,000 official test images): {results['test_accuracy']:.4f}"
        f"\nValidation accuracy: {results['eval_accuracy']:.4f}   pipeline examples right: {hits}/{len(rows)}"
        f"\nTraining + evaluation wall time: {train_minutes:.1f} min on the CPU"
        f"\nModel and image processor saved in {output_dir}/ ; prediction grid: {grid_path} ; "
        f"summary: {output_dir / 'demo_results.json'}"
    )


if __name__ == "__main__":
    main()
