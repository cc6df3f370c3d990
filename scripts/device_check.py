"""The Python half of scripts/device_check.sh (one job per subcommand; the shell script runs each under `timeout`).

    python scripts/device_check.py install --wheels .device_wheels --target .device_site
    python scripts/device_check.py correctness --device cuda --output correctness.json
    python scripts/device_check.py train --device cuda --data .device_wheels/fashion-mnist --output training.json

`install` puts into --target only the carried wheels this machine needs: starting from the carried transformers,
every requirement the installed packages do not satisfy is taken from a carried wheel (`pip install --no-deps
--no-index --target`, or unzipping the wheel where pip is missing); nothing outside --target changes.
`correctness`: CUDA fp32 logits (classifier) and feature maps (backbone) equal CPU ones within 1e-4 at three input
sizes, eager equals sdpa, bf16 and fp16 autocast forward + backward are finite, eval is deterministic, gradient
checkpointing gives the same gradients. `train`: a fixed wall-clock budget of training per model on Fashion-MNIST
upscaled to 128x128 (Vision Big Bird, its no-RS-Win and grid-window ablations, Swin, PVTv2; one seed), then the
accuracy on the official test images. Both print one JSON line per check and write all of them to --output.
"""

import argparse
import copy
import gzip
import importlib.metadata
import json
import math
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version


# ---- install ---------------------------------------------------------------


def wheel_metadata(path: Path) -> tuple[str, Version, list[Requirement]]:
    """(normalised name, version, unconditional requirements) read from a wheel's METADATA."""
    with zipfile.ZipFile(path) as wheel:
        name = next(item for item in wheel.namelist() if item.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(name).decode())
    requirements = [Requirement(text) for text in metadata.get_all("Requires-Dist") or []]
    requirements = [item for item in requirements if item.marker is None or item.marker.evaluate({"extra": ""})]
    return metadata["Name"].lower().replace("_", "-"), Version(metadata["Version"]), requirements


def installed_version(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def install(wheels: Path, target: Path, force: bool) -> dict:
    carried = {}
    for path in sorted(wheels.glob("*.whl")):
        name, version, requirements = wheel_metadata(path)
        carried[name] = (path, version, requirements)
    if "transformers" not in carried:
        return {"check": "install", "ok": False, "detail": f"no transformers wheel in {wheels}"}
    chosen, missing, queue = {}, [], [Requirement(f"transformers=={carried['transformers'][1]}")]
    while queue:
        requirement = queue.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in chosen:
            continue
        have = installed_version(name)
        if have is not None and requirement.specifier.contains(have, prereleases=True) and not force:
            continue
        if name in carried and requirement.specifier.contains(carried[name][1], prereleases=True):
            chosen[name] = carried[name][0]
            queue += carried[name][2]
        elif have is None or not requirement.specifier.contains(have, prereleases=True):
            missing.append(f"{requirement} (installed: {have})")
    target.mkdir(parents=True, exist_ok=True)
    paths = [str(path) for path in chosen.values()]
    if paths:
        pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), *paths]
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            subprocess.run(pip + ["--quiet", "--disable-pip-version-check"], check=True)
        else:
            for path in paths:                         # a wheel is a zip of site-packages entries
                zipfile.ZipFile(path).extractall(target)
    return {"check": "install", "ok": not missing, "installed": [Path(path).name for path in paths],
            "unsatisfied_without_a_carried_wheel": missing}


# ---- correctness -----------------------------------------------------------


OUTPUT = []  # the --output path, rewritten after every check, so a stage stopped by its timeout keeps its results


def report(results: list, check: str, ok: bool, **details) -> None:
    results.append({"check": check, "ok": bool(ok), **details})
    print(json.dumps(results[-1]), flush=True)
    for path in OUTPUT:
        path.write_text(json.dumps(results, indent=1) + "\n")


def guarded(results: list, check: str, function, *args) -> None:
    """Run one group of checks; an exception becomes a failed check with its message, and the next group runs."""
    try:
        function(results, *args)
    except Exception as error:  # noqa: BLE001 - on a machine we cannot debug, every later check still runs
        report(results, check, False, error=f"{type(error).__name__}: {error}"[:2000])


