"""`VisionBigBirdForMaskedImageModeling` (SimMIM): the mask token replaces exactly the masked stem tokens, the loss is
the L1 error over the masked pixels only (checked against an independent computation), and bad inputs are refused."""

import numpy as np
import pytest
import torch
from conftest import tiny_config_kwargs

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForMaskedImageModeling, VisionBigBirdModel


@pytest.fixture
def model():
    model = VisionBigBirdForMaskedImageModeling(VisionBigBirdConfig(**tiny_config_kwargs())).eval()
    torch.nn.init.normal_(model.vision_bigbird.embeddings.mask_token)  # a trained token is not zero
    return model


def random_mask(batch_size, height, width, ratio=0.6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, (height // 4) * (width // 4), generator=generator) < ratio


def test_loss_is_l1_over_masked_pixels(model):
    pixel_values = torch.randn(2, 3, 64, 96)
    bool_masked_pos = random_mask(2, 64, 96)
    with torch.no_grad():
        outputs = model(pixel_values, bool_masked_pos=bool_masked_pos)
    assert outputs.reconstruction.shape == (2, 3, 64, 96)
    # independently: each stem token covers a 4x4 pixel block; average |x - x_hat| over masked pixels and channels
    mask = np.kron(bool_masked_pos.numpy().reshape(2, 16, 24), np.ones((4, 4)))  # (B, H, W)
    error = np.abs(pixel_values.numpy() - outputs.reconstruction.numpy())  # (B, C, H, W)
    expected = (error * mask[:, None]).sum() / (mask.sum() * 3)
    assert outputs.loss.item() == pytest.approx(expected, rel=1e-5)


def test_mask_token_replaces_exactly_the_masked_tokens(model):
    pixel_values = torch.randn(2, 3, 64, 64)
    bool_masked_pos = random_mask(2, 64, 64)
    embeddings = model.vision_bigbird.embeddings
    with torch.no_grad():
        plain, _, _ = embeddings(pixel_values)
        masked, _, _ = embeddings(pixel_values, bool_masked_pos)
    assert torch.equal(masked[~bool_masked_pos], plain[~bool_masked_pos])
    assert torch.equal(masked[bool_masked_pos], embeddings.mask_token[0].expand(int(bool_masked_pos.sum()), -1))


def test_no_mask_gives_the_base_model(model):
    base = VisionBigBirdModel(model.config).eval()
    missing, unexpected = base.load_state_dict(model.vision_bigbird.state_dict(), strict=False)
    assert unexpected == ["embeddings.mask_token"] and not missing
    pixel_values = torch.randn(1, 3, 64, 64)
    nothing_masked = torch.zeros(1, 256, dtype=torch.bool)
    with torch.no_grad():
        expected = base(pixel_values).last_hidden_state
        assert torch.equal(
            model.vision_bigbird(pixel_values, bool_masked_pos=nothing_masked).last_hidden_state, expected
        )
        assert torch.equal(model.vision_bigbird(pixel_values).last_hidden_state, expected)


def test_bad_inputs_are_refused(model):
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 64, 80))
    with pytest.raises(ValueError, match=r"\(1, 256\)"):
        model(torch.randn(1, 3, 64, 64), bool_masked_pos=torch.zeros(1, 255, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask token"):
        VisionBigBirdModel(model.config)(
            torch.randn(1, 3, 64, 64), bool_masked_pos=torch.zeros(1, 256, dtype=torch.bool)
        )


def test_every_parameter_learns(model):
    model.train()
    outputs = model(torch.randn(2, 3, 64, 64), bool_masked_pos=random_mask(2, 64, 64))
    outputs.loss.backward()
    assert all(param.grad is not None and param.grad.abs().sum() > 0 for param in model.parameters())
