"""Shared test setup: transformers' common test mixins on sys.path, a tiny config with every head group present."""

import sys
from pathlib import Path

import pytest
import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from fetch_transformers_tests import fetch  # noqa: E402


sys.path.insert(0, str(fetch()))


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
