"""VisionBigBirdBackbone: transformers' backbone and model common tests (run as in-tree backbones such as Swin and
ConvNeXt run them), the feature maps against an independent computation, and the backbone driving a UperNet
segmentation head through `backbone_config`, with classifier weights loaded the way docs/backbone.md shows."""

import socket
import unittest
from pathlib import Path

import pytest
import torch
from conftest import docs_python_block, tiny_config_kwargs
from hf_common.test_backbone_common import BackboneTesterMixin
from hf_common.test_modeling_common import ModelTesterMixin, floats_tensor
from huggingface_hub.errors import HFValidationError
from torch import nn
from transformers import AutoBackbone, UperNetConfig, UperNetForSemanticSegmentation

from vision_bigbird_hf import (
    VisionBigBirdBackbone,
    VisionBigBirdConfig,
    VisionBigBirdForImageClassification,
    VisionBigBirdModel,
)

ALL_STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]
STRIDES = {"stem": 4, "stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "backbone.md"


def tiny_backbone_config(**overrides) -> VisionBigBirdConfig:
    return VisionBigBirdConfig(**tiny_config_kwargs(**{"out_features": ALL_STAGES, **overrides}))


class VisionBigBirdBackboneTester:
    def __init__(self, parent, batch_size=2, image_size=64, num_channels=3):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        # is_training as in Swin's tester; the mixin's training tests are skipped below, the same way in-tree backbones
        # skip them, and test_enable_input_require_grads_with_gradient_checkpointing runs on the feature maps.
        self.is_training = True

    def get_config(self):
        return tiny_backbone_config(image_size=self.image_size)

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}


class VisionBigBirdBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (VisionBigBirdBackbone,)
    config_class = VisionBigBirdConfig

    def setUp(self):
        self.model_tester = VisionBigBirdBackboneTester(self)


