"""Vision Big Bird against transformers' own common model tests (ModelTesterMixin, ConfigTester), the way an
in-tree model (Swin, PVTv2) runs them, plus the model-level behaviours of the core issue."""

import unittest
from unittest import mock

import torch
from conftest import tiny_config_kwargs
from hf_common.test_configuration_common import ConfigTester
from hf_common.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor

from vision_bigbird_hf import (
    VisionBigBirdConfig,
    VisionBigBirdForImageClassification,
    VisionBigBirdForMaskedImageModeling,
    VisionBigBirdModel,
)


class VisionBigBirdModelTester:
    def __init__(self, parent, batch_size=2, image_size=64, num_channels=3, is_training=True, use_labels=True):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.is_training = is_training
        self.use_labels = use_labels
        self.config_kwargs = tiny_config_kwargs(image_size=image_size, hidden_dropout_prob=0.1)
        self.hidden_sizes = self.config_kwargs["hidden_sizes"]
        self.depths = self.config_kwargs["depths"]
        self.num_labels = self.config_kwargs["num_labels"]
        # masked image modeling: the common mixin masks the first num_masks of the mask_length stem tokens
        self.mask_length = (image_size // 4) ** 2
        self.num_masks = self.mask_length // 2

    def get_config(self):
        return VisionBigBirdConfig(**self.config_kwargs)

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels) if self.use_labels else None
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def create_and_check_model(self, config, pixel_values, labels):
        model = VisionBigBirdModel(config).eval()
        result = model(pixel_values)
        grid = -(-self.image_size // 32)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, grid * grid, self.hidden_sizes[-1]))
        self.parent.assertEqual(result.pooler_output.shape, (self.batch_size, self.hidden_sizes[-1]))

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = VisionBigBirdForImageClassification(config).eval()
        result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))
        self.parent.assertTrue(torch.isfinite(result.loss))


class VisionBigBirdModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (VisionBigBirdModel, VisionBigBirdForImageClassification, VisionBigBirdForMaskedImageModeling)
    # No token embeddings to resize: the input is pixels.
    test_resize_embeddings = False
    # Exercised by this project's own tests/test_export.py (the sdist lacks transformers' tests/exporters/).
    test_torch_exportable = False

    def setUp(self):
        self.model_tester = VisionBigBirdModelTester(self)
        config_kwargs = {key: value for key, value in tiny_config_kwargs().items() if key != "num_labels"}
        self.config_tester = ConfigTester(
            self, config_class=VisionBigBirdConfig, has_text_modality=False, **config_kwargs
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # The common mixin only adds labels for in-tree classes (its MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES);
        # registering with AutoModelForImageClassification does not add this out-of-tree class there.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and model_class is VisionBigBirdForImageClassification:
            inputs_dict["labels"] = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    @unittest.skip(reason="Vision Big Bird takes pixel_values, not inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="Vision Big Bird takes pixel_values, not inputs_embeds")
    def test_inputs_embeds_matches_input_ids(self):
        pass

    @unittest.skip(reason="Vision Big Bird has no token embeddings and no output embeddings (a convolutional stem)")
    def test_model_get_set_embeddings(self):
        pass

    # The base model returns no loss. In-tree models are left out of the training tests through
    # MODEL_MAPPING_NAMES, which lists in-tree classes only; here the same is done by naming the head class.
    def test_training(self):
        with mock.patch.object(self, "all_model_classes", (VisionBigBirdForImageClassification,)):
            super().test_training()

    def test_training_gradient_checkpointing(self):
        with mock.patch.object(self, "all_model_classes", (VisionBigBirdForImageClassification,)):
            super().test_training_gradient_checkpointing()

    def test_training_gradient_checkpointing_use_reentrant_false(self):
        with mock.patch.object(self, "all_model_classes", (VisionBigBirdForImageClassification,)):
            super().test_training_gradient_checkpointing_use_reentrant_false()

    def test_training_gradient_checkpointing_use_reentrant_true(self):
        with mock.patch.object(self, "all_model_classes", (VisionBigBirdForImageClassification,)):
            super().test_training_gradient_checkpointing_use_reentrant_true()

    # The mixin's versions assume one attention map per layer over a fixed sequence length; this model has two
    # attention groups with their own shapes and a token count per stage, so they are checked here instead.
    def test_attention_outputs(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        config._attn_implementation = "eager"
        image_size = self.model_tester.image_size
        grids = [-(-image_size // stride) for stride in (4, 8, 16, 32)]
        for model_class in self.all_model_classes:
            for through_config in (False, True):
                model_config = VisionBigBirdConfig.from_dict(config.to_dict())
                model_config._attn_implementation = "eager"
                kwargs = {}
                if through_config:
                    model_config.output_attentions = True
                else:
                    kwargs["output_attentions"] = True
                model = model_class(model_config).eval()
                with torch.no_grad():
                    outputs = model(**inputs_dict, **kwargs)
                num_blocks = sum(config.depths)
                self.assertEqual(len(outputs.attentions), num_blocks)
                self.assertEqual(len(outputs.rswin_attentions), num_blocks)
                block = 0
                for stage, depth in enumerate(config.depths):
                    tokens = grids[stage] ** 2
                    pooled = min(config.global_pool_size[stage], grids[stage]) ** 2
                    window = min(config.rswin_window_size**2, tokens)
                    for _ in range(depth):
                        global_weights = outputs.attentions[block]
                        rswin_weights = outputs.rswin_attentions[block]
                        self.assertEqual(
                            global_weights.shape,
                            (self.model_tester.batch_size, config.global_heads[stage], tokens, pooled),
                        )
                        self.assertEqual(
                            rswin_weights.shape[:3], (self.model_tester.batch_size, config.rswin_heads[stage], tokens)
                        )
                        self.assertLessEqual(rswin_weights.shape[3], window)
                        # every row is a probability distribution
                        torch.testing.assert_close(global_weights.sum(-1), torch.ones_like(global_weights.sum(-1)))
                        torch.testing.assert_close(rswin_weights.sum(-1), torch.ones_like(rswin_weights.sum(-1)))
                        block += 1
                without = model_class(VisionBigBirdConfig.from_dict(config.to_dict())).eval()
                with torch.no_grad():
                    self.assertIsNone(without(**inputs_dict).attentions)

    def test_hidden_states_output(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        image_size = self.model_tester.image_size
        strides = (4, 4, 8, 16, 32)
        channels = [config.hidden_sizes[0], *config.hidden_sizes]
        for model_class in self.all_model_classes:
            for through_config in (False, True):
                model_config = VisionBigBirdConfig.from_dict(config.to_dict())
                kwargs = {}
                if through_config:
                    model_config.output_hidden_states = True
                else:
                    kwargs["output_hidden_states"] = True
                model = model_class(model_config).eval()
                with torch.no_grad():
                    outputs = model(**inputs_dict, **kwargs)
                self.assertEqual(len(outputs.hidden_states), len(config.depths) + 1)
                self.assertEqual(len(outputs.reshaped_hidden_states), len(config.depths) + 1)
                for hidden, reshaped, stride, width in zip(
                    outputs.hidden_states, outputs.reshaped_hidden_states, strides, channels
                ):
                    grid = -(-image_size // stride)
                    self.assertEqual(hidden.shape, (self.model_tester.batch_size, grid * grid, width))
                    self.assertEqual(reshaped.shape, (self.model_tester.batch_size, width, grid, grid))
                    # the map is the token sequence in raster order
                    torch.testing.assert_close(reshaped.flatten(2).transpose(1, 2), hidden)
