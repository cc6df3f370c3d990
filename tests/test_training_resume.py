"""
Exact resume of `scripts/train_image_classification.py`: a real training process is killed with SIGKILL after its
first checkpoint, resumed with `--resume_from_checkpoint`, and must end with bit-identical weights (`torch.equal`) to
an uninterrupted run with the same seed. The runs use the whole ImageNet recipe (RandAugment, Mixup/CutMix, random
erasing from timm, label smoothing, stochastic depth, timm's weight EMA), dataloader workers, and cross epoch boundaries; on one
process, and with two (torchrun, CPU gloo DDP, with gradient accumulation: also the scale-out check of the recipe).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_utils import (
    SCRIPT,
    TINY_MODEL_ARGS,
    load_weights,
    make_image_folder,
    read_json,
    run_script,
    script_env,
)

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("shapes") / "train", images_per_class=8, seed=0)


def recipe_args(train_dir, output_dir, max_steps: int, extra: list[str]) -> list[str]:
    return [
        *TINY_MODEL_ARGS,
        "--train_dir", str(train_dir),
        "--output_dir", str(output_dir),
        "--do_train",
        "--recipe", "imagenet",
        "--ema_decay", "0.8",
        "--learning_rate_per_1024_images", "0.5",
        "--max_steps", str(max_steps),
        "--save_steps", "3",
        "--per_device_train_batch_size", "4",
        "--logging_steps", "1",
        "--report_to", "none",
        "--seed", "7",
        *extra,
    ]  # fmt: skip


def complete_checkpoints(output_dir) -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (the Trainer's last file) was written."""
    if not output_dir.is_dir():
        return []
    names = [path.name for path in output_dir.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return sorted(int(name.split("-")[1]) for name in names)


def kill_after_first_checkpoint(args: list[str], output_dir, cache_dir, launcher: list[str]) -> int:
    """Start the script, SIGKILL its whole process group once a checkpoint is complete; the step it can resume from."""
    with open(output_dir.parent / f"{output_dir.name}.log", "w") as log:
        process = subprocess.Popen(
            [*launcher, str(SCRIPT), *args], env=script_env(cache_dir), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 600
        while not complete_checkpoints(output_dir) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, (output_dir.parent / f"{output_dir.name}.log").read_text()[-4000:]
    assert not (output_dir / "model.safetensors").exists(), "the run finished before it was killed"
    return complete_checkpoints(output_dir)[-1]


def check_resume_is_exact(train_dir, tmp_path, max_steps: int, extra: list[str], launcher: list[str]):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    run_script(recipe_args(train_dir, uninterrupted, max_steps, extra), tmp_path / "cache", launcher=launcher)

    args = recipe_args(train_dir, interrupted, max_steps, extra)
    step = kill_after_first_checkpoint(args, interrupted, tmp_path / "cache", launcher)
    assert step < max_steps
    checkpoint = interrupted / f"checkpoint-{step}"
    assert (checkpoint / "model_ema.safetensors").is_file()  # the EMA, written before trainer_state.json
    _, output = run_script([*args, "--resume_from_checkpoint", str(checkpoint)], tmp_path / "cache", launcher)
    assert f"Resuming training from {checkpoint}" in output

    assert read_json(interrupted / "trainer_state.json")["global_step"] == max_steps
    expected, resumed = load_weights(uninterrupted), load_weights(interrupted)
    assert expected.keys() == resumed.keys()
    different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert not different, f"{len(different)} tensors differ after resuming from step {step}, e.g. {different[:3]}"
    return step


@pytest.mark.slow  # two real training runs and a SIGKILL (about 20 s)
def test_killed_run_resumes_to_bit_identical_weights(train_dir, tmp_path):
    # 24 images in batches of 4: 6 steps per epoch, so the run crosses three epoch boundaries
    step = check_resume_is_exact(train_dir, tmp_path, 20, ["--dataloader_num_workers", "2"], [sys.executable])
    assert step % 3 == 0


@pytest.mark.slow
def test_killed_two_process_ddp_run_resumes_to_bit_identical_weights(train_dir, tmp_path):
    extra = ["--gradient_accumulation_steps", "2", "--save_steps", "2"]
    check_resume_is_exact(train_dir, tmp_path, 8, extra, TORCHRUN)
    log = (tmp_path / "interrupted.log").read_text()
    assert "Process rank: 1, world size: 2" in log and "distributed training: True" in log
    # 4 per process x 2 processes x 2 accumulation steps: the processes share the data (8 if each trained alone)
    assert "Total train batch size (w. parallel, distributed & accumulation) = 16" in log
    assert "find_unused_parameters=True" not in log  # the DDP warning of an extra autograd pass per step


@pytest.mark.slow  # two real training runs and a SIGKILL (about 20 s)
def test_killed_streaming_run_resumes_to_bit_identical_weights(train_dir, tmp_path):
    """`--streaming`: the stream is cycled (20 steps of 4 = 80 examples, over three passes of 24) and re-read."""
    check_resume_is_exact(train_dir, tmp_path, 20, ["--streaming", "--dataloader_num_workers", "2"], [sys.executable])
