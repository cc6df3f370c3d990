"""Compile and export of the classifier: no graph breaks under torch.compile, one dynamic graph for new input sizes,
torch.export with static and with dynamic batch/height/width, and transformers 5.x's ONNX exporter run on ONNX
Runtime. Eager, compile and export all take the same code (padded RS-Win windows with a key mask, pooling as two
matmuls); its equivalence to independent dense computations is tested in test_head_groups.py and here."""

import math

import pytest
import torch
from conftest import tiny_config_kwargs
from torch.export import Dim, export

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification
from vision_bigbird_hf.modeling_vision_bigbird import adaptive_avg_pool_tokens, pooled_key_mask

# Sizes met after export: odd sizes, batch 1, a last stage with one window and with a 1-token-shorter window, and
# (for the default pool 7) last-stage maps smaller and larger than the pooled grid.
EXPORT_CHECK_SHAPES = [(1, 3, 64, 64), (3, 3, 75, 141), (1, 3, 33, 40), (2, 3, 224, 224), (1, 3, 300, 130)]


def dynamic_image_shapes(min_size: int = 33, max_size: int = 1024) -> dict:
    return {
        "pixel_values": {
            0: Dim("batch", min=1, max=64),
            2: Dim("height", min=min_size, max=max_size),
            3: Dim("width", min=min_size, max=max_size),
        }
    }


def tiny_classifier(**overrides) -> VisionBigBirdForImageClassification:
    torch.manual_seed(0)
    return VisionBigBirdForImageClassification(VisionBigBirdConfig(**tiny_config_kwargs(**overrides))).eval()


# ---- pooling as matmuls on a fixed grid equals adaptive_avg_pool2d ----------------------------------------------------


@pytest.mark.parametrize("height,width,pool_size", [(7, 7, 7), (16, 9, 3), (2, 5, 7), (1, 1, 2), (13, 8, 7)])
def test_fixed_grid_pooling_equals_adaptive_avg_pool2d(height, width, pool_size):
    hidden_states = torch.randn(2, height * width, 5)  # (B, N, C)
    pooled = adaptive_avg_pool_tokens(hidden_states, height, width, pool_size)  # (B, pool**2, C)
    valid = pooled_key_mask(height, width, pool_size, hidden_states.device, hidden_states.dtype).flatten() == 0
    feature_map = hidden_states.unflatten(1, (height, width)).permute(0, 3, 1, 2)  # (B, C, H, W)
    p_h, p_w = min(pool_size, height), min(pool_size, width)
    expected = torch.nn.functional.adaptive_avg_pool2d(feature_map, (p_h, p_w)).flatten(2).transpose(1, 2)
    assert int(valid.sum()) == p_h * p_w
    grid = pooled.unflatten(1, (pool_size, pool_size))
    torch.testing.assert_close(grid[:, :p_h, :p_w].flatten(1, 2), expected, atol=1e-6, rtol=1e-6)
    assert valid.reshape(pool_size, pool_size)[:p_h, :p_w].all() and not grid[:, p_h:].any()


# ---- torch.compile ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_dynamo_traces_the_whole_model_in_one_graph(training):
    """What `_can_compile_fullgraph = True` declares."""
    model = tiny_classifier().train(training)
    assert model._can_compile_fullgraph
    inputs = {"pixel_values": torch.randn(2, 3, 64, 64)}
    if training:
        inputs["labels"] = torch.tensor([1, 3])
    torch._dynamo.reset()
    with torch.set_grad_enabled(training):
        explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0, [str(reason.reason) for reason in explanation.break_reasons]
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compile_with_dynamic_sizes_makes_one_graph_for_every_input_size():
    """One code path for every size: with `dynamic=True` (and a non-square first input, so duck sizing does not tie
    height to width) dynamo compiles once and never recompiles, whatever the window count or pooled grid."""
    from torch._dynamo.testing import CompileCounter

    model = tiny_classifier(rswin_window_size=7, global_pool_size=[7, 7, 7, 7])
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, dynamic=True)
    with torch.no_grad():
        for height, width in [(96, 80), (64, 64), (224, 224), (75, 141), (33, 40)]:
            pixel_values = torch.randn(2, 3, height, width)
            torch.testing.assert_close(compiled(pixel_values).logits, model(pixel_values).logits, atol=1e-5, rtol=1e-5)
    assert counter.frame_count == 1


# ---- torch.export -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("height,width", [(64, 64), (75, 41)])
def test_static_export_matches_eager(height, width):
    model = tiny_classifier()
    pixel_values = torch.randn(2, 3, height, width)
    exported = export(model, (pixel_values,), strict=False)
    other = torch.randn(2, 3, height, width)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(other).logits, model(other).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # the default preset's per-stage window (7x7) and pool sizes (7): the last stage has one window up to 224
        # pixels and is smaller than the pooled grid below 224
        {"rswin_window_size": 7, "global_pool_size": [7, 7, 7, 7]},
    ],
    ids=["tiny", "window7-pool7"],
)
def test_dynamic_export_matches_eager_at_other_sizes(overrides):
    model = tiny_classifier(**overrides)
    exported = export(model, (), {"pixel_values": torch.randn(2, 3, 96, 64)}, dynamic_shapes=dynamic_image_shapes())
    module = exported.module()
    for shape in EXPORT_CHECK_SHAPES:
        pixel_values = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(
                module(pixel_values=pixel_values).logits,
                model(pixel_values).logits,
                atol=1e-5,
                rtol=1e-5,
                msg=lambda message, shape=shape: f"input {shape}: {message}",
            )


@pytest.mark.slow
def test_dynamic_export_refuses_sizes_outside_the_declared_range():
    model = tiny_classifier()
    exported = export(
        model, (), {"pixel_values": torch.randn(2, 3, 64, 64)}, dynamic_shapes=dynamic_image_shapes(max_size=128)
    )
    with pytest.raises(AssertionError, match="size"):
        exported.module()(pixel_values=torch.randn(1, 3, 160, 64))


# ---- ONNX (transformers.exporters) on ONNX Runtime -------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_export_with_dynamic_sizes_matches_pytorch_on_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from transformers.exporters import ExportedModel, OnnxConfig, OnnxExporter

    model = tiny_classifier(rswin_window_size=7, global_pool_size=[7, 7, 7, 7])
    sample = {"pixel_values": torch.randn(2, 3, 96, 64)}
    exported = OnnxExporter().export(model, sample, OnnxConfig(dynamic_shapes=dynamic_image_shapes()))
    exported.save_pretrained(tmp_path)
    reloaded = ExportedModel.from_pretrained(tmp_path, device="cpu")
    assert "CPUExecutionProvider" in reloaded.runners["model"].session.get_providers()
    for shape in EXPORT_CHECK_SHAPES:
        pixel_values = torch.randn(*shape)
        with torch.no_grad():
            expected = model(pixel_values).logits
        logits = torch.as_tensor(reloaded(pixel_values=pixel_values)["logits"])
        assert logits.shape == expected.shape
        max_error = (logits - expected).abs().max().item()
        assert max_error <= 1e-4 and not math.isnan(max_error), f"input {shape}: max |ONNX - PyTorch| = {max_error}"
