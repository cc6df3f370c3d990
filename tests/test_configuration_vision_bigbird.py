"""VisionBigBirdConfig: per-stage defaults follow the number of stages, and every value is validated however it
arrives (constructor, `from_pretrained` keyword arguments, config.json). transformers' ConfigTester runs in
test_modeling_vision_bigbird.py."""

import json

import pytest
from conftest import tiny_config_kwargs
from huggingface_hub.errors import StrictDataclassError
from transformers.activations import ACT2FN

from vision_bigbird_hf import PRESETS, VisionBigBirdConfig, VisionBigBirdForImageClassification

BAD_VALUES = [
    ({"drop_path_rate": 2.0}, "(?s)drop_path_rate.*greater or equal to 0 and smaller than 1, got 2.0"),
    ({"attention_probs_dropout_prob": -0.1}, "(?s)attention_probs_dropout_prob"),
    ({"global_pool_size": [0, 0, 0, 0]}, "(?s)global_pool_size.*positive"),
    ({"hidden_act": "swishy"}, "(?s)hidden_act.*one of .*'gelu'.*got swishy"),
    ({"conv_kernel_size": 4}, "(?s)conv_kernel_size.*odd"),
    ({"rswin_window_size": 0}, "(?s)rswin_window_size.*positive"),
    ({"rswin_sampling": "shuffled"}, "rswin_sampling"),
    ({"global_pool_size": [7, 7, 7, 1024]}, "(?s)global_pool_size.*at most 64"),
    ({"layer_norm_eps": -1e-5}, "(?s)layer_norm_eps.*greater than 0"),
    ({"layer_norm_eps": float("nan")}, "(?s)layer_norm_eps.*got nan"),
    ({"initializer_range": -0.02}, "(?s)initializer_range.*greater than 0"),
    ({"num_channels": -1}, "(?s)num_channels.*positive integer"),
    ({"image_size": 0}, "(?s)image_size.*positive size"),
    ({"image_size": [224, -1]}, "(?s)image_size.*positive size"),
    ({"mlp_ratio": 0.001}, r"(?s)validate_mlp_ratio.*stage1: mlp_ratio=0.001 gives .* 0 MLP hidden units"),
    ({"mlp_ratio": float("inf")}, "(?s)mlp_ratio.*smaller than inf, got inf"),
]


def test_per_stage_defaults_follow_the_number_of_stages():
    config = VisionBigBirdConfig(hidden_sizes=[32, 64, 128], depths=[1, 1, 2], num_heads=[2, 4, 8])
    assert config.global_pool_size == [7, 7, 7]
    assert len(config.conv_heads) == len(config.rswin_heads) == len(config.global_heads) == 3
    assert config.stage_names == ["stem", "stage1", "stage2", "stage3"]
    assert VisionBigBirdConfig().global_pool_size == [7, 7, 7, 7]


@pytest.mark.parametrize("overrides, message", BAD_VALUES)
def test_constructor_rejects_bad_values(overrides, message):
    with pytest.raises(StrictDataclassError, match=message):
        VisionBigBirdConfig(**tiny_config_kwargs(**overrides))


@pytest.mark.parametrize("overrides, message", BAD_VALUES)
def test_from_pretrained_keyword_arguments_are_validated(tmp_path, overrides, message):
    VisionBigBirdConfig(**tiny_config_kwargs()).save_pretrained(tmp_path)
    with pytest.raises(StrictDataclassError, match=message):
        VisionBigBirdConfig.from_pretrained(tmp_path, **overrides)
    with pytest.raises(StrictDataclassError, match=message):
        VisionBigBirdForImageClassification.from_pretrained(tmp_path, **overrides)


@pytest.mark.parametrize("overrides, message", BAD_VALUES[:3])
def test_config_json_values_are_validated(tmp_path, overrides, message):
    VisionBigBirdConfig(**tiny_config_kwargs()).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **overrides}))
    with pytest.raises(StrictDataclassError, match=message):
        VisionBigBirdConfig.from_pretrained(tmp_path)


def test_from_pretrained_keyword_arguments_meet_the_checks_across_fields(tmp_path):
    VisionBigBirdConfig(**tiny_config_kwargs()).save_pretrained(tmp_path)
    # a saved config names its backbone outputs (up to stage4), which a 3-stage model does not have
    with pytest.raises(ValueError, match=r"stage_names: \['stem', 'stage1', 'stage2', 'stage3'\] got \['stage4'\]"):
        VisionBigBirdConfig.from_pretrained(tmp_path, depths=[1, 1, 1])
    with pytest.raises(StrictDataclassError, match="stage2: head groups .* not num_heads=5"):
        VisionBigBirdForImageClassification.from_pretrained(tmp_path, num_heads=[3, 5, 3, 3])
    config, unused = VisionBigBirdConfig.from_pretrained(
        tmp_path, depths=[2, 1, 1, 1], foo=1, return_unused_kwargs=True
    )
    assert config.depths == [2, 1, 1, 1] and unused == {"foo": 1}


