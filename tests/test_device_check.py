"""Tests of scripts/device_check.sh and its Python half: which carried wheels get installed, the IDX reader, the
argument checks, and the whole check end to end on the CPU (`--device cpu --quick`, slow)."""

import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import device_check  # scripts/ is on pytest's pythonpath
import numpy as np
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


def test_install_takes_only_the_carried_wheels_the_machine_needs(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "transformers", "5.24.0",
               ["huggingface-hub>=1.31", "tokenizers>=0.23", "pytest; extra == 'dev'"])
    make_wheel(wheels, "huggingface_hub", "1.33.0", ["click>=8.4.2", "filelock"])
    make_wheel(wheels, "click", "8.5.1", [])
    make_wheel(wheels, "tokenizers", "0.23.3", [])
    machine = {"transformers": "5.17.0", "huggingface-hub": "1.10.0", "click": "8.1.0", "tokenizers": "0.23.1",
               "filelock": "3.0"}
    monkeypatch.setattr(device_check, "installed_version",
                        lambda name: device_check.Version(machine[name]) if name in machine else None)
    result = device_check.install(wheels, tmp_path / "site", force=False)
    # tokenizers 0.23.1 satisfies >=0.23, so it stays; the old hub and its too-old click are replaced
    assert sorted(result["installed"]) == ["click-8.5.1-py3-none-any.whl", "huggingface_hub-1.33.0-py3-none-any.whl",
                                           "transformers-5.24.0-py3-none-any.whl"]
    assert result["ok"] and result["unsatisfied_without_a_carried_wheel"] == []
    assert (tmp_path / "site" / "huggingface_hub" / "__init__.py").read_text() == "__version__ = '1.33.0'\n"


def test_install_reports_a_requirement_no_carried_wheel_meets(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "transformers", "5.24.0", ["httpx<1"])
    monkeypatch.setattr(device_check, "installed_version", lambda name: None)
    result = device_check.install(wheels, tmp_path / "site", force=False)
    assert not result["ok"]
    assert result["unsatisfied_without_a_carried_wheel"] == ["httpx<1 (installed: None)"]


def test_read_idx_reads_the_header_and_the_pixels(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(size.to_bytes(4, "big") for size in images.shape)
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + images.tobytes()))
    np.testing.assert_array_equal(device_check.read_idx(path), images)


def test_study_models_differ_only_where_intended():
    models = device_check.study_models(10)
    assert list(models) == ["vbb", "vbb-no-rswin", "vbb-grid", "swin", "pvtv2"]
    vbb, no_rswin, grid = (models[name]().config for name in ("vbb", "vbb-no-rswin", "vbb-grid"))
    assert sum(no_rswin.rswin_heads) == 0 and no_rswin.num_heads == vbb.num_heads
    assert grid.rswin_sampling == "grid" and vbb.rswin_sampling == "random"


def test_shell_script_refuses_an_unknown_argument():
    result = subprocess.run([str(SCRIPTS / "device_check.sh"), "--gpu"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown argument '--gpu'" in result.stderr


@pytest.mark.slow
def test_cpu_quick_run_end_to_end(tmp_path):
    environment = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
                   "DEVICE_WHEELS": str(tmp_path / "no_wheels"), "TMPDIR": str(tmp_path)}
    result = subprocess.run([str(SCRIPTS / "device_check.sh"), "--device", "cpu", "--quick"], env=environment,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:]
    out = tmp_path / "out"
    files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert files == ["benchmark_results.json", "benchmark_results.md", "correctness.json", "device_check.log",
                     "pvtv2/benchmark_results.json", "pvtv2/benchmark_results.md", "raw_timings.json", "training.json"]
    log = (out / "device_check.log").read_text()
    for stage in ("(a) correctness: exit 0", "(b) benchmark: exit 0", "(b) benchmark PVTv2-b2: exit 0",
                  "(c) training: exit 0", "every stage exited 0"):
        assert stage in log
    checks = json.loads((out / "correctness.json").read_text())
    assert len(checks) == 13 and all(check["ok"] for check in checks)
    training = json.loads((out / "training.json").read_text())
    assert [run["model"] for run in training] == ["vbb", "vbb-no-rswin", "vbb-grid", "swin", "pvtv2"]
    assert all(0 <= run["test_accuracy"] <= 1 and run["steps"] > 0 for run in training)
    assert set(json.loads((out / "pvtv2" / "benchmark_results.json").read_text())["models"]) == {"Swin-T", "PVTv2-b2"}
