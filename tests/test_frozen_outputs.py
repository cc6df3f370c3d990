"""Frozen outputs: seeded models give the outputs they gave before the refactors of issue 20.

This is a regression guard, not a correctness check (test_head_groups.py checks each group against independent
computations). `frozen_outputs.json` beside this file holds a few values and sums of each tensor, recorded with the
code of main at fac270b; every refactor that should not change what the model computes must keep them within float
tolerance. Record again only for a change that is meant to change outputs:
`PYTHONPATH=src OMP_NUM_THREADS=1 python tests/test_frozen_outputs.py --record`.

Two configs, spelled out so that a later change of a default or a preset cannot move them: the tiny preset and a
small four-stage one (conftest's `tiny_config_kwargs`), each at 224x224 and at an odd non-square 97x131. Per case:
eval logits and the five feature maps (`reshaped_hidden_states`), the backbone's layer-normed feature maps, and one
seeded training step (drop path and random windows drawn from torch's default generator): its loss and gradients.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

RECORD_FILE = Path(__file__).with_name("frozen_outputs.json")

CONFIGS = {
    "tiny_preset": {
        "hidden_sizes": [96, 192, 384, 768],
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "rswin_window_size": 7,
        "global_pool_size": [7, 7, 7, 7],
        "drop_path_rate": 0.1,
        "num_labels": 10,
    },
    "small": {
        "hidden_sizes": [24, 48, 72, 96],
        "depths": [1, 2, 1, 1],
        "num_heads": [3, 3, 3, 3],
        "rswin_window_size": 3,
        "global_pool_size": [3, 3, 2, 2],
        "drop_path_rate": 0.1,
        "num_labels": 4,
    },
}
SIZES = {"224x224": (224, 224), "97x131": (97, 131)}
CASES = [(config, size) for config in CONFIGS for size in SIZES]
GRADIENT_PARAMETERS = [
    "vision_bigbird.embeddings.projection.weight",
    "vision_bigbird.encoder.stages.0.layers.0.attention.qkv.weight",
    "vision_bigbird.encoder.stages.1.layers.0.attention.global_heads.kv.weight",
    "vision_bigbird.encoder.stages.2.layers.0.mlp.fc1.bias",
    "vision_bigbird.encoder.stages.3.downsample.projection.weight",
    "classifier.weight",
]


def summary(tensor: torch.Tensor) -> dict:
    """Shape, sum, sum of absolute values and eight values spread over the flattened tensor."""
    flat = tensor.detach().double().flatten()
    picks = torch.linspace(0, flat.numel() - 1, 8).round().long()
    return {
        "shape": list(tensor.shape),
        "sum": flat.sum().item(),
        "abs_sum": flat.abs().sum().item(),
        "values": flat[picks].tolist(),
    }


def compute(config_name: str, size_name: str) -> dict:
    from vision_bigbird_hf import VisionBigBirdBackbone, VisionBigBirdConfig, VisionBigBirdForImageClassification

    kwargs = CONFIGS[config_name]
    height, width = SIZES[size_name]
    torch.manual_seed(0)
    pixel_values = torch.randn(2, 3, height, width)
    labels = torch.tensor([1, 3])
    result = {}

    torch.manual_seed(1)
    model = VisionBigBirdForImageClassification(VisionBigBirdConfig(**kwargs)).eval()
    with torch.no_grad():
        output = model(pixel_values, output_hidden_states=True)
    result["logits"] = summary(output.logits)
    for index, feature_map in enumerate(output.reshaped_hidden_states):
        result[f"reshaped_hidden_states.{index}"] = summary(feature_map)

    torch.manual_seed(2)
    out_features = ["stem", "stage1", "stage2", "stage3", "stage4"]
    backbone = VisionBigBirdBackbone(VisionBigBirdConfig(**kwargs, out_features=out_features)).eval()
    with torch.no_grad():
        feature_maps = backbone(pixel_values).feature_maps
    for stage, feature_map in zip(out_features, feature_maps):
        result[f"backbone.{stage}"] = summary(feature_map)

    model.train()
    torch.manual_seed(3)
    loss = model(pixel_values, labels=labels).loss
    loss.backward()
    result["train.loss"] = loss.item()
    parameters = dict(model.named_parameters())
    for name in GRADIENT_PARAMETERS:
        result[f"grad.{name}"] = summary(parameters[name].grad)
    return result


def assert_summary_close(actual: dict, expected: dict, key: str) -> None:
    assert actual["shape"] == expected["shape"], key
    scale = expected["abs_sum"] / max(1, torch.Size(expected["shape"]).numel())  # mean |value|
    tolerance = {"rtol": 1e-4, "atol": 1e-4 * scale + 1e-7}
    for field in ("sum", "abs_sum"):
        torch.testing.assert_close(
            actual[field], expected[field], rtol=1e-4, atol=1e-4 * expected["abs_sum"] + 1e-7, msg=f"{key} {field}"
        )
    torch.testing.assert_close(
        torch.tensor(actual["values"]), torch.tensor(expected["values"]), **tolerance, msg=lambda m: f"{key}: {m}"
    )


@pytest.mark.parametrize("config_name,size_name", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_outputs_match_the_recorded_ones(config_name, size_name):
    expected = json.loads(RECORD_FILE.read_text())[f"{config_name}/{size_name}"]
    actual = compute(config_name, size_name)
    assert sorted(actual) == sorted(expected)
    torch.testing.assert_close(actual["train.loss"], expected["train.loss"], rtol=1e-5, atol=1e-6)
    for key, value in expected.items():
        if key != "train.loss":
            assert_summary_close(actual[key], value, key)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(f"usage: {sys.argv[0]} --record   (writes {RECORD_FILE.name})")
    torch.set_num_threads(1)
    records = {f"{config}/{size}": compute(config, size) for config, size in CASES}
    lines = [
        f"  {json.dumps(case)}: {{\n"
        + ",\n".join(f"    {json.dumps(key)}: {json.dumps(value)}" for key, value in record.items())
        + "\n  }"
        for case, record in records.items()
    ]
    RECORD_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one line per tensor
    print(f"wrote {RECORD_FILE}")