def test_head_split_error_says_how_to_split_again(tmp_path):
    VisionBigBirdConfig(**tiny_config_kwargs()).save_pretrained(tmp_path)
    with pytest.raises(StrictDataclassError, match="pass conv_heads, rswin_heads and global_heads as None"):
        VisionBigBirdConfig.from_pretrained(tmp_path, num_heads=[3, 6, 3, 3])
    unsplit = {"conv_heads": None, "rswin_heads": None, "global_heads": None}
    config = VisionBigBirdConfig.from_pretrained(tmp_path, num_heads=[3, 6, 3, 3], **unsplit)
    assert [sum(split) for split in zip(config.conv_heads, config.rswin_heads, config.global_heads)] == [3, 6, 3, 3]


def test_a_config_edited_after_construction_is_checked_when_a_model_is_built():
    config = VisionBigBirdConfig(**tiny_config_kwargs())
    config.depths = [1, 1, 1]  # a field assignment checks the field alone, not its agreement with the others
    with pytest.raises(StrictDataclassError, match="depths has 3 entries but hidden_sizes has 4"):
        VisionBigBirdForImageClassification(config)
    config = VisionBigBirdConfig(**tiny_config_kwargs())
    config.mlp_ratio = 0.001
    with pytest.raises(StrictDataclassError, match="0 MLP hidden units"):
        VisionBigBirdForImageClassification(config)


def test_stage_lists_must_agree():
    with pytest.raises(StrictDataclassError, match="global_pool_size has 4 entries but hidden_sizes has 3"):
        VisionBigBirdConfig(
            hidden_sizes=[32, 64, 128], depths=[1, 1, 2], num_heads=[2, 4, 8], global_pool_size=[7] * 4
        )
    with pytest.raises(StrictDataclassError, match="stage2: hidden_sizes=48 is not divisible by num_heads=5"):
        VisionBigBirdConfig(**tiny_config_kwargs(num_heads=[3, 5, 3, 3]))


def test_validators_run_once(monkeypatch):
    calls = []
    original = VisionBigBirdConfig.validate_head_groups
    monkeypatch.setattr(VisionBigBirdConfig, "validate_head_groups", lambda self: calls.append(1) or original(self))
    monkeypatch.setattr(
        VisionBigBirdConfig,
        "__class_validators__",
        [
            VisionBigBirdConfig.validate_stage_lists,
            VisionBigBirdConfig.validate_head_groups,
        ],
    )
    VisionBigBirdConfig()
    assert calls == [1]


def test_every_act2fn_name_is_accepted():
    for name in ("gelu", "relu", "silu"):
        assert name in ACT2FN
        assert VisionBigBirdConfig(hidden_act=name).hidden_act == name


# ---- Presets ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_and_holds_its_stochastic_depth(name):
    config = VisionBigBirdConfig.from_preset(name)
    assert "drop_path_rate" in PRESETS[name]
    for field, value in PRESETS[name].items():
        assert getattr(config, field) == value, field


def test_swin_sized_presets_take_swin_stochastic_depth():
    """Swin-T/S/B's MODEL.DROP_PATH_RATE on ImageNet-1k (Swin's configs/swin/*.yaml)."""
    assert {name: PRESETS[name]["drop_path_rate"] for name in ("tiny", "small", "base")} == {
        "tiny": 0.2,
        "small": 0.3,
        "base": 0.5,
    }


def test_the_default_config_is_the_tiny_architecture():
    default, tiny = VisionBigBirdConfig().to_dict(), VisionBigBirdConfig.from_preset("tiny").to_dict()
    assert {key for key in default if default[key] != tiny[key]} == {"drop_path_rate"}


def test_demo_and_study_presets_are_the_recorded_models():
    """The configs that produced model_cards/vision-bigbird-fashion-mnist and docs/results.json, as their commands
    spelled them (the tiny preset with --config_overrides), give the same models."""
    demo = {"hidden_sizes": [32, 64, 128, 256], "depths": [1, 1, 2, 1], "num_heads": [2, 2, 4, 8]}
    demo |= {"conv_heads": [1, 1, 1, 2], "rswin_heads": [1, 1, 2, 3], "global_heads": [0, 0, 1, 3]}
    demo |= {"rswin_window_size": 4, "global_pool_size": [4, 4, 2, 1], "drop_path_rate": 0.05}
    study = {"hidden_sizes": [30, 60, 120, 240], "depths": [1, 1, 2, 1], "num_heads": [3, 3, 6, 6]}
    study |= {"rswin_window_size": 4, "global_pool_size": [2, 2, 2, 2], "drop_path_rate": 0.05}
    for name, overrides in (("demo", demo), ("study", study)):
        recorded = VisionBigBirdConfig(**{**PRESETS["tiny"], **overrides}).to_dict()
        assert VisionBigBirdConfig.from_preset(name).to_dict() == recorded, name


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="'huge'.*'base', 'demo', 'small', 'study', 'tiny'"):
        VisionBigBirdConfig.from_preset("huge")
