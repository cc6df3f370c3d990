"""Helpers of the training-script tests (`tests/test_training_*.py`): a tiny model, image folders, running it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "train_image_classification.py"
# A few blocks with every head group present in every stage (one conv, one RS-Win, one global head)
TINY_CONFIG = {"hidden_sizes": [24, 48, 72, 96], "depths": [1, 1, 1, 1], "num_heads": [3, 3, 3, 3]}
TINY_MODEL_ARGS = ["--model_preset", "tiny", "--config_overrides", json.dumps(TINY_CONFIG), "--image_size", "32"]
SHAPE_CLASSES = ("circle", "square", "stripes")


def draw_shape(shape: str, rng: np.random.Generator, mode: str = "RGB") -> Image.Image:
    """A 40x36 image of one shape class on a noisy background, in the given PIL mode."""
    background = (rng.random((40, 36, 3)) * 80).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    color = tuple(int(value) for value in rng.integers(150, 256, size=3))
    left, top = int(rng.integers(2, 10)), int(rng.integers(2, 12))
    if shape == "circle":
        draw.ellipse([left, top, left + 22, top + 22], fill=color)
    elif shape == "square":
        draw.rectangle([left, top, left + 20, top + 20], fill=color)
    else:
        for row in range(0, 40, 6):
            draw.rectangle([0, row, 35, row + 2], fill=color)
    return image.convert(mode)


def make_image_folder(root: Path, images_per_class: int, seed: int) -> Path:
    """One sub-folder of PNGs per class."""
    rng = np.random.default_rng(seed)
    for shape in SHAPE_CLASSES:
        (root / shape).mkdir(parents=True)
        for index in range(images_per_class):
            draw_shape(shape, rng).save(root / shape / f"{index}.png")
    return root


def script_env(cache_dir: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}


def run_script(args: list[str], cache_dir: Path, launcher: list[str] | None = None, check: bool = True):
    """Run the script (with `launcher`, e.g. torchrun, in front), offline; (return code, output)."""
    command = (launcher or [sys.executable]) + [str(SCRIPT), *args]
    result = subprocess.run(
        command, check=False, env=script_env(cache_dir), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    return result.returncode, output


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))