class VisionBigBirdBackboneModelTest(ModelTesterMixin, unittest.TestCase):
    """Swin and ConvNeXt list their backbone in the ModelTesterMixin's `all_model_classes` too; the base model and the
    classifier run it in test_modeling_vision_bigbird.py, the backbone here."""

    all_model_classes = (VisionBigBirdBackbone,)
    # No token embeddings to resize: the input is pixels.
    test_resize_embeddings = False
    # Exercised by this project's own tests/test_export.py (the sdist lacks transformers' tests/exporters/).
    test_torch_exportable = False

    def setUp(self):
        self.model_tester = VisionBigBirdBackboneTester(self)

    @unittest.skip(reason="Vision Big Bird has no token embeddings and no output embeddings (a convolutional stem)")
    def test_model_get_set_embeddings(self):
        pass

    # The four training tests skip every class named in MODEL_FOR_BACKBONE_MAPPING_NAMES (in-tree backbones: a
    # backbone returns feature maps, not a loss). That mapping lists in-tree classes only, so the skip is stated here;
    # the backbone's gradients, with and without checkpointing, are checked by test_backbone_gradient_checkpointing.
    @unittest.skip(reason="A backbone has no loss; in-tree backbones are skipped inside this test by name")
    def test_training(self):
        pass

    @unittest.skip(reason="A backbone has no loss; in-tree backbones are skipped inside this test by name")
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason="A backbone has no loss; in-tree backbones are skipped inside this test by name")
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason="A backbone has no loss; in-tree backbones are skipped inside this test by name")
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    # The mixin's versions assume one attention map per layer over a fixed sequence length and token hidden states;
    # the backbone has a token count per stage and returns maps, so the same properties are checked here instead.
    def test_attention_outputs(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        batch_size, image_size = self.model_tester.batch_size, self.model_tester.image_size
        for through_config in (False, True):
            model_config = VisionBigBirdConfig.from_dict(config.to_dict())
            kwargs = {}
            if through_config:
                model_config.output_attentions = True
            else:
                kwargs["output_attentions"] = True
            model = VisionBigBirdBackbone._from_config(model_config, attn_implementation="eager").eval()
            with torch.no_grad():
                outputs = model(**inputs_dict, **kwargs)
            # one map per block: the global heads' weights, (B, global_heads, N, P) with P the pooled grid
            expected_shapes = []
            for stage, depth in enumerate(config.depths):
                grid = -(-image_size // (4 * 2**stage))
                pooled = min(config.global_pool_size[stage], grid) ** 2
                expected_shapes += [(batch_size, config.global_heads[stage], grid * grid, pooled)] * depth
            self.assertEqual([tuple(attention.shape) for attention in outputs.attentions], expected_shapes)
        with torch.no_grad():
            self.assertIsNone(VisionBigBirdBackbone(config).eval()(**inputs_dict).attentions)

    def test_hidden_states_output(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        channels = [config.hidden_sizes[0], *config.hidden_sizes]
        for through_config in (False, True):
            model_config = VisionBigBirdConfig.from_dict(config.to_dict())
            kwargs = {}
            if through_config:
                model_config.output_hidden_states = True
            else:
                kwargs["output_hidden_states"] = True
            model = VisionBigBirdBackbone(model_config).eval()
            with torch.no_grad():
                outputs = model(**inputs_dict, **kwargs)
            grids = [-(-self.model_tester.image_size // STRIDES[stage]) for stage in ALL_STAGES]
            self.assertEqual(
                [tuple(hidden_state.shape) for hidden_state in outputs.hidden_states],
                [(self.model_tester.batch_size, width, grid, grid) for width, grid in zip(channels, grids)],
            )

    # The mixin backpropagates from `outputs[0]`, a tensor for the models it targets; a backbone's first output is the
    # tuple of feature maps (in-tree backbones never meet this: the test only runs `all_model_classes[0]`, their base
    # model). Same check, from the feature maps, for every returned hidden state and attention map.
    def test_retain_grad_hidden_states_attentions(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        model = VisionBigBirdBackbone._from_config(config, attn_implementation="eager")
        outputs = model(**inputs_dict, output_hidden_states=True, output_attentions=True)
        for tensor in (*outputs.hidden_states, *outputs.attentions):
            tensor.retain_grad()
        sum(feature_map.flatten()[0] for feature_map in outputs.feature_maps).backward()
        for tensor in (*outputs.hidden_states, *outputs.attentions):
            self.assertIsNotNone(tensor.grad)


# ---- Feature maps ------------------------------------------------------------


def test_feature_maps_have_the_stage_strides_and_channels_on_odd_non_square_inputs():
    backbone = VisionBigBirdBackbone(tiny_backbone_config()).eval()
    height, width = 70, 101
    with torch.no_grad():
        feature_maps = backbone(torch.randn(2, 3, height, width)).feature_maps
    assert backbone.channels == [24, 24, 48, 72, 96]
    assert [tuple(feature_map.shape) for feature_map in feature_maps] == [
        (2, channels, -(-height // STRIDES[stage]), -(-width // STRIDES[stage]))
        for stage, channels in zip(ALL_STAGES, backbone.channels)
    ]


def test_feature_maps_are_the_base_models_stage_outputs_layer_normed():
    """Independent computation: VisionBigBirdModel with the same weights gives the stage outputs as maps; the
    backbone's feature maps are those, layer-normed over channels with each stage's own norm (as Swin's backbone)."""
    backbone = VisionBigBirdBackbone(tiny_backbone_config()).eval()
    for norm in backbone.hidden_states_norms.values():  # non-trivial affine parameters, so a missing norm shows
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    model = VisionBigBirdModel(tiny_backbone_config()).eval()
    missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
    assert missing == ["layernorm.weight", "layernorm.bias"]
    assert all(key.startswith("hidden_states_norms.") for key in unexpected)
    pixel_values = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feature_maps = backbone(pixel_values).feature_maps
        stage_maps = model(pixel_values, output_hidden_states=True).reshaped_hidden_states
    for stage, feature_map, stage_map in zip(ALL_STAGES, feature_maps, stage_maps):
        norm = backbone.hidden_states_norms[stage]
        expected = nn.functional.layer_norm(
            stage_map.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias, norm.eps
        ).permute(0, 3, 1, 2)
        torch.testing.assert_close(feature_map, expected)


def test_out_indices_select_the_same_maps_as_out_features():
    torch.manual_seed(0)
    by_features = VisionBigBirdBackbone(tiny_backbone_config(out_features=["stem", "stage3"])).eval()
    by_indices = VisionBigBirdBackbone(tiny_backbone_config(out_features=None, out_indices=[0, 3])).eval()
    by_indices.load_state_dict(by_features.state_dict())
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for left, right in zip(by_features(pixel_values).feature_maps, by_indices(pixel_values).feature_maps):
            torch.testing.assert_close(left, right)
    assert by_indices.out_features == ["stem", "stage3"] and by_indices.channels == [24, 72]


def test_backbone_gradient_checkpointing():
    """Every parameter gets a gradient from the feature maps, and checkpointing gives the same ones."""
    backbone = VisionBigBirdBackbone(tiny_backbone_config()).train()
    pixel_values = torch.randn(2, 3, 64, 64)

    def gradients():
        backbone.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # same RS-Win windows in both runs
        sum(feature_map.square().mean() for feature_map in backbone(pixel_values).feature_maps).backward()
        return {name: parameter.grad.clone() for name, parameter in backbone.named_parameters()}

    plain = gradients()
    assert set(plain) == {name for name, _ in backbone.named_parameters()}
    backbone.activation_checkpointing_enable()
    checkpointed = gradients()
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, msg=name)


def test_documented_offline_path_never_touches_the_network(tmp_path, monkeypatch):
    """docs/backbone.md: `VisionBigBirdBackbone.from_pretrained(folder)` needs no network (whatever HF_HUB_OFFLINE
    says), while transformers 5.24's `AutoBackbone.from_pretrained(folder)` rejects a path as a Hub repo id."""
    VisionBigBirdBackbone(tiny_backbone_config()).save_pretrained(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    backbone = VisionBigBirdBackbone.from_pretrained(tmp_path, out_features=["stage2", "stage4"])
    assert backbone.channels == [48, 96]
    with pytest.raises(HFValidationError):
        AutoBackbone.from_pretrained(str(tmp_path))


def test_auto_backbone_from_config_builds_the_backbone():
    backbone = AutoBackbone.from_config(tiny_backbone_config(out_features=["stage2", "stage4"]))
    assert type(backbone) is VisionBigBirdBackbone
    assert backbone.channels == [48, 96]


# ---- Dense prediction head through backbone_config -------------------------------


def tiny_upernet_config(backbone_config: VisionBigBirdConfig, num_labels: int = 3) -> UperNetConfig:
    return UperNetConfig(
        backbone_config=backbone_config,
        num_labels=num_labels,
        hidden_size=32,
        auxiliary_channels=16,
        pool_scales=[1, 2, 3],
    )


def test_upernet_trains_on_a_small_segmentation_batch():
    torch.manual_seed(0)
    backbone_config = tiny_backbone_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    model = UperNetForSemanticSegmentation(tiny_upernet_config(backbone_config)).train()
    assert type(model.backbone) is VisionBigBirdBackbone
    assert model.backbone.channels == [24, 48, 72, 96]

    # Two images of 16x16-pixel blocks, each block of one of 3 classes painted in its class colour, plus noise.
    labels = torch.randint(0, 3, (2, 4, 4)).repeat_interleave(16, dim=1).repeat_interleave(16, dim=2)  # (B, 64, 64)
    colours = nn.functional.one_hot(labels, num_classes=3).permute(0, 3, 1, 2).float() * 2 - 1  # (B, 3, 64, 64)
    pixel_values = colours + 0.1 * torch.randn_like(colours)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        outputs = model(pixel_values, labels=labels)
        optimizer.zero_grad()
        outputs.loss.backward()
        optimizer.step()
        losses.append(outputs.loss.item())
    assert outputs.logits.shape == (2, 3, 64, 64)
    assert all(parameter.grad is not None for parameter in model.backbone.parameters())
    assert losses[-1] < 0.8 * losses[0], losses


def test_upernet_with_the_backbone_saves_and_reloads(tmp_path):
    backbone_config = tiny_backbone_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    model = UperNetForSemanticSegmentation(tiny_upernet_config(backbone_config)).eval()
    model.save_pretrained(tmp_path)
    reloaded = UperNetForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert type(reloaded.backbone.config) is VisionBigBirdConfig
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)


def test_docs_snippet_puts_classifier_weights_into_the_upernet_backbone(tmp_path):
    """Runs docs/backbone.md's snippet on a classifier folder as scripts/train_image_classification.py writes it (model
    + processor), and compares every stem and encoder tensor with the classifier's."""
    classifier = VisionBigBirdForImageClassification(VisionBigBirdConfig(**tiny_config_kwargs(num_labels=10)))
    classifier.save_pretrained(tmp_path / "classifier")
    snippet = docs_python_block("snippet: backbone-weights")
    snippet = snippet.replace("runs/demo-fashion-mnist", str(tmp_path / "classifier"))
    namespace = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)  # noqa: S102 (the docs snippet, run as a reader would)
    model = namespace["model"]
    assert isinstance(model, UperNetForSemanticSegmentation)

    trained = {
        name.removeprefix("vision_bigbird."): tensor
        for name, tensor in classifier.state_dict().items()
        if name.startswith(("vision_bigbird.embeddings.", "vision_bigbird.encoder."))
    }
    loaded = model.backbone.state_dict()
    assert len(trained) > 50
    for name, tensor in trained.items():
        assert torch.equal(loaded[name], tensor), name
    # the classifier has no per-stage output norms: the backbone's are new, exactly as for Swin's backbone
    assert {name for name in loaded if name not in trained} == {
        f"hidden_states_norms.{stage}.{parameter}" for stage in ALL_STAGES[1:] for parameter in ("weight", "bias")
    }
