"""Forward FLOPs for benchmark.py, make_model_cards.py and compare_models.py: torch's `FlopCounterMode` (matmuls,
linears, convolutions; normalisation, activations, softmax and pooling count zero) plus a formula for the CPU
kernels of `F.scaled_dot_product_attention`, which torch's registry lacks, so that sdpa attention counts what
eager's two matmuls count. MACs = FLOPs / 2, the unit of Swin-T's "4.5 G". The presets' parameters and MACs next
to Swin-T/S/B are in the model cards (`python scripts/make_model_cards.py`);
the tests check them against the Swin budgets.

Backward counts are not used: torch's `convolution_backward` formula overcounts the weight gradient of depthwise
convolutions about `channels` times, so do not read training FLOPs of depthwise-conv models off this counter.
"""

import math

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import SwinConfig, SwinForImageClassification

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification

# CPU (and out-of-tree device) SDPA kernels that torch 2.14's counter leaves at zero, looked up by name so that a torch
# without one of them (the GPU machine runs 2.11) still imports this module; each has a `<name>_backward`.
SDPA_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable")
SDPA_FORWARD_OPS = [getattr(torch.ops.aten, name) for name in SDPA_KERNELS if hasattr(torch.ops.aten, name)]
SDPA_BACKWARD_OPS = [
    getattr(torch.ops.aten, f"{name}_backward") for name in SDPA_KERNELS if hasattr(torch.ops.aten, f"{name}_backward")
]

# transformers' Swin configurations (Liu et al. 2021, Table 1): the budget of each preset
SWIN_SIZES = {
    "tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "small": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}


def attention_flops(query_shape, key_shape, value_shape, *_, **__) -> int:
    """FLOPs of softmax(Q K^T) V for query (B, h, Nq, d), key (B, h, Nk, d), value (B, h, Nk, d_v), given as shapes
    (the counter passes every tensor argument as its shape): 2*B*h*Nq*Nk*d for Q K^T plus 2*B*h*Nq*Nk*d_v for P V."""
    *batch_dims, query_len, head_dim = query_shape
    return 2 * math.prod(batch_dims) * query_len * key_shape[-2] * (head_dim + value_shape[-1])


def attention_backward_flops(grad_out_shape, *shapes, **_) -> int:
    """dV, dP, dQ and dK: four products the size of the forward's two (torch's convention for its SDPA kernels)."""
    return 2 * attention_flops(*shapes)


def flop_counter() -> FlopCounterMode:
    """A quiet `FlopCounterMode` that also counts the CPU SDPA kernels; nothing is registered globally."""
    mapping = {op: attention_flops for op in SDPA_FORWARD_OPS}
    mapping.update({op: attention_backward_flops for op in SDPA_BACKWARD_OPS})
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_forward_flops(model: torch.nn.Module, pixel_values: torch.Tensor, **forward_kwargs) -> int:
    """FLOPs of one forward pass of `model` on `pixel_values` (no gradient; the model's train/eval mode is kept)."""
    with torch.no_grad(), flop_counter() as counter:
        model(pixel_values, **forward_kwargs)
    return counter.get_total_flops()


def build_vision_bigbird(preset: str, attn_implementation: str = "sdpa") -> VisionBigBirdForImageClassification:
    """An ImageNet-sized (1000 labels) Vision Big Bird preset, randomly initialised, in eval mode."""
    model = VisionBigBirdForImageClassification(VisionBigBirdConfig.from_preset(preset, num_labels=1000))
    model.set_attn_implementation(attn_implementation)
    return model.eval()


def build_swin(size: str, attn_implementation: str = "sdpa") -> SwinForImageClassification:
    """transformers' Swin-T/S/B (`size` in tiny/small/base, 224 input, window 7, 1000 labels), in eval mode."""
    model = SwinForImageClassification(SwinConfig(**SWIN_SIZES[size], num_labels=1000))
    model.set_attn_implementation(attn_implementation)
    return model.eval()
