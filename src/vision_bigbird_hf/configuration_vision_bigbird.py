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
"""Vision Big Bird model configuration (Zhang & Gong, arXiv 2311.05988)."""

import dataclasses
import math
from typing import Literal

from huggingface_hub.dataclasses import strict, validated_field
from transformers.backbone_utils import BackboneConfigMixin
from transformers.configuration_utils import PreTrainedConfig
from transformers.utils.type_validators import activation_fn_key, interval, positive_int_field, probability

# Every per-size value of each named model, as timm keeps one kwargs dict per variant; `from_preset(name, **overrides)`
# builds one, and the training scripts take `--model_preset <name>`. Heads are split evenly over the three groups
# unless a preset says otherwise.
PRESETS = {
    # Swin-T/S/B geometry and stochastic depth (Swin's MODEL.DROP_PATH_RATE 0.2/0.3/0.5 for ImageNet-1k)
    "tiny": {
        "hidden_sizes": [96, 192, 384, 768],
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "drop_path_rate": 0.2,
    },
    "small": {
        "hidden_sizes": [96, 192, 384, 768],
        "depths": [2, 2, 18, 2],
        "num_heads": [3, 6, 12, 24],
        "drop_path_rate": 0.3,
    },
    "base": {
        "hidden_sizes": [128, 256, 512, 1024],
        "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32],
        "drop_path_rate": 0.5,
    },
    # The Fashion-MNIST demo model (scripts/demo.py, model_cards/vision-bigbird-fashion-mnist): 32x32 inputs, a
    # 2-core CPU, every head group present in every stage
    "demo": {
        "hidden_sizes": [32, 64, 128, 256],
        "depths": [1, 1, 2, 1],
        "num_heads": [2, 2, 4, 8],
        "conv_heads": [1, 1, 1, 2],
        "rswin_heads": [1, 1, 2, 3],
        "global_heads": [0, 0, 1, 3],
        "rswin_window_size": 4,
        "global_pool_size": [4, 4, 2, 1],
        "drop_path_rate": 0.05,
    },
    # The Vision Big Bird of the Fashion-MNIST study (scripts/study_models.py, docs/results.md): the peers' parameter
    # count and token grid at 32x32
    "study": {
        "hidden_sizes": [30, 60, 120, 240],
        "depths": [1, 1, 2, 1],
        "num_heads": [3, 3, 6, 6],
        "rswin_window_size": 4,
        "global_pool_size": [2, 2, 2, 2],
        "drop_path_rate": 0.05,
    },
}

# The global heads attend to a fixed pool_size x pool_size grid on every map (static shapes for export), so each token
# costs pool_size**2 whatever the map's size; the paper uses 7, and 64 (4096 pooled tokens) covers a 256x256 stage-1
# map of a 1024-pixel input.
MAX_GLOBAL_POOL_SIZE = 64

# Field validators (transformers' `type_validators` where one fits): `@strict` runs them on every assignment, so a value
# is checked however it arrives (constructor, `from_pretrained(folder, drop_path_rate=2.0)`, config.json, a later
# `config.x = ...`). Checks across fields are the `validate_*` methods, which `@strict` runs once after construction,
# transformers again before saving, and every model again when it is built (a config edited after construction,
# `config.depths = [1, 1, 1]`, is checked then).


def check_pool_sizes(values):
    if values is not None and any(not 0 < value <= MAX_GLOBAL_POOL_SIZE for value in values):
        raise ValueError(
            f"{list(values)} must hold one positive value per stage, at most {MAX_GLOBAL_POOL_SIZE}: the global heads "
            "attend to pool_size**2 pooled tokens on any map (the paper uses 7)"
        )


def check_image_size(value):
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(sizes) not in (1, 2) or any(size <= 0 for size in sizes):
        raise ValueError(f"{value} must be a positive size, or a pair (height, width) of them")


def check_odd_positive(value):
    if value <= 0 or value % 2 == 0:
        raise ValueError(f"{value} must be a positive odd number")


def split_heads_evenly(num_heads: int) -> tuple[int, int, int]:
    """Split `num_heads` into (conv, rswin, global) counts as evenly as possible; leftovers go to RS-Win, then global."""
    share, leftover = divmod(num_heads, 3)
    return share, share + (leftover >= 1), share + (leftover >= 2)


