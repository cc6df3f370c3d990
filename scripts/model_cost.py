"""Parameter and forward-MAC counts of Vision Big Bird (arXiv 2311.05988) next to transformers' Swin.

Importable (`count_parameters`, `count_forward_macs`, `flop_counter`, the model builders) and a CLI:

    python scripts/model_cost.py                     # markdown table: presets vs Swin-T/S/B at 224, scaling ratios
    python scripts/model_cost.py --json cost.json    # the same numbers as JSON

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (matmuls, linears and convolutions; normalisation,
activations, softmax and pooling count zero, for every model alike). MACs = FLOPs / 2, the unit Swin-T's "4.5 G" is
quoted in. Two known gaps of torch's counter on CPU, and what this module does about them:

1. `F.scaled_dot_product_attention` on CPU runs `aten._scaled_dot_product_flash_attention_for_cpu`, which has no
   formula in torch's registry, so sdpa attention counts as zero while the eager path (two matmuls) is counted.
   `flop_counter()` adds a formula for it and its friends (`SDPA_FORWARD_OPS`, `SDPA_BACKWARD_OPS`) through
   `FlopCounterMode(custom_mapping=...)`: 2*B*h*Nq*Nk*d for Q @ K^T plus 2*B*h*Nq*Nk*d_v for P @ V (backward: twice
   that, torch's convention for its other attention kernels). Nothing global is registered, so importing this
   module changes no other counter. `tests/test_model_cost.py` checks that eager and sdpa give the same count.
2. `aten.convolution_backward` overcounts the weight gradient of grouped (depthwise) convolutions: torch's formula
   treats the (C, B, H, W)-transposed input as a dense convolution with B input channels per group, about
   `channels` times too many FLOPs. It only affects counts that include a backward pass; every number here is a
   forward count, so it is left as is (do not read training FLOPs of depthwise-conv models off this counter).
"""

import json
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser, SwinConfig, SwinForImageClassification

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


aten = torch.ops.aten

# CPU (and out-of-tree device) kernels of F.scaled_dot_product_attention that torch 2.14's counter leaves at zero;
# looked up by name so that a torch without one of them (the GPU machine runs 2.11) still imports this module.
SDPA_FORWARD_OPS = [
    getattr(aten, name)
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable")
    if hasattr(aten, name)
]
SDPA_BACKWARD_OPS = [
    getattr(aten, name)
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu_backward",
        "_scaled_dot_product_fused_attention_overrideable_backward",
    )
    if hasattr(aten, name)
]

