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


def check_weight_layouts(test_case, model_classes, config) -> None:
    """Replaces the common `test_load_contiguous_weights` (every parameter contiguous after init and after
    `from_pretrained`): convolution weights are deliberately channels-last (`use_channels_last_convolution_weights`),
    every other parameter must be contiguous, in both places, and a saved checkpoint holds the same values."""
    import tempfile

    def check(model):
        for name, param in model.named_parameters():
            if param.ndim == 4:
                test_case.assertTrue(param.is_contiguous(memory_format=torch.channels_last), f"{name} not channels-last")
            else:
                test_case.assertTrue(param.is_contiguous(), f"{name} not contiguous")

    for model_class in model_classes:
        model = model_class(config)
        check(model)
        with tempfile.TemporaryDirectory() as tmpdirname:
            model.save_pretrained(tmpdirname)
            loaded = model_class.from_pretrained(tmpdirname)
        check(loaded)
        for (name, param), loaded_param in zip(model.named_parameters(), loaded.parameters()):
            test_case.assertTrue(torch.equal(param, loaded_param), name)
