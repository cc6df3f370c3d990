"""torch.export of the classifier (static shapes). Dynamic height/width does not export yet: the RS-Win split into
at most two window sizes branches on the token count (see docs/benchmarks.md)."""

import pytest
import torch
from conftest import tiny_config_kwargs
from torch.export import export

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


@pytest.mark.parametrize("height,width", [(64, 64), (75, 41)])
def test_static_export_matches_eager(height, width):
    model = VisionBigBirdForImageClassification(VisionBigBirdConfig(**tiny_config_kwargs())).eval()
    pixel_values = torch.randn(2, 3, height, width)
    exported = export(model, (pixel_values,), strict=False)
    other = torch.randn(2, 3, height, width)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(other).logits, model(other).logits, atol=1e-5, rtol=1e-5)
