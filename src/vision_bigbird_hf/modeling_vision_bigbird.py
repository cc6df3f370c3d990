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
"""PyTorch Vision Big Bird (Zhang & Gong, "Vision Big Bird: Random Sparsification for Full Attention", arXiv 2311.05988).

A four-stage hierarchical vision transformer. Every block splits its heads into three groups that see the same
normalised input and are concatenated before one output projection:

1. conv heads: a depthwise convolution over the feature map (local features, positional information);
2. RS-Win heads: tokens are gathered into windows by a uniform random permutation of positions, and softmax
   attention runs inside each window (a new permutation at every training step, a fixed seeded one in eval);
3. global heads: every query attends to keys/values average-pooled to a small fixed grid.

All three cost O(N) in the number of tokens, and no position embedding is needed (an optional learned one exists
for the ablation), so the model runs at any input size of at least 32x32 pixels.

Classes, in file order: VisionBigBirdEmbeddings, VisionBigBirdDownsample, VisionBigBirdConvHeads,
VisionBigBirdRSWinHeads, VisionBigBirdGlobalHeads, VisionBigBirdMixedAttention, VisionBigBirdMLP, VisionBigBirdLayer,
VisionBigBirdStage, VisionBigBirdPreTrainedModel, VisionBigBirdEncoder, VisionBigBirdModel,
VisionBigBirdForImageClassification, VisionBigBirdBackbone, VisionBigBirdForMaskedImageModeling.

Memory format is the caller's choice, as in timm and torchvision: weights are stored contiguous, and
`model.to(memory_format=torch.channels_last)` stores the convolution weights channels-last, which suits the
channels-last feature maps the blocks pass to their convolutions (views of the (B, N, C) tokens) and saves oneDNN a
weight reorder per call on CPU. Outputs are the same either way.

Shape legend: B batch, H/W height/width of a stage's token grid, N = H*W tokens, C channels, h heads, d head dim,
nW windows, w tokens per window, P pooled tokens.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.pytorch_utils import compile_compatible_method_lru_cache
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_vision_bigbird import VisionBigBirdConfig

MIN_INPUT_SIZE = 32  # pixels; the stage-4 token grid is then 1x1


# ---- Outputs ---------------------------------------------------------------


@dataclass
class VisionBigBirdEncoderOutput(ModelOutput):
    """
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
        Output of the last stage, before the final layer norm.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        The stem output, then each stage's output, each `(batch_size, num_tokens_of_stage, channels_of_stage)`.
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        Global heads' weights, one per block with global heads: `(batch_size, global_heads, num_tokens,
        global_pool_size**2)`, the weight each token gives to each average-pooled key (pooled grid in raster order).
    rswin_attentions (`tuple(torch.FloatTensor)`, *optional*):
        RS-Win heads' weights, one per block with RS-Win heads: `(batch_size, rswin_heads, num_tokens,
        window_tokens)`, the weight each token gives to each member of its window (in window order; windows one
        token shorter than the longest have a zero last column).
    reshaped_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        The same tensors as `hidden_states` as feature maps `(batch_size, channels_of_stage, height, width)`.
    grids (`tuple(tuple(int, int))`):
        The token grid `(height, width)` of the stem and of each stage, in the order of `hidden_states`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    rswin_attentions: tuple[torch.FloatTensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    grids: tuple[tuple[int, int], ...] | None = None


@dataclass
class VisionBigBirdModelOutput(ModelOutput):
    """
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
        Layer-normed output of the last stage; `num_tokens = ceil(H/32) * ceil(W/32)` in raster order.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Average of `last_hidden_state` over tokens.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
        Five tensors: the stem output (stride 4) and the output of stages 1-4 (strides 4, 8, 16, 32), each
        `(batch_size, num_tokens_of_stage, channels_of_stage)`.
    attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
        Global heads' weights, one tensor per block with global heads: `(batch_size, global_heads, num_tokens,
        global_pool_size**2)`; entry `[b, h, n, p]` is the weight token `n` gives to pooled cell `p` (raster order of
        the `global_pool_size` grid; on a stage map smaller than the grid, the cells outside the
        min(pool, H) x min(pool, W) pooled grid have weight 0). The only attention with global reach.
    rswin_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
        RS-Win heads' weights, one tensor per block with RS-Win heads: `(batch_size, rswin_heads, num_tokens,
        window_tokens)`; entry `[b, h, n, j]` is the weight token `n` gives to the `j`-th member of its random
        window (windows one token shorter than the longest have a zero last column). Conv heads have no weights.
    reshaped_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
        The same five tensors as `hidden_states` as feature maps `(batch_size, channels, height, width)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    rswin_attentions: tuple[torch.FloatTensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class VisionBigBirdImageClassifierOutput(ModelOutput):
    """
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `labels` is provided):
        Classification (or regression if `config.num_labels == 1`) loss.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Classification scores before softmax.
    hidden_states, attentions, rswin_attentions, reshaped_hidden_states:
        As in [`VisionBigBirdModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    rswin_attentions: tuple[torch.FloatTensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class VisionBigBirdMaskedImageModelingOutput(ModelOutput):
    """
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `bool_masked_pos` is provided):
        Mean L1 reconstruction error over the masked pixels (SimMIM).
    reconstruction (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
        The predicted pixels (compare them with the normalized `pixel_values`).
    hidden_states, attentions, rswin_attentions, reshaped_hidden_states:
        As in [`VisionBigBirdModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    rswin_attentions: tuple[torch.FloatTensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.FloatTensor, ...] | None = None


def tokens_to_feature_map(hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, N, C) tokens in raster order -> (B, C, H, W) feature map. A channels-last view, not a copy: convolutions
    and pooling then run in channels-last layout and `feature_map_to_tokens` undoes it for free."""
    return hidden_states.unflatten(1, (height, width)).permute(0, 3, 1, 2)


def feature_map_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature map -> (B, N, C) tokens in raster order (a view when the map is channels-last)."""
    return feature_map.permute(0, 2, 3, 1).flatten(1, 2)


def built_once(maxsize: int) -> Callable:
    """Cache a function that builds constant tensors from ints, a device and a dtype (a window order, a layout, a
    pooling matrix, a key mask), as transformers caches its own: `compile_compatible_method_lru_cache` steps aside
    under torch.compile and torch.export, which trace the function into the graph instead. The tensors are built
    outside inference mode, so a forward with autograd can reuse those a `torch.inference_mode()` forward built
    (autograd cannot save inference tensors for backward). Callers never modify what they get."""

    def decorator(function: Callable) -> Callable:
        @compile_compatible_method_lru_cache(maxsize=maxsize)
        @functools.wraps(function)
        def build(*args):
            with torch.inference_mode(False):
                return function(*args)

        return build

    return decorator


# ---- Stem and downsampling -------------------------------------------------


class VisionBigBirdEmbeddings(nn.Module):
    """Overlapping convolutional stem (7x7, stride 4) + layer norm, with an optional learned absolute position
    embedding (off by default: paper Sec. 4 finds position embeddings unnecessary) and, for masked image modeling, a
    learned mask token that replaces the masked tokens."""

    def __init__(self, config: VisionBigBirdConfig, use_mask_token: bool = False):
        super().__init__()
        config.validate()  # the checks across fields again, for a config edited after construction (every model)
        self.num_channels = config.num_channels
        embed_dim = config.hidden_sizes[0]
        self.projection = nn.Conv2d(config.num_channels, embed_dim, kernel_size=7, stride=4, padding=3)
        self.norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        # CODEPATH: the released presets and the Fashion-MNIST demo have no position embedding; only the paper's
        # position-embedding ablation (use_absolute_embeddings=True) builds one.
        if config.use_absolute_embeddings:
            # CODEPATH: image_size is an int in every released config; a (height, width) pair is for non-square use.
            image_size = config.image_size if isinstance(config.image_size, (list, tuple)) else [config.image_size] * 2
            grid = (math.ceil(image_size[0] / 4), math.ceil(image_size[1] / 4))
            self.position_embeddings = nn.Parameter(torch.zeros(1, embed_dim, *grid))
        else:
            self.position_embeddings = None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must have shape (batch_size, num_channels, height, width), got {tuple(pixel_values.shape)}"
            )
        batch_size, num_channels, height, width = pixel_values.shape
        if batch_size == 0:
            raise ValueError("pixel_values holds no images (batch size 0); pass at least one image")
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"pixel_values has dtype {pixel_values.dtype}; the model takes normalized floating-point pixels: "
                "prepare images with the image processor (VisionBigBirdImageProcessor / AutoImageProcessor)"
            )
        if num_channels != self.num_channels:
            raise ValueError(
                f"pixel_values has {num_channels} channels but the configuration expects num_channels="
                f"{self.num_channels}; convert the images (e.g. to RGB) or set num_channels"
            )
        if height < MIN_INPUT_SIZE or width < MIN_INPUT_SIZE:
            raise ValueError(
                f"pixel_values is {height}x{width} pixels; Vision Big Bird needs at least "
                f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} (four stages down to stride 32)"
            )

    def forward(
        self, pixel_values: torch.Tensor, bool_masked_pos: torch.BoolTensor | None = None
    ) -> tuple[torch.Tensor, int, int]:
        """pixel_values: (B, C_in, H_in, W_in) -> hidden_states (B, N, C) with H = ceil(H_in/4), W = ceil(W_in/4);
        the tokens where `bool_masked_pos` (B, N) is True become the mask token."""
        self.check_pixel_values(pixel_values)
        pixel_values = pixel_values.to(self.projection.weight.dtype, memory_format=torch.channels_last)
        feature_map = self.projection(pixel_values)  # (B, C, H, W) channels-last
        _, _, height, width = feature_map.shape
        if self.position_embeddings is not None:
            position_map = nn.functional.interpolate(
                self.position_embeddings, size=(height, width), mode="bicubic", align_corners=False
            )  # (1, C, H, W)
            feature_map = feature_map + position_map
        hidden_states = self.norm(feature_map_to_tokens(feature_map))  # (B, N, C)
        if bool_masked_pos is not None:
            hidden_states = self.mask_tokens(hidden_states, bool_masked_pos)
        return self.dropout(hidden_states), height, width

    def mask_tokens(self, hidden_states: torch.Tensor, bool_masked_pos: torch.BoolTensor) -> torch.Tensor:
        """SimMIM: (B, N, C) tokens with those where `bool_masked_pos` (B, N) is True replaced by the mask token."""
        if self.mask_token is None:
            raise ValueError("bool_masked_pos needs a mask token: use VisionBigBirdForMaskedImageModeling")
        batch_size, num_tokens, _ = hidden_states.shape
        if bool_masked_pos.shape != (batch_size, num_tokens):
            raise ValueError(
                f"bool_masked_pos has shape {tuple(bool_masked_pos.shape)}; it must be (batch_size, num_tokens) = "
                f"({batch_size}, {num_tokens}), one entry per token of the stride-4 stem grid in raster order"
            )
        mask = bool_masked_pos.unsqueeze(-1).type_as(hidden_states)  # (B, N, 1)
        return hidden_states * (1.0 - mask) + self.mask_token.to(hidden_states.dtype) * mask  # (B, N, C)


class VisionBigBirdDownsample(nn.Module):
    """Strided 3x3 convolution (x2 downsampling, overlapping) + layer norm between stages."""

    def __init__(self, config: VisionBigBirdConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.projection = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, int, int]:
        """(B, N, C_in) on an H x W grid -> (B, N', C_out) on a ceil(H/2) x ceil(W/2) grid."""
        feature_map = self.projection(tokens_to_feature_map(hidden_states, height, width))  # (B, C_out, H', W')
        _, _, height, width = feature_map.shape
        return self.norm(feature_map_to_tokens(feature_map)), height, width  # (B, N', C_out)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """query (B*, h, Nq, d), key/value (B*, h, Nk, d) -> output (B*, Nq, h, d), weights (B*, h, Nq, Nk)."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B*, h, Nq, Nk)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B*, Nq, h, d)
    return attn_output, attn_weights


# ---- Head group 1: depthwise-conv local heads ------------------------------


class VisionBigBirdConvHeads(nn.Module):
    """Paper Sec. 3: the first head group is a depthwise convolution over the feature map of its value channels;
    it extracts local features and carries the positional information that replaces position embeddings."""

    def __init__(self, config: VisionBigBirdConfig, channels: int):
        super().__init__()
        kernel_size = config.conv_kernel_size
        self.depthwise = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, values: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """values: (B, N, C_conv) -> (B, N, C_conv)."""
        feature_map = tokens_to_feature_map(values, height, width)  # (B, C_conv, H, W)
        return feature_map_to_tokens(self.depthwise(feature_map))  # (B, N, C_conv)


# ---- Head group 2: Random-Sampling-Windows (RS-Win) heads ------------------


def sample_window_order(
    num_tokens: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniform random permutation of token positions (N,), drawn from torch's default generator unless
    `generator` is given, so `torch.manual_seed` reproduces a training step (and gradient checkpointing's RNG
    replay recomputes the same windows)."""
    return torch.randperm(num_tokens, device=device, generator=generator)


def seeded_window_order(height: int, width: int, seed: int, device: torch.device) -> torch.Tensor:
    """A fixed pseudo-random permutation (N,) of an H x W grid, a pure function of (seed, H, W): the eval-mode
    windows. Built from an integer hash of the positions with tensor ops only (no generator), so it is
    deterministic on every device and traceable by torch.compile / torch.export."""
    mixed_seed = (seed * 1_000_003 + height * 7_919 + width) % 2_147_483_647
    keys = torch.arange(height * width, device=device, dtype=torch.int64) + mixed_seed  # (N,)
    for multiplier in (1_103_515_245, 1_274_126_177):  # 31-bit products fit in int64
        keys = (keys * multiplier) % 2_147_483_647
        keys = keys ^ (keys >> 13)
    # Position as the low digits makes every key distinct, so a plain sort gives the stable order (a stable sort
    # does not convert to ONNX) and the permutation is the same on every backend.
    keys = keys * (height * width) + torch.arange(height * width, device=device, dtype=torch.int64)  # < 2**31 * N
    return torch.argsort(keys)  # (N,)


def grid_window_order(height: int, width: int, window_size: int, device: torch.device) -> torch.Tensor:
    """Raster order of square window_size x window_size tiles (N,): the non-random ablation of RS-Win."""
    rows = torch.arange(height, device=device).unsqueeze(1)  # (H, 1)
    cols = torch.arange(width, device=device).unsqueeze(0)  # (1, W)
    tiles_per_row = -(-width // window_size)
    tile = (rows // window_size) * tiles_per_row + cols // window_size  # (H, W)
    within = (rows % window_size) * window_size + cols % window_size  # (H, W)
    return torch.argsort((tile * window_size**2 + within).flatten(), stable=True)  # (N,)


@built_once(maxsize=32)
def window_layout(num_tokens: int, max_window_tokens: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """How N tokens in window order fill nW = ceil(N / max_window_tokens) windows: the first r windows hold base + 1
    tokens, the other nW - r hold base (lengths differ by at most one), and each is padded to the longest, L. One
    extra window, whose output is dropped, keeps the window axis longer than one for every input: a trace
    (torch.export, torch.compile with dynamic sizes) would otherwise specialise on "one window", which the 7x7 last
    stage of a 224x224 input has. The padding and the crop back sit here together:
    position (nW + 1, L): the window-order position each slot reads (a padding slot reads a neighbour);
    valid (nW + 1, L): False on padding slots (all True in the extra window, so no softmax row is fully masked);
    slot (N,): the flat slot i * L + j that holds window-order position p, so gathering `slot` drops the padding.
    Integer tensor ops only, so one graph serves every (symbolic) N; divisors are 0-d tensors because the ONNX
    conversion has no remainder by a symbolic integer. Built once per (N, window size, device); every layer of a
    stage shares it."""
    num_windows = -(-num_tokens // max_window_tokens)  # nW = ceil
    base, num_long = num_tokens // num_windows, num_tokens % num_windows  # r windows of base + 1
    longest = -(-num_tokens // num_windows)  # L
    window = torch.arange(num_windows + 1, device=device).unsqueeze(1)  # (nW+1, 1), last: extra
    column = torch.arange(longest, device=device).unsqueeze(0)  # (1, L)
    start = window * base + torch.clamp(window, max=num_long)  # (nW+1, 1)
    valid = (column < base + (window < num_long).long()) | (window == num_windows)  # (nW+1, L)
    position = torch.clamp(start + column, max=num_tokens - 1)  # (nW+1, L)
    long_length = torch.scalar_tensor(base + 1, dtype=torch.long, device=device)
    short_length = torch.scalar_tensor(base, dtype=torch.long, device=device)
    positions = torch.arange(num_tokens, device=device)  # (N,)
    is_long = positions < num_long * (base + 1)  # (N,)
    rest = torch.clamp(positions - num_long * (base + 1), min=0)  # (N,) offset past long ones
    window_of_position = torch.where(
        is_long,
        torch.div(positions, long_length, rounding_mode="floor"),
        num_long + torch.div(rest, short_length, rounding_mode="floor"),
    )  # (N,)
    column_of_position = torch.where(
        is_long, torch.remainder(positions, long_length), torch.remainder(rest, short_length)
    )  # (N,)
    return position, valid, window_of_position * longest + column_of_position


def tokens_to_windows(tokens: torch.Tensor, window_index: torch.Tensor) -> torch.Tensor:
    """(B, N, ...) tokens and the token index of each window slot (nW', L) -> windows (B*nW', L, ...): slot (i, j) of
    each image holds tokens[:, window_index[i, j]]. `index_select` rather than advanced indexing: its backward is a
    plain index_add instead of an accumulating index_put."""
    batch_size, _, *rest = tokens.shape
    num_windows, longest = window_index.shape
    gathered = tokens.index_select(1, window_index.flatten())  # (B, nW'*L, ...)
    return gathered.reshape(batch_size * num_windows, longest, *rest)  # (B*nW', L, ...)


def windows_to_tokens(windows: torch.Tensor, slot: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(B*nW', L, ...) windows and the slot (N,) to read for each output position -> (B, N, ...), padding and the
    extra window dropped. With `window_layout`'s slot the output is in window order; with `slot[inverse_order]`
    it is back in token order, in one gather."""
    flat = windows.reshape(batch_size, -1, *windows.shape[2:])  # (B, nW'*L, ...)
    return flat.index_select(1, slot)  # (B, N, ...)


def additive_key_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean key validity -> additive attention mask of `dtype`: 0 where valid, the dtype's minimum elsewhere."""
    return torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill(~valid, torch.finfo(dtype).min)


def window_indices(order: torch.Tensor, max_window_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A window order (N,) -> window_index (nW', L), the token each window slot reads (`tokens_to_windows`), and
    token_slot (N,), the slot each token's output is read back from (`windows_to_tokens`, back in token order)."""
    num_tokens = order.shape[0]
    position, _, slot = window_layout(num_tokens, max_window_tokens, order.device)  # (nW', L), (N,)
    inverse_order = torch.empty_like(order).scatter_(0, order, torch.arange(num_tokens, device=order.device))  # (N,)
    window_index = order.index_select(0, position.flatten()).view_as(position)  # (nW', L)
    return window_index, slot.index_select(0, inverse_order)  # (nW', L), (N,)


@built_once(maxsize=128)
def seeded_window_indices(
    height: int, width: int, seed: int, max_window_tokens: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """`window_indices` of the eval windows (`seeded_window_order`), built once per (layer seed, grid, device)."""
    return window_indices(seeded_window_order(height, width, seed, device), max_window_tokens)


@built_once(maxsize=32)
def window_key_mask(
    num_tokens: int, max_window_tokens: int, batch_size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask (B*nW', 1, 1, L) of the padding keys of `window_layout`, for every window of the batch."""
    _, valid, _ = window_layout(num_tokens, max_window_tokens, device)  # (nW', L)
    return additive_key_mask(valid, dtype).repeat(batch_size, 1)[:, None, None, :]  # (B*nW', 1, 1, L)


class VisionBigBirdRSWinHeads(nn.Module):
    """Paper Sec. 3: Random-Sampling Windows. Tokens are permuted uniformly at random and cut into windows of at most
    `rswin_window_size**2` tokens; softmax attention runs inside each window, and outputs are scattered back.
    Training draws a new permutation at every forward pass; eval uses a fixed one per layer and token grid
    (from `config.rswin_seed`), so the same image always gets the same output, whatever else is in its batch.
    Windows whose token count is one short of the longest get a masked padding key, so every input size (eager,
    sdpa, torch.compile, torch.export with dynamic sizes, ONNX) runs the same one attention call."""

    def __init__(self, config: VisionBigBirdConfig, stage_index: int, layer_index: int):
        super().__init__()
        self.config = config
        self.num_heads = config.rswin_heads[stage_index]
        self.head_dim = config.hidden_sizes[stage_index] // config.num_heads[stage_index]
        self.window_tokens = config.rswin_window_size**2
        self.seed = config.rswin_seed + layer_index
        self.scaling = self.head_dim**-0.5
        self.is_causal = False

    def window_order(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The permutation (N,) that gathers tokens into consecutive windows."""
        # CODEPATH: every released checkpoint samples random windows ("random"); "grid" is the paper's non-random
        # ablation, and rswin_sample_in_eval=True an option for test-time sampling that no checkpoint sets.
        if self.config.rswin_sampling == "grid":
            return grid_window_order(height, width, self.config.rswin_window_size, device)
        # CODEPATH: every checkpoint draws in training and uses the seeded order in eval (rswin_sample_in_eval=False).
        if self.training or self.config.rswin_sample_in_eval:
            return sample_window_order(height * width, device)
        return seeded_window_order(height, width, self.seed, device)

    def window_indices(self, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`window_indices` of `window_order`: (nW', L) and (N,); the fixed eval ones are built once, not per call."""
        # CODEPATH: every checkpoint evaluates with the seeded order (rswin_sampling="random", rswin_sample_in_eval
        # False): built once per layer and grid; training, the "grid" ablation and test-time sampling build per call.
        if self.config.rswin_sampling == "random" and not (self.training or self.config.rswin_sample_in_eval):
            return seeded_window_indices(height, width, self.seed, self.window_tokens, device)
        return window_indices(self.window_order(height, width, device), self.window_tokens)

    def forward(self, qkv: torch.Tensor, height: int, width: int, **kwargs: Unpack[TransformersKwargs]):
        """qkv: (B, N, 3*h*d) -> output (B, N, h*d), weights (B, h, N, L) or None (sdpa)."""
        batch_size, num_tokens, _ = qkv.shape
        window_index, token_slot = self.window_indices(height, width, qkv.device)  # (nW', L), (N,)
        key_mask = window_key_mask(num_tokens, self.window_tokens, batch_size, qkv.device, qkv.dtype)
        windows = tokens_to_windows(qkv, window_index)  # (B*nW', L, 3*h*d)
        windows = windows.unflatten(-1, (3, self.num_heads, self.head_dim))  # (B*nW', L, 3, h, d)
        query, key, value = windows.permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW', h, L, d) each
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        window_output, window_weights = attention_interface(
            self,
            query,
            key,
            value,
            key_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )  # (B*nW', L, h, d)
        hidden_states = windows_to_tokens(window_output.flatten(2), token_slot, batch_size)  # (B, N, h*d)
        if window_weights is None:
            return hidden_states, None
        token_weights = windows_to_tokens(window_weights.transpose(1, 2), token_slot, batch_size)  # (B, N, h, L)
        return hidden_states, token_weights.transpose(1, 2)  # (B, h, N, L)


# ---- Head group 3: average-pooled global heads -----------------------------


@built_once(maxsize=32)
def adaptive_pool_matrix(size: int, pool_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(pool_size, size) averaging matrix of adaptive average pooling to p = min(pool_size, size) bins along one
    axis: row i < p averages positions floor(i*size/p) .. ceil((i+1)*size/p) - 1, as `adaptive_avg_pool2d` does;
    rows i >= p (an axis shorter than pool_size) are zero. The row count stays the constant pool_size whatever the
    (symbolic) size, and p enters only as a tensor value, so torch.export traces no guard on it. Built once per
    (size, pool size, device, dtype); every layer of a stage shares it."""
    bins = torch.arange(pool_size, device=device).unsqueeze(1)  # (pool, 1)
    positions = torch.arange(size, device=device).unsqueeze(0)  # (1, S)
    size_tensor = torch.scalar_tensor(size, dtype=torch.long, device=device)
    pooled = torch.clamp(size_tensor, max=pool_size)  # p, 0-d
    start = torch.div(bins * size_tensor, pooled, rounding_mode="floor")  # (pool, 1)
    end = torch.div((bins + 1) * size_tensor + pooled - 1, pooled, rounding_mode="floor")  # (pool, 1) ceil
    inside = (positions >= start) & (positions < end) & (bins < pooled)  # (pool, S)
    return inside.to(dtype) / torch.clamp(end - start, min=1).to(dtype)  # (pool, S)


def adaptive_avg_pool_tokens(hidden_states: torch.Tensor, height: int, width: int, pool_size: int) -> torch.Tensor:
    """`adaptive_avg_pool2d` of the token map to min(pool_size, H) x min(pool_size, W), as two matmuls on a fixed
    pool_size x pool_size grid whose unused cells (a map smaller than the grid) are zero (`pooled_key_mask` masks
    them): (B, N, C) on an H x W grid -> pooled (B, P, C) with P = pool_size**2. A grid of fixed size keeps every
    input size in one graph (a pooled size that follows the map makes a trace guard on it), and the ONNX conversion
    of adaptive pooling would bake in the traced input size."""
    rows = adaptive_pool_matrix(height, pool_size, hidden_states.device, hidden_states.dtype)  # (pool, H)
    cols = adaptive_pool_matrix(width, pool_size, hidden_states.device, hidden_states.dtype)  # (pool, W)
    # two matmuls on views of the token map as it lies in memory (an einsum permutes and copies all of it)
    grid = hidden_states.unflatten(1, (height, width))  # (B, H, W, C)
    pooled_cols = torch.matmul(cols, grid).flatten(2)  # (B, H, pool*C)
    pooled = torch.matmul(rows, pooled_cols).unflatten(-1, (pool_size, hidden_states.shape[-1]))  # (B, pool, pool, C)
    return pooled.flatten(1, 2)  # (B, P, C)


@built_once(maxsize=32)
def pooled_key_mask(height: int, width: int, pool_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (1, 1, 1, P) of the cells of the pool_size x pool_size grid that `adaptive_avg_pool_tokens`
    leaves empty (those outside min(pool_size, H) x min(pool_size, W))."""
    rows = adaptive_pool_matrix(height, pool_size, device, dtype)  # (pool, H)
    cols = adaptive_pool_matrix(width, pool_size, device, dtype)  # (pool, W)
    valid = (rows.sum(-1) > 0).unsqueeze(1) & (cols.sum(-1) > 0).unsqueeze(0)  # (pool, pool)
    return additive_key_mask(valid.flatten(), dtype)[None, None, None, :]  # (1, 1, 1, P)


class VisionBigBirdGlobalHeads(nn.Module):
    """Paper Sec. 3: global heads. Every query attends to keys/values computed from the block input average-pooled
    to a fixed `global_pool_size` grid (P tokens), so each token has global reach at O(N * P) cost. On a map smaller
    than the grid the pooled grid is min(pool, H) x min(pool, W) and the unused cells are masked keys (weight 0)."""

    def __init__(self, config: VisionBigBirdConfig, stage_index: int):
        super().__init__()
        self.config = config
        channels = config.hidden_sizes[stage_index]
        self.num_heads = config.global_heads[stage_index]
        self.head_dim = channels // config.num_heads[stage_index]
        self.pool_size = config.global_pool_size[stage_index]
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.pool_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.kv = nn.Linear(channels, 2 * self.num_heads * self.head_dim, bias=config.qkv_bias)

    def forward(
        self,
        query: torch.Tensor,
        hidden_states: torch.Tensor,
        height: int,
        width: int,
        **kwargs: Unpack[TransformersKwargs],
    ):
        """query: (B, N, h*d), hidden_states: (B, N, C) -> output (B, N, h*d), weights (B, h, N, P) or None."""
        batch_size, num_tokens, _ = query.shape
        pooled_tokens = self.pool_norm(adaptive_avg_pool_tokens(hidden_states, height, width, self.pool_size))
        key_mask = pooled_key_mask(height, width, self.pool_size, query.device, query.dtype)  # (1, 1, 1, P)
        pooled_key, pooled_value = (
            self.kv(pooled_tokens).unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        )  # (B, h, P, d) each
        head_query = query.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, h, N, d)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            head_query,
            pooled_key,
            pooled_value,
            key_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )  # (B, N, h, d)
        return attn_output.reshape(batch_size, num_tokens, -1), attn_weights  # (B, N, h*d)


# ---- Mixed attention, MLP, layer, stage, encoder ---------------------------


class VisionBigBirdMixedAttention(nn.Module):
    """The three head groups of one block. One fused projection produces the conv heads' values, the RS-Win heads'
    queries/keys/values and the global heads' queries; the groups run side by side and their outputs are
    concatenated (conv | RS-Win | global channels) before the shared output projection."""

    def __init__(self, config: VisionBigBirdConfig, stage_index: int, layer_index: int):
        super().__init__()
        channels = config.hidden_sizes[stage_index]
        head_dim = channels // config.num_heads[stage_index]
        conv_channels = config.conv_heads[stage_index] * head_dim
        rswin_channels = config.rswin_heads[stage_index] * head_dim
        global_channels = config.global_heads[stage_index] * head_dim
        self.split_sizes = [conv_channels, 3 * rswin_channels, global_channels]
        self.qkv = nn.Linear(channels, sum(self.split_sizes), bias=config.qkv_bias)
        self.conv_heads = VisionBigBirdConvHeads(config, conv_channels) if conv_channels else None
        self.rswin_heads = VisionBigBirdRSWinHeads(config, stage_index, layer_index) if rswin_channels else None
        self.global_heads = VisionBigBirdGlobalHeads(config, stage_index) if global_channels else None
        self.proj = nn.Linear(channels, channels)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, height: int, width: int, **kwargs: Unpack[TransformersKwargs]):
        """hidden_states: (B, N, C) -> (B, N, C)."""
        conv_values, rswin_qkv, global_query = self.qkv(hidden_states).split(self.split_sizes, dim=-1)
        mixed = []
        if self.conv_heads is not None:
            mixed.append(self.conv_heads(conv_values, height, width))  # (B, N, C_conv)
        if self.rswin_heads is not None:
            mixed.append(self.rswin_heads(rswin_qkv, height, width, **kwargs)[0])  # (B, N, C_rswin)
        if self.global_heads is not None:
            mixed.append(
                self.global_heads(global_query, hidden_states, height, width, **kwargs)[0]
            )  # (B, N, C_global)
        return self.proj_dropout(self.proj(torch.cat(mixed, dim=-1)))  # (B, N, C)


class VisionBigBirdMLP(nn.Module):
    def __init__(self, config: VisionBigBirdConfig, channels: int):
        super().__init__()
        hidden_channels = int(channels * config.mlp_ratio)
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(hidden_channels, channels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        hidden_states = self.dropout(self.activation(self.fc1(hidden_states)))  # (B, N, C*mlp_ratio)
        return self.dropout(self.fc2(hidden_states))  # (B, N, C)


class VisionBigBirdDropPath(nn.Module):
    """Stochastic depth per sample on the residual branch (identity in eval or at rate 0)."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        mask = torch.empty(shape, dtype=hidden_states.dtype, device=hidden_states.device).bernoulli_(keep_prob)
        return hidden_states * mask / keep_prob

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class VisionBigBirdLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + DropPath(MixedAttention(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, config: VisionBigBirdConfig, stage_index: int, layer_index: int, drop_path: float):
        super().__init__()
        channels = config.hidden_sizes[stage_index]
        self.layernorm_before = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.attention = VisionBigBirdMixedAttention(config, stage_index, layer_index)
        self.layernorm_after = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.mlp = VisionBigBirdMLP(config, channels)
        self.drop_path = VisionBigBirdDropPath(drop_path)

    def forward(
        self, hidden_states: torch.Tensor, height: int, width: int, **kwargs: Unpack[TransformersKwargs]
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        attention_output = self.attention(self.layernorm_before(hidden_states), height, width, **kwargs)
        hidden_states = hidden_states + self.drop_path(attention_output)
        return hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))


class VisionBigBirdStage(nn.Module):
    """Optional x2 downsampling (every stage but the first), then `depth` blocks at one resolution."""

    def __init__(self, config: VisionBigBirdConfig, stage_index: int, first_layer_index: int, drop_paths: list[float]):
        super().__init__()
        channels = config.hidden_sizes[stage_index]
        self.downsample = (
            VisionBigBirdDownsample(config, config.hidden_sizes[stage_index - 1], channels)
            if stage_index > 0
            else None
        )
        self.layers = nn.ModuleList(
            VisionBigBirdLayer(config, stage_index, first_layer_index + offset, drop_path)
            for offset, drop_path in enumerate(drop_paths)
        )

    def forward(
        self, hidden_states: torch.Tensor, height: int, width: int, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, int, int]:
        """(B, N_in, C_in) on an H x W grid -> (B, N, C) and its grid size."""
        if self.downsample is not None:
            hidden_states, height, width = self.downsample(hidden_states, height, width)
        for layer in self.layers:
            hidden_states = layer(hidden_states, height, width, **kwargs)
        return hidden_states, height, width


# ---- PreTrainedModel, base model, classification head, backbone ------------


class VisionBigBirdPreTrainedModel(PreTrainedModel):
    config: VisionBigBirdConfig
    base_model_prefix = "vision_bigbird"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["VisionBigBirdLayer"]
    _supports_sdpa = True
    # Both attention groups need a key mask shared by all queries (padding keys, empty pooled cells): flash attention
    # takes no such mask, and transformers' flex path reads one mask row per query (index out of bounds on CPU).
    _supports_flash_attn = False
    _supports_flex_attn = False
    _can_compile_fullgraph = True  # one graph, no break, in eval and training (tests/test_export.py)

    def _init_weights(self, module: nn.Module) -> None:
        """Truncated-normal linears, fan-out normal convolutions (as PVTv2), unit layer norms."""
        super()._init_weights(module)
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, VisionBigBirdEmbeddings):
            if module.position_embeddings is not None:
                init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)


class VisionBigBirdEncoder(VisionBigBirdPreTrainedModel):
    """The four stages, and the geometry: the encoder knows every stage's token grid. Records the stem output and each
    stage's output as `hidden_states` and builds them into feature maps (`reshaped_hidden_states`); records the
    global heads' weights as `attentions` and the RS-Win heads' weights as `rswin_attentions`, both returned with
    `output_attentions`."""

    main_input_name = "hidden_states"
    _can_record_outputs = {
        "hidden_states": VisionBigBirdStage,
        "attentions": OutputRecorder(VisionBigBirdGlobalHeads, index=1),
        "rswin_attentions": OutputRecorder(VisionBigBirdRSWinHeads, index=1),
    }

    def __init__(self, config: VisionBigBirdConfig):
        super().__init__(config)
        # stochastic depth grows linearly over all blocks; resolved once here and handed to each stage
        drop_paths = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        first_layer_indices = [sum(config.depths[:stage_index]) for stage_index in range(len(config.depths))]
        self.stages = nn.ModuleList(
            VisionBigBirdStage(config, stage_index, first, drop_paths[first : first + depth])
            for stage_index, (first, depth) in enumerate(zip(first_layer_indices, config.depths))
        )
        self.post_init()

    def forward(
        self, hidden_states: torch.Tensor, height: int, width: int, **kwargs: Unpack[TransformersKwargs]
    ) -> VisionBigBirdEncoderOutput:
        """hidden_states: stem output (B, N, C_0) on an H x W grid -> last stage output (B, N_4, C_4); with
        `output_hidden_states`, the stem and stage outputs as tokens (B, N_i, C_i) and as maps (B, C_i, H_i, W_i)."""
        # the RS-Win weights are attention weights too: `output_attentions` returns both groups
        kwargs["output_rswin_attentions"] = kwargs.get("output_attentions", self.config.output_attentions)
        outputs = self.run_stages(hidden_states, height, width, return_dict=True, **kwargs)
        if outputs.hidden_states is not None:
            outputs["reshaped_hidden_states"] = tuple(
                None if hidden_state is None else tokens_to_feature_map(hidden_state, *grid)  # (B, C_i, H_i, W_i)
                for hidden_state, grid in zip(outputs.hidden_states, outputs.grids)
            )
        return outputs

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def run_stages(
        self, hidden_states: torch.Tensor, height: int, width: int, **kwargs: Unpack[TransformersKwargs]
    ) -> VisionBigBirdEncoderOutput:
        """The stages in turn, outputs recorded; `grids` holds the token grid of each recorded hidden state."""
        grids = [(height, width)]
        for stage in self.stages:
            hidden_states, height, width = stage(hidden_states, height, width, **kwargs)
            grids.append((height, width))
        return VisionBigBirdEncoderOutput(last_hidden_state=hidden_states, grids=tuple(grids))


class VisionBigBirdModel(VisionBigBirdPreTrainedModel):
    def __init__(self, config: VisionBigBirdConfig, use_mask_token: bool = False):
        super().__init__(config)
        self.embeddings = VisionBigBirdEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = VisionBigBirdEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.projection

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VisionBigBirdModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images of any size of at least 32x32 pixels (see [`VisionBigBirdImageProcessor`]).
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_tokens)`, *optional*):
            Which tokens of the stride-4 stem grid (raster order) the mask token replaces; needs `use_mask_token`.
        """
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        embedding_output, height, width = self.embeddings(pixel_values, bool_masked_pos)  # (B, N_0, C_0)
        encoder_outputs = self.encoder(embedding_output, height, width, **kwargs)
        sequence_output = self.layernorm(encoder_outputs.last_hidden_state)  # (B, N_4, C_4)
        pooled_output = sequence_output.mean(dim=1)  # (B, C_4)
        return VisionBigBirdModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
            rswin_attentions=encoder_outputs.rswin_attentions,
            reshaped_hidden_states=encoder_outputs.reshaped_hidden_states,
        )


class VisionBigBirdForImageClassification(VisionBigBirdPreTrainedModel):
    """Vision Big Bird with a linear classifier on the average-pooled last stage. `config.problem_type` selects
    single-label (cross-entropy), multi-label (BCE with logits) or regression (MSE) losses."""

    accepts_loss_kwargs = False

    def __init__(self, config: VisionBigBirdConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vision_bigbird = VisionBigBirdModel(config)
        self.classifier = (
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VisionBigBirdImageClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices in `[0, config.num_labels - 1]` (or float targets for regression / multi-label).
        """
        outputs: VisionBigBirdModelOutput = self.vision_bigbird(pixel_values, **kwargs)
        logits = self.classifier(outputs.pooler_output)  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return VisionBigBirdImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            rswin_attentions=outputs.rswin_attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )


class VisionBigBirdBackbone(BackboneMixin, VisionBigBirdPreTrainedModel):
    """Feature maps at strides 4 (`stem`, `stage1`), 8, 16 and 32 for dense prediction heads, each layer-normed
    as Swin's backbone does."""

    def __init__(self, config: VisionBigBirdConfig):
        super().__init__(config)
        self.num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
        self.embeddings = VisionBigBirdEmbeddings(config)
        self.encoder = VisionBigBirdEncoder(config)
        self.hidden_states_norms = nn.ModuleDict(
            {
                stage: nn.LayerNorm(channels, eps=config.layer_norm_eps)
                for stage, channels in zip(self.out_features, self.channels)
            }
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.projection

    @can_return_tuple
    @filter_output_hidden_states
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BackboneOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images of any size of at least 32x32 pixels.
        """
        embedding_output, height, width = self.embeddings(pixel_values)  # (B, N_0, C_0)
        encoder_outputs = self.encoder(embedding_output, height, width, **kwargs)
        hidden_states = encoder_outputs.reshaped_hidden_states  # (B, C_i, H_i, W_i) each
        # the feature maps are computed from the returned maps, so gradients reach `hidden_states` too
        feature_maps = tuple(
            self.hidden_states_norms[stage](hidden_state.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C_i, H_i, W_i)
            for stage, hidden_state in zip(self.stage_names, hidden_states)
            if stage in self.out_features
        )
        return BackboneOutput(
            feature_maps=feature_maps,
            hidden_states=hidden_states,
            attentions=encoder_outputs.attentions,
        )


class VisionBigBirdForMaskedImageModeling(VisionBigBirdPreTrainedModel):
    """SimMIM (Xie et al., arXiv 2111.09886) on Vision Big Bird, as transformers' `SwinForMaskedImageModeling`: masked
    stem tokens become a learned mask token, a 1x1 convolution and a pixel shuffle turn the last stage (stride 32)
    back into pixels, and the loss is the L1 error on the masked pixels only. Input sides must be multiples of 32."""

    def __init__(self, config: VisionBigBirdConfig):
        super().__init__(config)
        self.vision_bigbird = VisionBigBirdModel(config, use_mask_token=True)
        self.stem_stride = 4
        self.encoder_stride = self.stem_stride * 2 ** (len(config.depths) - 1)  # 32 for four stages
        # SimMIM's one-layer prediction head: stride**2 pixels per channel from each stage-4 token, shuffled into place
        self.decoder = nn.Conv2d(config.hidden_sizes[-1], self.encoder_stride**2 * config.num_channels, kernel_size=1)
        self.pixel_shuffle = nn.PixelShuffle(self.encoder_stride)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VisionBigBirdMaskedImageModelingOutput:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_tokens)`, *optional*):
            Which tokens of the stride-4 stem grid (raster order, `(height // 4) * (width // 4)` of them) are masked.
            With it, `loss` is the mean L1 reconstruction error over the masked pixels.
        """
        if pixel_values is not None and pixel_values.ndim == 4:
            height, width = pixel_values.shape[-2:]
            if height % self.encoder_stride or width % self.encoder_stride:
                raise ValueError(
                    f"pixel_values is {height}x{width} pixels; masked image modeling needs both sides to be "
                    f"multiples of {self.encoder_stride} (the last stage's stride), e.g. 192x192 or 224x224"
                )
        outputs: VisionBigBirdModelOutput = self.vision_bigbird(
            pixel_values, bool_masked_pos=bool_masked_pos, **kwargs
        )
        height, width = pixel_values.shape[-2:]
        grid_height, grid_width = height // self.encoder_stride, width // self.encoder_stride
        feature_map = tokens_to_feature_map(outputs.last_hidden_state, grid_height, grid_width)  # (B, C_4, H/32, W/32)
        pixel_predictions = self.decoder(feature_map.contiguous())  # (B, 32*32*C_in, H/32, W/32)
        reconstruction = self.pixel_shuffle(pixel_predictions)  # (B, C_in, H, W)

        loss = None
        if bool_masked_pos is not None:
            mask = bool_masked_pos.reshape(-1, height // self.stem_stride, width // self.stem_stride)
            mask = mask.repeat_interleave(self.stem_stride, 1).repeat_interleave(self.stem_stride, 2)  # (B, H, W)
            mask = mask.unsqueeze(1).type_as(reconstruction)  # (B, 1, H, W)
            pixel_loss = nn.functional.l1_loss(pixel_values, reconstruction, reduction="none")  # (B, C_in, H, W)
            loss = (pixel_loss * mask).sum() / (mask.sum() + 1e-5) / self.config.num_channels
        return VisionBigBirdMaskedImageModelingOutput(
            loss=loss,
            reconstruction=reconstruction,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            rswin_attentions=outputs.rswin_attentions,
            reshaped_hidden_states=outputs.reshaped_hidden_states,
        )


__all__ = [
    "VisionBigBirdBackbone",
    "VisionBigBirdForImageClassification",
    "VisionBigBirdForMaskedImageModeling",
    "VisionBigBirdModel",
    "VisionBigBirdPreTrainedModel",
]