@strict
class VisionBigBirdConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a Vision Big Bird model: a four-stage hierarchical vision transformer whose heads in every block
    are split into depthwise-conv heads, random-window (RS-Win) heads and average-pooled global heads. The default
    values give the tiny model's architecture (Swin-T sized); `VisionBigBirdConfig.from_preset(name)` gives a named
    model of `PRESETS` with every per-size value, stochastic depth included: `"tiny"`, `"small"`, `"base"` (Swin-T/S/B
    sized), `"demo"` and `"study"` (the small Fashion-MNIST models of the demo and the study; see docs/presets.md).

    Args:
        image_size (`int` or `tuple[int, int]`, *optional*, defaults to 224):
            Nominal input size, used only to size the optional absolute position embedding. The model runs at any
            input size of at least 32x32 pixels.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input channels.
        hidden_sizes (`list[int]`, *optional*, defaults to `[96, 192, 384, 768]`):
            Channels of each stage. The stem has stride 4; each later stage halves the resolution with a strided
            3x3 convolution.
        depths (`list[int]`, *optional*, defaults to `[2, 2, 6, 2]`):
            Number of blocks in each stage.
        num_heads (`list[int]`, *optional*, defaults to `[3, 6, 12, 24]`):
            Heads per block in each stage; `hidden_sizes[i]` must be divisible by `num_heads[i]`.
        conv_heads (`list[int]`, *optional*):
            Heads of group 1 (depthwise convolution) per stage. Defaults to an even split of `num_heads`.
        rswin_heads (`list[int]`, *optional*):
            Heads of group 2 (random-sampling windows) per stage. Defaults to an even split of `num_heads`.
        global_heads (`list[int]`, *optional*):
            Heads of group 3 (average-pooled global attention) per stage. Defaults to an even split of `num_heads`.
            In every stage `conv_heads + rswin_heads + global_heads == num_heads`; any group may have zero heads,
            but not all three.
        rswin_window_size (`int`, *optional*, defaults to 7):
            RS-Win windows hold `rswin_window_size**2` tokens (fewer when a map has fewer tokens; when the token
            count is not a multiple, windows differ in size by at most one token).
        rswin_sampling (`str`, *optional*, defaults to `"random"`):
            `"random"`: tokens are gathered into windows by a uniform random permutation (the paper's RS-Win).
            `"grid"`: fixed square windows of the feature map (a non-random ablation).
        rswin_seed (`int`, *optional*, defaults to 0):
            Seed of the fixed permutation used in eval mode (one per layer and token grid), so inference is
            deterministic.
        rswin_sample_in_eval (`bool`, *optional*, defaults to `False`):
            Keep drawing a new random permutation at every forward pass in eval mode too.
        global_pool_size (`list[int]`, *optional*):
            Keys and values of the global heads are average-pooled to a grid of this size per stage (capped at the
            feature map's own size). Defaults to 7 in every stage; at most 64, since each token attends to
            `global_pool_size**2` pooled tokens on any map.
        conv_kernel_size (`int`, *optional*, defaults to 3):
            Kernel size of the conv heads' depthwise convolution (odd).
        mlp_ratio (`float`, *optional*, defaults to 4.0):
            Ratio of the MLP hidden size to the block's channels (at least one hidden unit in every stage).
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLP, a key of transformers' `ACT2FN`.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the embeddings, the attention output projection and the MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        drop_path_rate (`float`, *optional*, defaults to 0.1):
            Stochastic depth rate, increased linearly over the blocks, in [0, 1). Each preset sets its own (0.2, 0.3
            and 0.5 for tiny, small and base, as Swin-T/S/B on ImageNet-1k).
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias in the query/key/value projections.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the layer norms (positive, finite).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initializer of linear layers (positive, finite).
        use_absolute_embeddings (`bool`, *optional*, defaults to `False`):
            Add a learned absolute position embedding after the stem (off by default: the paper finds it
            unnecessary). It is interpolated to the input's token grid.
        out_features (`list[str]`, *optional*):
            Backbone outputs, from `"stem"`, `"stage1"`, ... `"stage4"`.
        out_indices (`list[int]`, *optional*):
            Backbone outputs as indices into `stage_names`.

    Example:

    ```python
    >>> from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdModel

    >>> config = VisionBigBirdConfig()  # tiny architecture
    >>> small = VisionBigBirdConfig.from_preset("small", num_labels=10)  # drop_path_rate=0.3
    >>> model = VisionBigBirdModel(config)
    ```"""

    model_type = "vision_bigbird"
    attribute_map = {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers"}

    image_size: int | list[int] | tuple[int, int] = validated_field(check_image_size, default=224)
    num_channels: int = positive_int_field(default=3)
    hidden_sizes: list[int] | tuple[int, ...] = (96, 192, 384, 768)
    depths: list[int] | tuple[int, ...] = (2, 2, 6, 2)
    num_heads: list[int] | tuple[int, ...] = (3, 6, 12, 24)
    conv_heads: list[int] | tuple[int, ...] | None = None
    rswin_heads: list[int] | tuple[int, ...] | None = None
    global_heads: list[int] | tuple[int, ...] | None = None
    rswin_window_size: int = positive_int_field(default=7)
    rswin_sampling: Literal["random", "grid"] = "random"
    rswin_seed: int = 0
    rswin_sample_in_eval: bool = False
    global_pool_size: list[int] | tuple[int, ...] | None = validated_field(check_pool_sizes, default=None)
    conv_kernel_size: int = validated_field(check_odd_positive, default=3)
    mlp_ratio: float | int = interval(min=0, max=math.inf, exclude_min=True, exclude_max=True)(default=4.0)
    hidden_act: str = activation_fn_key(default="gelu")
    hidden_dropout_prob: float | int = probability(default=0.0)
    attention_probs_dropout_prob: float | int = probability(default=0.0)
    # below 1: drop path divides the kept branches by the keep probability, 1 - drop_path_rate
    drop_path_rate: float | int = interval(min=0, max=1, exclude_max=True)(default=0.1)
    qkv_bias: bool = True
    layer_norm_eps: float = interval(min=0, max=math.inf, exclude_min=True, exclude_max=True)(default=1e-5)
    initializer_range: float = interval(min=0, max=math.inf, exclude_min=True, exclude_max=True)(default=0.02)
    use_absolute_embeddings: bool = False
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        self.hidden_sizes = list(self.hidden_sizes)
        self.depths = list(self.depths)
        self.num_heads = list(self.num_heads)
        # per-stage defaults follow the number of stages
        self.global_pool_size = (
            [7] * len(self.depths) if self.global_pool_size is None else list(self.global_pool_size)
        )
        even_splits = [split_heads_evenly(heads) for heads in self.num_heads]
        for group_index, group in enumerate(("conv_heads", "rswin_heads", "global_heads")):
            value = getattr(self, group)
            setattr(self, group, [split[group_index] for split in even_splits] if value is None else list(value))
        self.num_layers = len(self.depths)
        self.hidden_size = self.hidden_sizes[-1] if self.hidden_sizes else None  # validate_stage_lists reports []
        self.stage_names = ["stem"] + [f"stage{idx}" for idx in range(1, len(self.depths) + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "VisionBigBirdConfig":
        """`PreTrainedConfig.from_dict`, except that keyword arguments naming fields (`from_pretrained(folder,
        depths=[...])`) are constructor arguments: transformers 5.24 builds the config from the saved dict and then
        sets such keyword arguments one by one, past the checks across fields and without re-deriving the per-stage
        defaults (a new `num_heads` would keep the saved head split)."""
        field_names = {field.name for field in dataclasses.fields(cls)}
        overrides = {name: kwargs.pop(name) for name in list(kwargs) if name in field_names}
        return super().from_dict({**config_dict, **overrides}, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "VisionBigBirdConfig":
        """The named model `PRESETS[name]` (`"tiny"`, `"small"`, `"base"`, `"demo"`, `"study"`); keyword arguments
        override its fields."""
        if name not in PRESETS:
            raise ValueError(f"Unknown Vision Big Bird preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **kwargs})

    def validate_stage_lists(self):
        num_stages = len(self.hidden_sizes)
        if num_stages == 0:
            raise ValueError("hidden_sizes is empty: a Vision Big Bird needs at least one stage")
        for name in ("depths", "num_heads", "conv_heads", "rswin_heads", "global_heads", "global_pool_size"):
            values = getattr(self, name)
            if len(values) != num_stages:
                raise ValueError(
                    f"{name} has {len(values)} entries but hidden_sizes has {num_stages}: give one value per stage"
                )
        for stage, (channels, depth, heads) in enumerate(zip(self.hidden_sizes, self.depths, self.num_heads), 1):
            if channels <= 0 or depth <= 0 or heads <= 0:
                raise ValueError(
                    f"stage{stage}: hidden_sizes={channels}, depths={depth}, num_heads={heads} must all be positive"
                )
            if channels % heads != 0:
                raise ValueError(
                    f"stage{stage}: hidden_sizes={channels} is not divisible by num_heads={heads}; "
                    "pick a head count that divides the channels"
                )

    def validate_head_groups(self):
        splits = zip(self.num_heads, self.conv_heads, self.rswin_heads, self.global_heads)
        for stage, (total, conv, rswin, global_) in enumerate(splits, start=1):
            split = (conv, rswin, global_)
            if min(split) < 0:
                raise ValueError(f"stage{stage}: head groups (conv, rswin, global)={split} must not be negative")
            if sum(split) != total:
                raise ValueError(
                    f"stage{stage}: head groups (conv, rswin, global)={split} add up to {sum(split)}, "
                    f"not num_heads={total}; pass conv_heads, rswin_heads and global_heads as None to split "
                    "num_heads evenly again"
                )

    def validate_mlp_ratio(self):
        for stage, channels in enumerate(self.hidden_sizes, start=1):
            if int(channels * self.mlp_ratio) < 1:
                raise ValueError(
                    f"stage{stage}: mlp_ratio={self.mlp_ratio} gives int({channels} * {self.mlp_ratio}) = 0 MLP "
                    f"hidden units; use at least 1/{channels}"
                )


__all__ = ["PRESETS", "VisionBigBirdConfig"]
