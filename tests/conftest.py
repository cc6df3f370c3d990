"""Shared test setup: a tiny config with every head group present, and transformers' common test mixins.

The mixins (package `hf_common`) live in `.cache/transformers_tests/`, which pyproject.toml's pytest `pythonpath`
puts on the import path (with `scripts/`, for the modules scripts share); `scripts/fetch_transformers_tests.py` fills that folder (run here, through its command line,
when the folder does not match the installed transformers yet).
"""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

REPO_ROOT = Path(__file__).resolve().parent.parent
MIXINS_MARKER = REPO_ROOT / ".cache" / "transformers_tests" / "hf_common" / f".transformers-{transformers.__version__}"

if not MIXINS_MARKER.exists():
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "fetch_transformers_tests.py")], check=True)
    importlib.invalidate_caches()  # the folder was on the path before it existed


def tiny_config_kwargs(**overrides):
    """Four stages, one or two blocks each, every head group present in every stage."""
    kwargs = {
        "hidden_sizes": [24, 48, 72, 96],
        "depths": [1, 2, 1, 1],
        "num_heads": [3, 3, 3, 3],
        "rswin_window_size": 3,
        "global_pool_size": [3, 3, 2, 2],
        "drop_path_rate": 0.0,
        "num_labels": 4,
    }
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def tiny_config():
    from vision_bigbird_hf import VisionBigBirdConfig

    return VisionBigBirdConfig(**tiny_config_kwargs())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def docs_python_block(marker: str) -> str:
    """The ```python block of docs/backbone.md that follows the `<!-- marker -->` comment."""
    text = (REPO_ROOT / "docs" / "backbone.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, flags=re.DOTALL)
    assert match is not None, f"no python block after <!-- {marker} --> in docs/backbone.md"
    return match.group(1)
