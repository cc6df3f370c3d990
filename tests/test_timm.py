"""Vision Big Bird in timm's registry (`vision_bigbird_hf.timm_vision_bigbird`): the presets build through
`timm.create_model`, `features_only` gives the stage maps, and weights move between timm and transformers unchanged."""

import pytest
import torch

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification, VisionBigBirdModel

timm = pytest.importorskip("timm")
timm_vision_bigbird = pytest.importorskip("vision_bigbird_hf.timm_vision_bigbird")
SMALL = {"hidden_sizes": [24, 48, 72, 96], "depths": [1, 2, 1, 1], "num_heads": [3, 3, 3, 3], "rswin_window_size": 3}
SMALL |= {"global_pool_size": [3, 3, 2, 2], "drop_path_rate": 0.0}


def test_presets_are_registered():
    assert timm.list_models("vision_bigbird_*") == [
        "vision_bigbird_base",
        "vision_bigbird_small",
        "vision_bigbird_tiny",
    ]
    config = timm.get_pretrained_cfg("vision_bigbird_tiny").to_dict()
    assert (config["input_size"], config["crop_pct"], config["interpolation"]) == ((3, 224, 224), 0.875, "bicubic")


@pytest.mark.parametrize(
    "preset", ["tiny", pytest.param("small", marks=pytest.mark.slow), pytest.param("base", marks=pytest.mark.slow)]
)
def test_each_preset_has_the_transformers_architecture(preset):
    timm_model = timm.create_model(f"vision_bigbird_{preset}", num_classes=7)
    transformers_model = VisionBigBirdForImageClassification(VisionBigBirdConfig.from_preset(preset, num_labels=7))
    timm_shapes = {name: tensor.shape for name, tensor in timm_model.state_dict().items()}
    assert timm_shapes == {name: tensor.shape for name, tensor in transformers_model.state_dict().items()}


def test_weights_round_trip_both_ways():
    transformers_model = VisionBigBirdForImageClassification(VisionBigBirdConfig(**SMALL, num_labels=5)).eval()
    pixel_values = torch.randn(2, 3, 70, 90)
    timm_model = timm_vision_bigbird.VisionBigBirdTimm.from_transformers(transformers_model).eval()
    with torch.no_grad():
        expected = transformers_model(pixel_values).logits
        assert torch.equal(timm_model(pixel_values), expected)
        assert torch.equal(timm_model.to_transformers().eval()(pixel_values).logits, expected)


def test_timm_loads_a_transformers_weights_file(tmp_path):
    transformers_model = VisionBigBirdForImageClassification(VisionBigBirdConfig(**SMALL, num_labels=5)).eval()
    transformers_model.save_pretrained(tmp_path)
    timm_model = timm.create_model(
        "vision_bigbird_tiny", pretrained=True, num_classes=5, **SMALL,
        pretrained_cfg_overlay={"file": str(tmp_path / "model.safetensors"), "num_classes": 5},
    ).eval()  # fmt: skip
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(timm_model(pixel_values), transformers_model(pixel_values).logits)


def test_features_only_gives_the_stage_maps():
    features = timm.create_model("vision_bigbird_tiny", features_only=True, out_indices=(1, 2, 3), **SMALL).eval()
    assert features.feature_info.channels() == SMALL["hidden_sizes"][1:]
    assert features.feature_info.reduction() == [8, 16, 32]
    model = VisionBigBirdModel(VisionBigBirdConfig(**SMALL)).eval()
    model.load_state_dict(features.model.vision_bigbird.state_dict())
    pixel_values = torch.randn(2, 3, 65, 97)  # odd, non-square
    with torch.no_grad():
        maps = features(pixel_values)
        expected = model(pixel_values, output_hidden_states=True).reshaped_hidden_states[2:]
    assert [feature_map.shape[-2:] for feature_map in maps] == [(9, 13), (5, 7), (3, 4)]  # ceil(65/8), ...
    assert all(torch.equal(feature_map, reference) for feature_map, reference in zip(maps, expected))


def test_forward_intermediates_and_head():
    model = timm.create_model("vision_bigbird_tiny", num_classes=3, **SMALL).eval()
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(pixel_values, indices=1, norm=True)
        assert len(intermediates) == 1 and torch.equal(final, model.forward_features(pixel_values))
        tokens = final[0].transpose(0, 1).reshape(intermediates[0].shape[1:])  # (C, H, W) from (N, C)
        torch.testing.assert_close(intermediates[0][0], tokens)  # the normed last map is the final features
        pooled = model.forward_head(final, pre_logits=True)
        torch.testing.assert_close(model.forward_head(final), model.get_classifier()(pooled))
    model.reset_classifier(0)
    assert model(pixel_values).shape == (1, SMALL["hidden_sizes"][-1])


def test_grad_checkpointing_and_layer_decay_groups():
    from timm.optim import create_optimizer_v2

    model = timm.create_model("vision_bigbird_tiny", num_classes=3, **SMALL)
    model.set_grad_checkpointing(True)
    assert any(getattr(module, "gradient_checkpointing", False) for module in model.modules())
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scales = sorted({group["lr_scale"] for group in optimizer.param_groups})
    assert len(scales) == 1 + sum(SMALL["depths"]) + 1  # stem, each block, the final norm and head
    grouped = {id(param) for group in optimizer.param_groups for param in group["params"]}
    assert grouped == {id(param) for param in model.parameters()}
