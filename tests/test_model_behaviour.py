"""Model-level behaviours of the core issue: inputs of any size, determinism, constants built once, attention
backends, gradients, gradient checkpointing, losses, save/load and Auto classes."""

import collections

import pytest
import torch
from conftest import tiny_config_kwargs
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from vision_bigbird_hf import (
    VisionBigBirdBackbone,
    VisionBigBirdConfig,
    VisionBigBirdForImageClassification,
    VisionBigBirdModel,
)


def tiny_classifier(**overrides):
    return VisionBigBirdForImageClassification(VisionBigBirdConfig(**tiny_config_kwargs(**overrides)))


@pytest.mark.parametrize("height,width", [(32, 32), (33, 97), (64, 40), (71, 50), (224, 160), (100, 33)])
def test_any_input_size_of_at_least_32_pixels(height, width):
    model = VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad():
        output = model(torch.randn(2, 3, height, width), output_hidden_states=True)
    grid = (-(-height // 32), -(-width // 32))
    assert output.last_hidden_state.shape == (2, grid[0] * grid[1], 96)
    assert output.reshaped_hidden_states[-1].shape == (2, 96, *grid)
    assert torch.isfinite(output.last_hidden_state).all()


def test_feature_maps_follow_each_stage_grid_and_model_and_backbone_agree():
    """The encoder builds the feature maps from the grid each stage returns; on an odd non-square input each grid is
    the convolution arithmetic of the stem (7x7, stride 4, padding 3) and of the downsamplings (3x3, stride 2,
    padding 1), and the backbone returns the very maps the base model does."""
    config = VisionBigBirdConfig(**tiny_config_kwargs(out_features=["stem", "stage1", "stage2", "stage3", "stage4"]))
    model = VisionBigBirdModel(config).eval()
    backbone = VisionBigBirdBackbone(config).eval()
    backbone.load_state_dict(model.state_dict(), strict=False)
    images = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        maps = model(images, output_hidden_states=True).reshaped_hidden_states
        backbone_maps = backbone(images, output_hidden_states=True).hidden_states
    grid = ((97 + 6 - 7) // 4 + 1, (131 + 6 - 7) // 4 + 1)
    grids = [grid, grid]
    for _ in range(3):
        grid = ((grid[0] + 2 - 3) // 2 + 1, (grid[1] + 2 - 3) // 2 + 1)
        grids.append(grid)
    assert [tuple(feature_map.shape[-2:]) for feature_map in maps] == grids
    for feature_map, backbone_map in zip(maps, backbone_maps):
        torch.testing.assert_close(backbone_map, feature_map)


@pytest.mark.parametrize(
    "shape,message",
    [
        ((1, 3, 31, 64), "at least 32x32"),
        ((1, 3, 64, 20), "at least 32x32"),
        ((1, 1, 64, 64), "channels"),
        ((3, 64, 64), "shape"),
        ((1, 4, 64, 64), "num_channels=3"),
    ],
)
def test_bad_input_gets_a_clear_error(shape, message):
    model = VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs()))
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


@pytest.mark.parametrize(
    "pixel_values,message",
    [
        (torch.randn(0, 3, 64, 64), "no images"),
        (torch.zeros(1, 3, 0, 0), "0x0 pixels"),
        (torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8), "torch.uint8.*image processor"),
        (torch.ones(1, 3, 64, 64, dtype=torch.long), "torch.int64.*image processor"),
    ],
    ids=["empty_batch", "zero_size", "uint8", "int64"],
)
def test_inputs_that_would_crash_or_mislead_are_clear_errors(pixel_values, message):
    for model in (
        VisionBigBirdForImageClassification(VisionBigBirdConfig(**tiny_config_kwargs())),
        VisionBigBirdBackbone(VisionBigBirdConfig(**tiny_config_kwargs())),
    ):
        with pytest.raises(ValueError, match=message):
            model(pixel_values)


def test_missing_pixel_values_is_an_error():
    with pytest.raises(ValueError, match="pixel_values"):
        VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs()))()


def test_eval_is_deterministic_and_batch_independent():
    model = tiny_classifier().eval()
    images = torch.randn(4, 3, 64, 80)
    with torch.no_grad():
        first = model(images).logits
        second = model(images).logits
        alone = model(images[2:3]).logits
        reordered = model(images.flip(0)).logits
    assert torch.equal(first, second)
    torch.testing.assert_close(alone[0], first[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reordered.flip(0), first, atol=1e-5, rtol=1e-5)


def test_a_warm_eval_forward_builds_no_window_order_layout_or_pooling_matrix():
    """Window orders, layouts, key masks and pooling matrices depend only on the grid, the layer and the device: they
    are built by the first forward at a size, not again (no sort, no index arithmetic in a warm forward)."""
    model = tiny_classifier().eval()
    images = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        first = model(images).logits
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            warm = model(images).logits
    ops = collections.Counter(event.name for event in profile.events())
    builders = ["aten::sort", "aten::argsort", "aten::arange", "aten::remainder", "aten::div", "aten::scatter_"]
    assert {op: ops[op] for op in builders if ops[op]} == {}
    assert ops["aten::index_select"] > 0  # the profile did see the windows being gathered
    assert torch.equal(warm, first)


def test_constants_built_under_inference_mode_serve_a_forward_with_autograd():
    """A first forward under `torch.inference_mode()` (a pipeline, say) must not leave inference tensors behind that a
    later forward with autograd would have to save for backward."""
    model = tiny_classifier().eval()
    images = torch.randn(2, 3, 76, 52)
    with torch.inference_mode():
        expected = model(images).logits
    images.requires_grad_(True)
    logits = model(images).logits  # eval with gradients (a saliency map, say)
    logits.sum().backward()
    assert images.grad is not None and torch.equal(logits.detach(), expected)
    model.train()
    model(images, labels=torch.tensor([0, 1])).loss.backward()


def test_training_mode_samples_new_windows_each_pass_and_seed_reproduces_them():
    model = tiny_classifier().train()
    images = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    first = model(images).logits
    second = model(images).logits
    torch.manual_seed(1)
    replay = model(images).logits
    assert not torch.allclose(first, second)
    assert torch.equal(first, replay)


def test_sampling_in_eval_is_an_option():
    model = tiny_classifier(rswin_sample_in_eval=True).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(images).logits, model(images).logits)