# transformers' Swin configurations (Liu et al. 2021, Table 1) used as the budget of each preset.
SWIN_SIZES = {
    "tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "small": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}
SWIN_NAMES = {"tiny": "Swin-T", "small": "Swin-S", "base": "Swin-B"}


def attention_flops(query_shape, key_shape, value_shape) -> int:
    """FLOPs of softmax(Q K^T) V for query (..., h, Nq, d), key (..., h_kv, Nk, d), value (..., h_kv, Nk, d_v):
    2*B*h*Nq*Nk*d for the scores plus 2*B*h*Nq*Nk*d_v for the weighted sum (key/value heads broadcast to h)."""
    *batch_dims, query_len, head_dim = query_shape
    key_len, value_dim = key_shape[-2], value_shape[-1]
    rows = math.prod(batch_dims)                                                             # B*h
    return 2 * rows * query_len * key_len * head_dim + 2 * rows * query_len * key_len * value_dim


def sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Formula for the fused SDPA forward kernels in `SDPA_FORWARD_OPS` (arguments arrive as shapes)."""
    return attention_flops(query_shape, key_shape, value_shape)


def sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Formula for the fused SDPA backward kernels: dV, dP, dQ, dK are four products the size of the forward's two."""
    return 2 * attention_flops(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """A quiet `FlopCounterMode` that also counts the CPU SDPA kernels (see the module docstring)."""
    custom_mapping = {op: sdpa_forward_flops for op in SDPA_FORWARD_OPS}
    custom_mapping.update({op: sdpa_backward_flops for op in SDPA_BACKWARD_OPS})
    return FlopCounterMode(display=False, custom_mapping=custom_mapping)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared parameters once), trainable or not."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_forward_flops(model: nn.Module, pixel_values: torch.Tensor, **forward_kwargs) -> int:
    """FLOPs of one forward pass of `model` on `pixel_values` (no gradient; the model's train/eval mode is kept)."""
    with torch.no_grad(), flop_counter() as counter:
        model(pixel_values, **forward_kwargs)
    return counter.get_total_flops()


def count_forward_macs(model: nn.Module, pixel_values: torch.Tensor, **forward_kwargs) -> int:
    """Multiply-accumulates of one forward pass (FLOPs / 2), SDPA on CPU included."""
    return count_forward_flops(model, pixel_values, **forward_kwargs) // 2


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


def measure_cost(model: nn.Module, image_size: int) -> dict:
    """Parameters and forward MACs of `model` on one random image_size x image_size RGB image (on the model's
    device; a model built under `torch.device("meta")` gives the same counts without computing anything)."""
    pixel_values = torch.randn(1, 3, image_size, image_size, device=next(model.parameters()).device)
    return {"params": count_parameters(model), "macs": count_forward_macs(model, pixel_values)}


def scaling_ratios(model: nn.Module, base_size: int, sizes: list[int]) -> dict[int, float]:
    """Forward MACs at each of `sizes` divided by the MACs at `base_size` (batch 1)."""
    device = next(model.parameters()).device
    base_macs = count_forward_macs(model, torch.randn(1, 3, base_size, base_size, device=device))
    return {
        size: count_forward_macs(model, torch.randn(1, 3, size, size, device=device)) / base_macs for size in sizes
    }


@dataclass
class CostArguments:
    presets: list[str] = field(
        default_factory=lambda: ["tiny", "small", "base"], metadata={"help": "Presets to count."}
    )
    image_size: int = field(default=224, metadata={"help": "Input size of the params/GMACs table."})
    ratio_sizes: list[int] = field(
        default_factory=lambda: [448, 896], metadata={"help": "Sizes whose MACs are divided by the 224 MACs (tiny)."}
    )
    json: str | None = field(default=None, metadata={"help": "Write the numbers to this JSON file."})


def main():
    (args,) = HfArgumentParser(CostArguments).parse_args_into_dataclasses()
    torch.manual_seed(0)
    rows = []
    for preset in args.presets:
        vision_bigbird = measure_cost(build_vision_bigbird(preset), args.image_size)
        swin = measure_cost(build_swin(preset), args.image_size)
        rows.append(
            {"preset": preset, "vision_bigbird": vision_bigbird, "swin_name": SWIN_NAMES[preset], "swin": swin}
        )
    ratios = scaling_ratios(build_vision_bigbird("tiny"), args.image_size, args.ratio_sizes)

    print(
        f"torch {torch.__version__}, device cpu, float32, batch 1, {args.image_size}x{args.image_size} input, "
        "sdpa attention, counted with torch.utils.flop_counter + CPU SDPA formula; GMACs = GFLOPs / 2\n"
    )
    print("| preset | params (M) | GMACs | Swin | Swin params (M) | Swin GMACs | params / Swin | GMACs / Swin |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for row in rows:
        ours, swin = row["vision_bigbird"], row["swin"]
        print(
            f"| {row['preset']} | {ours['params'] / 1e6:.2f} | {ours['macs'] / 1e9:.2f} | {row['swin_name']} "
            f"| {swin['params'] / 1e6:.2f} | {swin['macs'] / 1e9:.2f} | {ours['params'] / swin['params']:.3f} "
            f"| {ours['macs'] / swin['macs']:.3f} |"
        )
    print(f"\n| Vision Big Bird tiny, forward MACs | ratio | ideal (pixels ratio) |\n|---|---:|---:|")
    for size, ratio in ratios.items():
        print(f"| {size} / {args.image_size} | {ratio:.3f} | {(size / args.image_size) ** 2:.0f} |")

    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "torch": torch.__version__,
                    "image_size": args.image_size,
                    "presets": rows,
                    "tiny_mac_ratios": {str(size): ratio for size, ratio in ratios.items()},
                },
                handle,
                indent=2,
            )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