def correctness(device: str, quick: bool) -> list:
    import torch

    from vision_bigbird_hf import VisionBigBirdBackbone, VisionBigBirdConfig, VisionBigBirdForImageClassification

    # fp32 must mean fp32 on both sides of the comparison: no TF32 in matmuls or convolutions. The fp32_precision
    # API (torch >= 2.9) only; torch refuses a mix of it and the legacy allow_tf32 flags.
    try:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    except (AttributeError, RuntimeError):           # a torch before 2.9 has the legacy flags only
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    stages = {"num_labels": 10, "out_indices": [1, 2, 3, 4]}  # the backbone returns every stage's map
    config = VisionBigBirdConfig.from_preset("tiny", **stages)
    sizes = [(224, 224), (97, 161), (320, 256)]
    if quick:
        config = VisionBigBirdConfig(hidden_sizes=[24, 48, 72, 96], depths=[1, 1, 2, 1], num_heads=[3, 3, 3, 3],
                                     **stages)
        sizes = [(64, 64), (41, 57), (96, 80)]
    torch.manual_seed(0)
    pixel_values = torch.randn(4, 3, *sizes[0], device=device)
    labels = torch.tensor([0, 1, 2, 3], device=device)

    def device_matches_cpu(results, model_class):
        torch.manual_seed(0)
        cpu_model = model_class(config).eval()
        model = model_class(config).to(device).eval()
        model.load_state_dict(cpu_model.state_dict())
        for (height, width), channels_last in [(size, False) for size in sizes] + [(sizes[0], True)]:
            images = torch.randn(2, 3, height, width)
            if channels_last:
                model.to(memory_format=torch.channels_last)
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                expected, got = cpu_model(images), model(images.to(device))
            pairs = ([(expected.logits, got.logits)] if hasattr(expected, "logits")
                     else list(zip(expected.feature_maps, got.feature_maps, strict=True)))
            difference = max((want - have.cpu()).abs().max().item() for want, have in pairs)
            layout = ", model and input channels-last" if channels_last else ""
            report(results, f"{model_class.__name__} fp32 {device} vs cpu, {height}x{width}{layout}",
                   difference <= 1e-4, max_abs_diff=difference, outputs=len(pairs))

    def eval_checks(results):
        torch.manual_seed(0)
        model = VisionBigBirdForImageClassification(config).to(device).eval()
        with torch.no_grad():
            first, second = model(pixel_values).logits, model(pixel_values).logits
            model.set_attn_implementation("eager")
            eager = model(pixel_values).logits
        report(results, "eval forward deterministic", torch.equal(first, second),
               max_abs_diff=(first - second).abs().max().item())
        report(results, "eager equals sdpa (fp32)", (eager - first).abs().max().item() <= 1e-4,
               max_abs_diff=(eager - first).abs().max().item())

    def low_precision(results, dtype):
        torch.manual_seed(0)
        model = VisionBigBirdForImageClassification(config).to(device).train()
        with torch.autocast(device, dtype=dtype):
            loss = model(pixel_values, labels=labels).loss
        loss.backward()
        finite = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
        report(results, f"{str(dtype).removeprefix('torch.')} autocast forward + backward finite",
               math.isfinite(loss.item()) and finite, loss=loss.item())

    def checkpointing(results):
        gradients = []
        dropout_config = copy.deepcopy(config)
        dropout_config.update({"drop_path_rate": 0.2, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})
        for enabled in (False, True):
            torch.manual_seed(0)
            model = VisionBigBirdForImageClassification(dropout_config).to(device).train()
            if enabled:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            torch.manual_seed(7)                      # the same RS-Win permutations and dropout masks
            model(pixel_values, labels=labels).loss.backward()
            gradients.append({name: p.grad for name, p in model.named_parameters()})
        difference = max((gradients[0][name] - gradients[1][name]).abs().max().item() for name in gradients[0])
        scale = max(gradient.abs().max().item() for gradient in gradients[0].values())
        # CUDA's index backward accumulates with atomics, so equal means equal up to float rounding
        report(results, "gradient checkpointing gives the same gradients", difference <= 1e-5 * max(scale, 1.0),
               max_abs_diff=difference, largest_gradient=scale)

    results = []
    for model_class in (VisionBigBirdForImageClassification, VisionBigBirdBackbone):
        guarded(results, f"{model_class.__name__} {device} vs cpu", device_matches_cpu, model_class)
    guarded(results, "eval checks", eval_checks)
    for dtype in (torch.bfloat16, torch.float16):
        guarded(results, f"{dtype} autocast", low_precision, dtype)
    guarded(results, "gradient checkpointing", checkpointing)
    return results


# ---- train -----------------------------------------------------------------


