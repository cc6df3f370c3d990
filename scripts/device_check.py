"""The Python jobs of scripts/device_check.sh (docs/benchmarks.md, "The GPU check"): `install` (the carried wheels the
machine needs), `correctness` (CUDA vs CPU, attention, autocast, determinism, gradient checkpointing) and `train` (a
wall-clock budget per study model on Fashion-MNIST); each check is printed as a JSON line, all of them go to --output:

    python scripts/device_check.py correctness --device cuda --output correctness.json
"""

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from fashion_mnist import read_split  # numpy only: the GPU machine has no `datasets`

CHECKS, OUTPUT = [], []  # OUTPUT: --output, rewritten after each check (a stage its timeout stops keeps them)


def report(check: str, ok: bool, **details) -> None:
    CHECKS.append({"check": check, "ok": bool(ok), **details})
    print(json.dumps(CHECKS[-1]), flush=True)
    for path in OUTPUT:
        path.write_text(json.dumps(CHECKS, indent=1) + "\n")


def guarded(check: str, function, *args) -> None:
    """Run one group of checks; an exception becomes a failed check with its message, and the next group runs."""
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - on a machine we cannot debug, every later check still runs
        report(check, False, error=f"{type(error).__name__}: {error}"[:2000])


def install(wheels: Path, target: Path, force: bool) -> None:
    """Into `target` alone: the carried wheels pip picks for the carried transformers (`force`: all of them)."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index"]
    chosen = sorted(wheels.glob("*.whl"))
    if not force:  # a dry run against the installed packages: its JSON report lists what it would install
        dry_run = [*pip, "--dry-run", "--find-links", str(wheels), "--report", "-"]
        dry_run += [str(path) for path in wheels.glob("transformers-*.whl")]
        result = subprocess.run(dry_run, stdout=subprocess.PIPE, text=True, check=False)
        if result.returncode:
            raise SystemExit(f"install: pip cannot install the transformers of {wheels} beside the machine's packages")
        chosen = [Path(urlparse(item["download_info"]["url"]).path) for item in json.loads(result.stdout)["install"]]
    if chosen:
        subprocess.run([*pip, "--no-deps", "--upgrade", "--target", str(target), *map(str, chosen)], check=True)
    report("install", True, installed=[path.name for path in chosen])


def correctness(device: str, quick: bool) -> None:
    from vision_bigbird_hf import VisionBigBirdBackbone, VisionBigBirdConfig, VisionBigBirdForImageClassification

    try:  # fp32 means fp32 on both sides: no TF32 (torch >= 2.9: fp32_precision, and no mix with the legacy flags)
        torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = "ieee"
    except (AttributeError, RuntimeError):  # a torch before 2.9 has the legacy flags only
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    stages = {"num_labels": 10, "out_indices": [1, 2, 3, 4]}  # the backbone returns every stage's map
    config, sizes = VisionBigBirdConfig.from_preset("tiny", **stages), [(224, 224), (97, 161), (320, 256)]
    if quick:
        config = VisionBigBirdConfig(hidden_sizes=[24, 48, 72, 96], depths=[1, 1, 2, 1], num_heads=[3] * 4, **stages)
        sizes = [(64, 64), (41, 57), (96, 80)]
    torch.manual_seed(0)
    pixel_values, labels = torch.randn(4, 3, *sizes[0], device=device), torch.tensor([0, 1, 2, 3], device=device)

    def classifier(train: bool, **overrides):  # seeded: the same weights every time
        torch.manual_seed(0)
        model = VisionBigBirdForImageClassification(VisionBigBirdConfig.from_dict({**config.to_dict(), **overrides}))
        return model.to(device).train(train)

    def matches_cpu(model_class):  # fp32 logits (classifier) or every feature map (backbone), within 1e-4
        torch.manual_seed(0)
        cpu_model = model_class(config).eval()
        model = copy.deepcopy(cpu_model).to(device)
        for (height, width), channels_last in [(size, False) for size in sizes] + [(sizes[0], True)]:
            images = torch.randn(2, 3, height, width)
            if channels_last:
                model.to(memory_format=torch.channels_last)
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                expected, got = cpu_model(images), model(images.to(device))
            want, have = ([out.logits] if "logits" in out else out.feature_maps for out in (expected, got))
            difference = max((a - b.cpu()).abs().max().item() for a, b in zip(want, have, strict=True))
            name = f"{model_class.__name__} fp32 {device} vs cpu, {height}x{width}"
            name += ", model and input channels-last" if channels_last else ""
            report(name, difference <= 1e-4, max_abs_diff=difference, outputs=len(want))

    def eval_checks():
        model = classifier(train=False)
        with torch.no_grad():
            first, second = model(pixel_values).logits, model(pixel_values).logits
            model.set_attn_implementation("eager")
            eager = model(pixel_values).logits
        repeat_gap, eager_gap = (first - second).abs().max().item(), (eager - first).abs().max().item()
        report("eval forward deterministic", torch.equal(first, second), max_abs_diff=repeat_gap)
        report("eager equals sdpa (fp32)", eager_gap <= 1e-4, max_abs_diff=eager_gap)

    def low_precision(dtype):
        model = classifier(train=True)
        with torch.autocast(device, dtype=dtype):
            loss = model(pixel_values, labels=labels).loss
        loss.backward()
        finite = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
        name = f"{str(dtype).removeprefix('torch.')} autocast forward + backward finite"
        report(name, math.isfinite(loss.item()) and finite, loss=loss.item())

    def checkpointing():
        gradients = []
        for enabled in (False, True):
            model = classifier(True, drop_path_rate=0.2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
            if enabled:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            torch.manual_seed(7)  # the same RS-Win permutations and dropout masks
            model(pixel_values, labels=labels).loss.backward()
            gradients.append(torch.cat([parameter.grad.flatten() for parameter in model.parameters()]))
        difference, scale = (gradients[0] - gradients[1]).abs().max().item(), gradients[0].abs().max().item()
        # CUDA's index backward accumulates with atomics, so equal means equal up to float rounding
        name, ok = "gradient checkpointing gives the same gradients", difference <= 1e-5 * max(scale, 1.0)
        report(name, ok, max_abs_diff=difference, largest_gradient=scale)

    for model_class in (VisionBigBirdForImageClassification, VisionBigBirdBackbone):
        guarded(f"{model_class.__name__} {device} vs cpu", matches_cpu, model_class)
    guarded("eval checks", eval_checks)
    for dtype in (torch.bfloat16, torch.float16):
        guarded(f"{dtype} autocast", low_precision, dtype)
    guarded("gradient checkpointing", checkpointing)


def train(device: str, data: list, seconds: float, batch_size: int, image_size: int, test_images: int):
    from study_models import RUNS, config_kwargs  # the study's models, here on Fashion-MNIST upscaled to image_size
    from transformers import AutoConfig, AutoModelForImageClassification

    import vision_bigbird_hf  # noqa: F401  (registers vision_bigbird with the Auto classes)

    def pixels(images):  # uint8 (B, 28, 28) -> normalised (B, 3, S, S) float
        images = images.to(device, torch.float32).div(255).sub(0.5).div(0.5).unsqueeze(1)
        return F.interpolate(images, size=(image_size, image_size), mode="bilinear").expand(-1, 3, -1, -1)

    (train_x, train_y, _), (test_x, test_y, _) = data
    train_x, train_y = torch.tensor(train_x, device=device), torch.tensor(train_y, device=device, dtype=torch.int64)
    test_x, test_y = torch.tensor(test_x[:test_images]), torch.tensor(test_y[:test_images], dtype=torch.int64)

    def train_one(name):
        model_type = RUNS[name][2]
        config = AutoConfig.for_model(model_type, **config_kwargs(name), image_size=image_size, num_labels=10)
        torch.manual_seed(0)
        model = AutoModelForImageClassification.from_config(config).to(device).train()
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
                losses.append(loss.item())  # a sync only every 20 steps
        if device == "cuda":
            torch.cuda.synchronize()  # the queued steps belong to the budget's measurement
        elapsed, correct = time.perf_counter() - start, 0
        model.eval()
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            for images, targets in zip(test_x.split(500), test_y.split(500), strict=True):
                correct += (model(pixels(images)).logits.argmax(-1).cpu() == targets).sum().item()
        details = {"model": name, "params": model.num_parameters(), "steps": steps, "batch_size": batch_size}
        details |= {"image_size": image_size, "train_seconds": elapsed, "images_per_s": steps * batch_size / elapsed}
        details |= {"last_loss": loss.item(), "loss_every_20_steps": losses, "test_images": len(test_x)}
        report(f"train {name}", math.isfinite(loss.item()), **details, test_accuracy=correct / len(test_x))

    for name in ("vbb", "vbb-no-rswin", "vbb-grid", "swin", "pvtv2"):
        guarded(f"train {name}", train_one, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=["install", "correctness", "train"])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="Small model, sizes and budgets (a CPU smoke run).")
    parser.add_argument("--wheels", type=Path, default=Path(".device_wheels"), help="install: the carried wheels.")
    parser.add_argument("--target", type=Path, default=Path(".device_site"), help="install: where they go.")
    parser.add_argument("--force", action="store_true", help="install: every carried wheel, needed or not.")
    parser.add_argument("--data", type=Path, default=Path(".device_wheels/fashion-mnist"), help="train: IDX files.")
    parser.add_argument("--seconds", type=float, default=25.0, help="train: wall-clock budget per model.")
    parser.add_argument("--output", type=Path, help="Write the checks as JSON here.")
    args = parser.parse_args()
    OUTPUT.extend([args.output] if args.output else [])
    if args.job == "install":
        install(args.wheels, args.target, args.force)
    elif args.job == "correctness":
        correctness(args.device, args.quick)
    else:
        try:
            data = [read_split(args.data, split) for split in ("train", "test")]
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"--data {args.data}: {error}") from error
        train(args.device, data, args.seconds, *((8, 128, 256) if args.quick else (128, 128, 10000)))
    sys.exit(0 if all(check["ok"] for check in CHECKS) else 1)


if __name__ == "__main__":
    main()
