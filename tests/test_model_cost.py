"""Tests of scripts/model_cost.py: the CPU SDPA correction of torch's FLOP counter, and the presets' cost budget.

Budget and scaling checks count on the meta device (shapes only, no arithmetic), which keeps the file fast;
`test_meta_counts_match_cpu` checks that the meta count is the CPU count.
"""

import model_cost  # scripts/ is on pytest's pythonpath
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode


@pytest.fixture(scope="module")
def cpu_tiny_counts():
    """Forward FLOPs of the tiny preset on one CPU image per attention implementation, and the ops counted."""
    torch.manual_seed(0)
    pixel_values = torch.randn(1, 3, 224, 224)
    model = model_cost.build_vision_bigbird("tiny")
    counts = {}
    for implementation in ("eager", "sdpa"):
        model.set_attn_implementation(implementation)
        with torch.no_grad(), model_cost.flop_counter() as counter:
            model(pixel_values)
        counts[implementation] = (counter.get_total_flops(), set(counter.get_flop_counts()["Global"]))
    return counts


def meta_macs(model: torch.nn.Module, image_size: int = 224) -> int:
    """Forward MACs of `model`, built under `torch.device("meta")`, on one image_size x image_size RGB image."""
    with torch.device("meta"):
        return model_cost.count_forward_flops(model, torch.zeros(1, 3, image_size, image_size)) // 2


def meta_cost(builder, size: str) -> dict:
    with torch.device("meta"):
        model = builder(size)
    return {"params": model.num_parameters(), "macs": meta_macs(model)}


@pytest.mark.parametrize("backward", [False, True])
def test_sdpa_formula_matches_explicit_matmuls(backward):
    # non-square attention (Nq != Nk), so a formula that mixes up the lengths fails (CPU flash needs d_v == d)
    shapes = [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8)]
    query, key, value = (torch.randn(shape, requires_grad=backward) for shape in shapes)
    with model_cost.flop_counter() as fused:
        output = torch.nn.functional.scaled_dot_product_attention(query, key, value)
        if backward:
            output.sum().backward()
    with FlopCounterMode(display=False) as explicit:
        output = torch.softmax(query @ key.transpose(-1, -2) * 8**-0.5, dim=-1) @ value
        if backward:
            output.sum().backward()
    # the fused CPU kernels ran, so the formulas were used
    kernels = ["_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward"]
    assert set(fused.get_flop_counts()["Global"]) == {getattr(torch.ops.aten, op) for op in kernels[: 1 + backward]}
    # forward: Q K^T and P V; backward: dQ, dK, dP and dV, four products of the same sizes
    assert explicit.get_total_flops() == (3 if backward else 1) * 2 * 2 * 3 * 5 * 7 * (8 + 8)
    assert fused.get_total_flops() == explicit.get_total_flops()


def test_eager_and_sdpa_counts_agree(cpu_tiny_counts):
    (eager_flops, _), (sdpa_flops, sdpa_ops) = cpu_tiny_counts["eager"], cpu_tiny_counts["sdpa"]
    # the sdpa run must have gone through a fused kernel, otherwise this test would not exercise the correction
    assert sdpa_ops & set(model_cost.SDPA_FORWARD_OPS), f"no fused SDPA kernel among the counted ops {sdpa_ops}"
    assert sdpa_flops == eager_flops


def test_eager_and_sdpa_counts_agree_for_swin():
    torch.manual_seed(0)
    pixel_values = torch.randn(1, 3, 224, 224)
    model = model_cost.build_swin("tiny")
    counts = {}
    for implementation in ("eager", "sdpa"):
        model.set_attn_implementation(implementation)
        counts[implementation] = model_cost.count_forward_flops(model, pixel_values)
    assert counts["sdpa"] == counts["eager"]


def test_meta_counts_match_cpu(cpu_tiny_counts):
    with torch.device("meta"):
        model = model_cost.build_vision_bigbird("tiny")
        meta_flops = model_cost.count_forward_flops(model, torch.randn(1, 3, 224, 224))
    assert meta_flops == cpu_tiny_counts["sdpa"][0]


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_preset_meets_swin_budget(size):
    ours = meta_cost(model_cost.build_vision_bigbird, size)
    swin = meta_cost(model_cost.build_swin, size)
    swin_name = f"Swin-{size[0].upper()}"
    params_ratio = ours["params"] / swin["params"]
    macs_ratio = ours["macs"] / swin["macs"]
    assert abs(params_ratio - 1) <= 0.10, (
        f"{size}: {ours['params'] / 1e6:.2f}M parameters vs {swin_name} {swin['params'] / 1e6:.2f}M "
        f"({params_ratio:.3f}x)"
    )
    assert abs(macs_ratio - 1) <= 0.15, (
        f"{size}: {ours['macs'] / 1e9:.2f} GMACs vs {swin_name} {swin['macs'] / 1e9:.2f} ({macs_ratio:.3f}x)"
    )


def test_swin_tiny_count_is_the_published_one():
    # Liu et al. 2021, Table 1: Swin-T 28M parameters, 4.5G FLOPs (multiply-accumulates) at 224
    swin = meta_cost(model_cost.build_swin, "tiny")
    assert swin["params"] / 1e6 == pytest.approx(28.3, abs=0.5)
    assert swin["macs"] / 1e9 == pytest.approx(4.5, abs=0.1)


def test_forward_macs_grow_linearly_with_pixels():
    with torch.device("meta"):
        model = model_cost.build_vision_bigbird("tiny")
    macs = {size: meta_macs(model, size) for size in (224, 448, 896)}
    assert macs[448] / macs[224] == pytest.approx(4, rel=0.10)
    assert macs[896] / macs[224] == pytest.approx(16, rel=0.10)
