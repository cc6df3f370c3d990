# Copyright 2026 The vision-bigbird-hf authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Vision Big Bird in timm's model registry: importing this module registers `vision_bigbird_tiny`, `_small` and
`_base` (the package's presets), so that `timm.create_model(name, num_classes=..., features_only=True, ...)`, timm's
`train.py`, `validate.py` and `benchmark.py` and detection libraries that build timm backbones can use it.

The timm model holds the very modules of `VisionBigBirdForImageClassification` under the same names (`vision_bigbird`,
`classifier`), so a state dict moves between the two unchanged: `to_transformers()` / `from_transformers(model)`, or
timm's `pretrained_cfg_overlay=dict(file="run/model.safetensors")` on a folder saved by transformers.
"""

import copy

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from .configuration_vision_bigbird import VisionBigBirdConfig
from .modeling_vision_bigbird import VisionBigBirdForImageClassification


class VisionBigBirdTimm(nn.Module):
    """timm's model interface (`forward_features`, `forward_head`, `forward_intermediates`, `feature_info`, ...) on
    Vision Big Bird; keyword arguments other than timm's are `VisionBigBirdConfig` fields over the preset's (or a
    whole `config`, whose `num_labels` is then the number of classes)."""

    def __init__(
        self,
        preset: str = "tiny",
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float | None = None,
        config: VisionBigBirdConfig | None = None,
        **config_kwargs,
    ):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool={global_pool!r}: Vision Big Bird averages its tokens ('avg') or not ('')")
        if drop_path_rate is not None:
            config_kwargs["drop_path_rate"] = drop_path_rate
        if config is None:
            config = VisionBigBirdConfig.from_preset(
                preset, num_channels=in_chans, num_labels=num_classes, **config_kwargs
            )
        self.config, num_classes = config, config.num_labels
        classifier_model = VisionBigBirdForImageClassification(self.config)  # its weight initialisation, its names
        self.vision_bigbird, self.classifier = classifier_model.vision_bigbird, classifier_model.classifier
        self.num_classes, self.global_pool, self.drop_rate = num_classes, global_pool, drop_rate
        self.num_features = self.head_hidden_size = self.config.hidden_sizes[-1]
        self.head_drop = nn.Dropout(drop_rate)
        self.feature_info = [
            {"num_chs": channels, "reduction": 4 * 2**stage, "module": f"vision_bigbird.encoder.stages.{stage}"}
            for stage, channels in enumerate(self.config.hidden_sizes)
        ]

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The learned position embedding (ablation only); timm's optimizer factory also skips biases and norms."""
        return {name for name, _ in self.named_parameters() if name.endswith("position_embeddings")}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise learning-rate decay, as timm's Swin defines them."""
        stages = r"^vision_bigbird\.encoder\.stages\.(\d+)"
        blocks = [
            (stages + r"\.downsample", (0,)),  # a stage's downsampling joins its first block
            (stages + r"\.layers\.(\d+)", None),
            (r"^vision_bigbird\.layernorm", (99999,)),
        ]
        return {"stem": r"^vision_bigbird\.embeddings", "blocks": stages if coarse else blocks}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        if enable:
            self.vision_bigbird.gradient_checkpointing_enable()
        else:
            self.vision_bigbird.gradient_checkpointing_disable()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None):
        if global_pool is not None:
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the last stage's tokens after the final norm, (B, N_4, C_4)."""
        return self.vision_bigbird(pixel_values).last_hidden_state

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N_4, C_4) -> (B, num_classes), or the pooled (B, C_4) features with `pre_logits`."""
        pooled = features.mean(dim=1) if self.global_pool == "avg" else features  # (B, C_4) as pooler_output
        pooled = self.head_drop(pooled)
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixel_values))

    def forward_intermediates(
        self,
        pixel_values: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """The stage outputs `indices` (timm's convention: last n if an int, all if None) as (B, C_i, H_i, W_i) maps,
        and, unless `intermediates_only`, the final features of `forward_features`. `norm` applies the final norm to
        the last stage's map. All stages always run (`stop_early` is accepted and has no effect)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: Vision Big Bird's intermediates are NCHW maps")
        take_indices, _ = feature_take_indices(len(self.config.depths), indices)
        outputs = self.vision_bigbird(pixel_values, output_hidden_states=True)
        stage_maps = outputs.reshaped_hidden_states[1:]  # (B, C_i, H_i, W_i) per stage; index 0 is the stem
        intermediates = []
        for index in take_indices:
            feature_map = stage_maps[index]
            if norm and index == len(stage_maps) - 1:
                layernorm = self.vision_bigbird.layernorm
                feature_map = layernorm(feature_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels normed
            intermediates.append(feature_map)
        return intermediates if intermediates_only else (outputs.last_hidden_state, intermediates)

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ):
        """timm's feature wrapper asks for this; Vision Big Bird keeps every stage (nothing is pruned)."""
        take_indices, _ = feature_take_indices(len(self.config.depths), indices)
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def to_transformers(self) -> VisionBigBirdForImageClassification:
        """The same weights as a transformers `VisionBigBirdForImageClassification` (a copy)."""
        model = VisionBigBirdForImageClassification(self.config)
        model.load_state_dict(self.state_dict())
        return model

    @classmethod
    def from_transformers(cls, model: VisionBigBirdForImageClassification) -> "VisionBigBirdTimm":
        """A timm model with the weights of a transformers `VisionBigBirdForImageClassification` (a copy)."""
        timm_model = cls(config=copy.deepcopy(model.config))
        timm_model.load_state_dict(model.state_dict())
        return timm_model


def create_vision_bigbird(variant: str, pretrained: bool = False, **kwargs) -> VisionBigBirdTimm:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        VisionBigBirdTimm,
        variant,
        pretrained,
        feature_cfg={"feature_cls": "getter", "out_indices": out_indices},
        **kwargs,
    )


def default_cfg() -> dict:
    """No weights exist: `url` is empty (give `pretrained_cfg_overlay=dict(file=...)` for a trained model's file)."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,  # the package's image processor: shortest edge 256, center crop 224
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "vision_bigbird.embeddings.projection",
        "classifier": "classifier",
        "license": "apache-2.0",
    }


# The ImageNet-sized presets (the small Fashion-MNIST ones, "demo" and "study", are built with `preset=` directly)
default_cfgs = generate_default_cfgs(
    {f"vision_bigbird_{preset}": default_cfg() for preset in ("tiny", "small", "base")}
)


@register_model
def vision_bigbird_tiny(pretrained: bool = False, **kwargs) -> VisionBigBirdTimm:
    """Vision Big Bird, the tiny preset (Swin-T sized)."""
    return create_vision_bigbird("vision_bigbird_tiny", pretrained, preset="tiny", **kwargs)


@register_model
def vision_bigbird_small(pretrained: bool = False, **kwargs) -> VisionBigBirdTimm:
    """Vision Big Bird, the small preset (Swin-S sized)."""
    return create_vision_bigbird("vision_bigbird_small", pretrained, preset="small", **kwargs)


@register_model
def vision_bigbird_base(pretrained: bool = False, **kwargs) -> VisionBigBirdTimm:
    """Vision Big Bird, the base preset (Swin-B sized)."""
    return create_vision_bigbird("vision_bigbird_base", pretrained, preset="base", **kwargs)