def read_idx(path: Path):
    import numpy as np

    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * index: 8 + 4 * index], "big") for index in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def study_models(num_labels: int) -> dict:
    """The small study models (about 1-2M parameters) at 128x128: Vision Big Bird with RS-Win window 7, so its
    stage maps (32, 16, 8, 4 tokens a side) hold 1024, 256, 64, 16 tokens and random windows differ from grid
    windows in the first three stages; its no-RS-Win ablation (RS-Win heads given to conv/global) and grid-window
    ablation; Swin (window 4) and PVTv2 of similar width and depth."""
    from transformers import PvtV2Config, PvtV2ForImageClassification, SwinConfig, SwinForImageClassification

    from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification

    vbb = {"hidden_sizes": [30, 60, 120, 240], "depths": [1, 1, 2, 1], "num_heads": [3, 3, 6, 6],
           "drop_path_rate": 0.05, "num_labels": num_labels}
    return {
        "vbb": lambda: VisionBigBirdForImageClassification(VisionBigBirdConfig(**vbb)),
        "vbb-no-rswin": lambda: VisionBigBirdForImageClassification(VisionBigBirdConfig(
            **vbb, conv_heads=[2, 2, 3, 3], rswin_heads=[0, 0, 0, 0], global_heads=[1, 1, 3, 3])),
        "vbb-grid": lambda: VisionBigBirdForImageClassification(VisionBigBirdConfig(**vbb, rswin_sampling="grid")),
        "swin": lambda: SwinForImageClassification(SwinConfig(
            image_size=128, patch_size=4, embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=4,
            drop_path_rate=0.05, num_labels=num_labels)),
        "pvtv2": lambda: PvtV2ForImageClassification(PvtV2Config(
            image_size=128, hidden_sizes=[26, 52, 130, 208], depths=[1, 1, 2, 1], num_attention_heads=[1, 2, 5, 8],
            sr_ratios=[4, 2, 1, 1], mlp_ratios=[8, 8, 4, 4], drop_path_rate=0.05, num_labels=num_labels)),
    }


def train(device: str, data: Path, seconds: float, batch_size: int, image_size: int, test_images: int) -> list:
    import torch
    import torch.nn.functional as F

    def pixels(images):                                  # uint8 (B, 28, 28) -> normalised (B, 3, S, S) float
        images = images.to(device, torch.float32).div(255).sub(0.5).div(0.5).unsqueeze(1)
        return F.interpolate(images, size=(image_size, image_size), mode="bilinear").expand(-1, 3, -1, -1)

    train_x, train_y = (torch.from_numpy(read_idx(data / f"train-{kind}-idx{dims}-ubyte.gz").copy())
                        for kind, dims in (("images", 3), ("labels", 1)))
    test_x, test_y = (torch.from_numpy(read_idx(data / f"t10k-{kind}-idx{dims}-ubyte.gz").copy())[:test_images]
                      for kind, dims in (("images", 3), ("labels", 1)))
    train_x, train_y = train_x.to(device), train_y.to(device, torch.int64)

    def train_one(results, name, builder):
        torch.manual_seed(0)
        model = builder().to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
        generator = torch.Generator(device=device).manual_seed(0)
        steps, start, losses = 0, time.perf_counter(), []
        while time.perf_counter() - start < seconds:
            index = torch.randint(0, train_x.shape[0], (batch_size,), device=device, generator=generator)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(pixels(train_x[index]), labels=train_y[index]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if steps % 20 == 0:
                losses.append(loss.item())               # a sync only every 20 steps
        if device == "cuda":
            torch.cuda.synchronize()                     # the queued steps belong to the budget's measurement
        elapsed = time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            for begin in range(0, test_x.shape[0], 500):
                logits = model(pixels(test_x[begin:begin + 500])).logits
                correct += (logits.argmax(-1).cpu() == test_y[begin:begin + 500].long()).sum().item()
        report(results, f"train {name}", math.isfinite(loss.item()), model=name,
               params=sum(p.numel() for p in model.parameters()), steps=steps, batch_size=batch_size,
               image_size=image_size, train_seconds=elapsed, images_per_s=steps * batch_size / elapsed,
               last_loss=loss.item(), loss_every_20_steps=losses, test_images=test_x.shape[0],
               test_accuracy=correct / test_x.shape[0])

    results = []
    for name, builder in study_models(10).items():
        guarded(results, f"train {name}", train_one, name, builder)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=["install", "correctness", "train"])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="Small model, sizes and budgets (a CPU smoke run).")
    parser.add_argument("--wheels", type=Path, default=Path(".device_wheels"))
    parser.add_argument("--target", type=Path, default=Path(".device_site"))
    parser.add_argument("--force", action="store_true", help="install: every carried wheel, needed or not.")
    parser.add_argument("--data", type=Path, default=Path(".device_wheels/fashion-mnist"))
    parser.add_argument("--seconds", type=float, default=25.0, help="train: wall-clock budget per model.")
    parser.add_argument("--output", type=Path, help="Write the checks as JSON here.")
    args = parser.parse_args()
    OUTPUT.extend([args.output] if args.output else [])
    if args.job == "install":
        results = []
        report(results, **install(args.wheels, args.target, args.force))
    elif args.job == "correctness":
        results = correctness(args.device, args.quick)
    else:
        missing = [name for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
                   if not (args.data / name).is_file()]
        if missing:
            raise SystemExit(f"--data {args.data}: no {', '.join(missing)} (the Fashion-MNIST IDX files)")
        results = train(args.device, args.data, args.seconds, *((8, 128, 256) if args.quick else (128, 128, 10000)))
    if not all(result["ok"] for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
