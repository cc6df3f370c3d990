"""ruff (pinned in the [dev] extra) keeps src/, scripts/ and tests/ lint-clean and formatted with the project's own
configuration (pyproject.toml), as `tests/test_mlinter.py` keeps the package in transformers' structure."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PATHS = ["src", "scripts", "tests"]


def ruff_command() -> str:
    beside_python = Path(sys.executable).parent / "ruff"
    command = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    if command is None:
        pytest.skip("ruff is not installed (the [dev] extra pins it)")
    return command


@pytest.mark.parametrize(
    "check", [["check", "--output-format", "concise"], ["format", "--check"]], ids=["lint", "format"]
)
def test_ruff_is_clean(check):
    process = subprocess.run(
        [ruff_command(), *check, "--no-cache", *PATHS],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, (process.stdout + process.stderr)[-6000:]