@pytest.mark.parametrize("height,width", [(64, 64), (75, 41)])
def test_eager_and_sdpa_agree(height, width):
    config = VisionBigBirdConfig(**tiny_config_kwargs())
    eager = VisionBigBirdForImageClassification._from_config(config, attn_implementation="eager").eval()
    sdpa = VisionBigBirdForImageClassification._from_config(config, attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        eager_out = eager(images, output_hidden_states=True)
        sdpa_out = sdpa(images, output_hidden_states=True)
    torch.testing.assert_close(sdpa_out.logits, eager_out.logits, atol=1e-4, rtol=1e-4)
    for a, b in zip(sdpa_out.hidden_states, eager_out.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attn_implementation", ["flash_attention_2", "flex_attention"])
def test_attention_implementations_without_a_shared_key_mask_are_refused(attn_implementation):
    """`_supports_flash_attn` / `_supports_flex_attn` are False: both groups pass one key mask for all queries."""
    config = VisionBigBirdConfig(**tiny_config_kwargs())
    with pytest.raises(ValueError, match="does not support"):
        VisionBigBirdForImageClassification._from_config(config, attn_implementation=attn_implementation)


@pytest.mark.parametrize("height,width", [(64, 64), (97, 161)])
def test_channels_last_is_the_callers_choice(height, width, tmp_path):
    """Weights are stored contiguous (after init and after loading); `model.to(memory_format=torch.channels_last)`
    changes the convolution weights' layout and leaves eval outputs unchanged within 1e-5."""
    model = tiny_classifier().eval()
    model.save_pretrained(tmp_path)
    loaded = VisionBigBirdForImageClassification.from_pretrained(tmp_path).eval()
    for candidate in (model, loaded):
        assert all(p.is_contiguous() for p in candidate.parameters())
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        contiguous = model(images).logits
        model.to(memory_format=torch.channels_last)
        conv_weights = [p for p in model.parameters() if p.ndim == 4]
        assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
        channels_last = model(images).logits
    torch.testing.assert_close(channels_last, contiguous, atol=1e-5, rtol=1e-5)


def test_every_parameter_receives_a_gradient():
    model = tiny_classifier(use_absolute_embeddings=True).train()
    loss = model(torch.randn(2, 3, 64, 64), labels=torch.tensor([0, 3])).loss
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant):
    overrides = {"drop_path_rate": 0.2, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    images, labels = torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = tiny_classifier(**overrides).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        torch.manual_seed(7)
        model(images, labels=labels).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_losses_follow_problem_type():
    images = torch.randn(3, 3, 64, 64)
    single = tiny_classifier().eval()
    labels = torch.tensor([0, 3, 1])
    out = single(images, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))

    multi = tiny_classifier(problem_type="multi_label_classification").eval()
    targets = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    out = multi(images, labels=targets)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))

    regression = tiny_classifier(num_labels=1).eval()
    values = torch.tensor([0.5, -1.0, 2.0])
    out = regression(images, labels=values)
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), values))


def test_return_dict_false_gives_the_same_tensors_as_a_tuple():
    model = tiny_classifier().eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        as_dict = model(images, output_hidden_states=True)
        as_tuple = model(images, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.logits)
    assert len(as_tuple[1]) == 5 and torch.equal(as_tuple[1][-1], as_dict.hidden_states[-1])


def test_pooler_output_is_the_token_average_of_last_hidden_state():
    model = VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad():
        output = model(torch.randn(2, 3, 96, 64))
    torch.testing.assert_close(output.pooler_output, output.last_hidden_state.mean(1))


def test_save_and_load_round_trip_through_auto_classes(tmp_path):
    model = tiny_classifier(id2label={0: "a", 1: "b", 2: "c", 3: "d"}).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    images = torch.randn(2, 3, 64, 64)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is VisionBigBirdForImageClassification
    with torch.no_grad():
        assert torch.equal(reloaded(images).logits, model(images).logits)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    assert AutoConfig.from_pretrained(tmp_path).id2label[2] == "c"
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is VisionBigBirdModel


def test_image_size_is_only_nominal():
    small, large = (
        VisionBigBirdConfig(**tiny_config_kwargs(image_size=64)),
        VisionBigBirdConfig(**tiny_config_kwargs(image_size=384)),
    )
    model_small = VisionBigBirdForImageClassification(small).eval()
    model_large = VisionBigBirdForImageClassification(large).eval()
    model_large.load_state_dict(model_small.state_dict())
    images = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model_small(images).logits, model_large(images).logits)


def test_absolute_position_embedding_is_interpolated_to_any_grid():
    model = tiny_classifier(use_absolute_embeddings=True, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 130, 70)).logits.shape == (1, 4)
