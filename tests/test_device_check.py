"""Tests of scripts/device_check.sh and its Python half, through their command lines: which carried wheels get
installed, the argument checks, and the whole check end to end on the CPU (`--device cpu --quick`, slow; the study
models it trains are scripts/compare_models.py's, tested in tests/test_compare_models.py)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def make_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal wheel: one module and a METADATA with `requires` as Requires-Dist lines."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": "\n".join(metadata) + "\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{item},,\n" for item in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as wheel:
        for item, text in files.items():
            wheel.writestr(item, text)
    return path


def install(wheels: Path, target: Path) -> subprocess.CompletedProcess:
    """`device_check.py install`: pip resolves the carried wheels against this environment's installed packages."""
    command = [
        sys.executable,
        str(SCRIPTS / "device_check.py"),
        "install",
        "--wheels",
        str(wheels),
        "--target",
        str(target),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_install_takes_only_the_carried_wheels_the_machine_needs(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # filelock (installed here, no requirements) satisfies >=3, so its carried wheel stays out; the hub wheel and the
    # click wheel it needs are taken since nothing installed here is version 99
    make_wheel(wheels, "transformers", "99.0.0", ["huggingface-hub>=99", "filelock>=3", "pytest; extra == 'dev'"])
    make_wheel(wheels, "huggingface_hub", "99.0.0", ["click>=99", "filelock"])
    make_wheel(wheels, "click", "99.0", [])
    make_wheel(wheels, "filelock", "99.0", [])
    result = install(wheels, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout.splitlines()[-1])["installed"]
    assert sorted(installed) == [
        "click-99.0-py3-none-any.whl",
        "huggingface_hub-99.0.0-py3-none-any.whl",
        "transformers-99.0.0-py3-none-any.whl",
    ]
    assert (tmp_path / "site" / "huggingface_hub" / "__init__.py").read_text() == "__version__ = '99.0.0'\n"
    assert not (tmp_path / "site" / "filelock").exists()


def test_install_reports_a_requirement_no_carried_wheel_meets(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "transformers", "99.0.0", ["no-such-package-anywhere<1"])
    result = install(wheels, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-package-anywhere" in result.stderr and "pip cannot install the transformers of" in result.stderr
    assert not (tmp_path / "site").exists()


def test_train_names_the_data_flag_when_the_idx_files_are_missing(tmp_path):
    command = [sys.executable, str(SCRIPTS / "device_check.py"), "train", "--device", "cpu", "--data", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"--data {tmp_path}: Fashion-MNIST file train-images-idx3-ubyte.gz not found" in result.stderr


def test_shell_script_refuses_an_unknown_argument():
    result = subprocess.run([str(SCRIPTS / "device_check.sh"), "--gpu"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "unknown argument '--gpu'" in result.stderr


def test_cpu_quick_run_budgets_only_stop_a_hang(tmp_path):
    """The CPU smoke run once failed on a busy machine ("exit 124 after 200s"): each of its stages must allow far more
    than a loaded 2-core machine needs (minutes). A stand-in Python that exits at once shows the budgets in the log."""
    stand_in = tmp_path / "python"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    environment = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": str(stand_in)}
    environment["DEVICE_WHEELS"] = str(tmp_path / "no_wheels")
    command = [str(SCRIPTS / "device_check.sh"), "--device", "cpu", "--quick"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    budgets = [
        int(line.split("budget ")[1].split("s:")[0]) for line in result.stdout.splitlines() if ": budget " in line
    ]
    assert len(budgets) == 4 and min(budgets) >= 1200, budgets


@pytest.mark.slow
def test_cpu_quick_run_end_to_end(tmp_path):
    environment = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "DEVICE_WHEELS": str(tmp_path / "no_wheels"),
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        [str(SCRIPTS / "device_check.sh"), "--device", "cpu", "--quick"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=4000,  # a bound on a hang only: the script's own stages stop within 3600 s
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    out = tmp_path / "out"
    files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert files == [
        "benchmark_results.json",
        "benchmark_results.md",
        "correctness.json",
        "device_check.log",
        "pvtv2/benchmark_results.json",
        "pvtv2/benchmark_results.md",
        "raw_timings.json",
        "training.json",
    ]
    log = (out / "device_check.log").read_text()
    for stage in (
        "(a) correctness: exit 0",
        "(b) benchmark: exit 0",
        "(b) benchmark PVTv2-b2: exit 0",
        "(c) training: exit 0",
        "every stage exited 0",
    ):
        assert stage in log
    checks = json.loads((out / "correctness.json").read_text())
    assert len(checks) == 13 and all(check["ok"] for check in checks)
    training = json.loads((out / "training.json").read_text())
    assert [run["model"] for run in training] == ["vbb", "vbb-no-rswin", "vbb-grid", "swin", "pvtv2"]
    assert all(0 <= run["test_accuracy"] <= 1 and run["steps"] > 0 for run in training)
    assert set(json.loads((out / "pvtv2" / "benchmark_results.json").read_text())["models"]) == {"Swin-T", "PVTv2-b2"}
