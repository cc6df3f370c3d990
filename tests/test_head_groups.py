"""Each head group on its own, checked against an independent computation or a property that can fail."""

import math

import pytest
import torch
from conftest import tiny_config_kwargs
from huggingface_hub.errors import StrictDataclassError

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdModel
from vision_bigbird_hf.modeling_vision_bigbird import (
    VisionBigBirdConvHeads,
    VisionBigBirdGlobalHeads,
    VisionBigBirdRSWinHeads,
    grid_window_order,
    sample_window_order,
    seeded_window_order,
    tokens_to_windows,
    window_indices,
    window_layout,
    windows_to_tokens,
)


def stage1_config(conv, rswin, global_, head_dim, **overrides):
    """The tiny config with stage 1 given `conv + rswin + global_` heads of `head_dim` channels each."""
    kwargs = tiny_config_kwargs(**overrides)
    channels, heads = (conv + rswin + global_) * head_dim, conv + rswin + global_
    kwargs.update(
        hidden_sizes=[channels, 48, 72, 96],
        num_heads=[heads, 3, 3, 3],
        conv_heads=[conv, 1, 1, 1],
        rswin_heads=[rswin, 1, 1, 1],
        global_heads=[global_, 1, 1, 1],
    )
    return VisionBigBirdConfig(**kwargs)


def is_permutation(order, n):
    return torch.equal(torch.sort(order).values, torch.arange(n))


# ---- window order --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width", [(1, 1), (7, 7), (5, 13), (56, 56), (10, 26)])
def test_every_window_order_is_a_bijection(height, width):
    n = height * width
    assert is_permutation(sample_window_order(n, torch.device("cpu")), n)
    assert is_permutation(seeded_window_order(height, width, seed=3, device=torch.device("cpu")), n)
    assert is_permutation(grid_window_order(height, width, 3, torch.device("cpu")), n)


def test_random_order_is_new_each_call_and_reproducible_with_a_generator():
    first, second = sample_window_order(3136, torch.device("cpu")), sample_window_order(3136, torch.device("cpu"))
    assert not torch.equal(first, second)
    a = sample_window_order(100, torch.device("cpu"), generator=torch.Generator().manual_seed(5))
    b = sample_window_order(100, torch.device("cpu"), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_random_order_is_uniform():
    # Position of token 0 after many permutations of 10 tokens: each of the 10 slots about equally often.
    n, trials = 10, 20000
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[(sample_window_order(n, torch.device("cpu")) == 0).nonzero()] += 1
    expected = trials / n
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 27.9  # 99.9th percentile of chi-square with 9 degrees of freedom


def test_seeded_order_is_fixed_per_seed_and_grid_and_mixes_positions():
    cpu = torch.device("cpu")
    order = seeded_window_order(56, 56, seed=0, device=cpu)
    assert torch.equal(order, seeded_window_order(56, 56, seed=0, device=cpu))
    assert not torch.equal(order, seeded_window_order(56, 56, seed=1, device=cpu))
    assert not torch.equal(seeded_window_order(8, 18, 0, cpu), seeded_window_order(18, 8, 0, cpu))
    # a window of 49 consecutive slots gathers tokens from all over the map, not one neighbourhood
    first_window_rows = order[:49] // 56
    assert first_window_rows.max() - first_window_rows.min() > 28
    # not the identity, and far from it
    assert (order == torch.arange(56 * 56)).float().mean() < 0.01


def test_grid_order_gathers_square_tiles():
    order = grid_window_order(6, 6, 3, torch.device("cpu"))
    rows, cols = order // 6, order % 6
    for window in range(4):
        members = slice(9 * window, 9 * window + 9)
        assert rows[members].max() - rows[members].min() == 2
        assert cols[members].max() - cols[members].min() == 2


# ---- windows -------------------------------------------------------------------------------------------------------


def window_lengths(num_tokens, window_tokens):
    """Independent split: ceil(N / w) windows, the first N mod nW of them one token longer."""
    num_windows = math.ceil(num_tokens / window_tokens)
    base, num_long = divmod(num_tokens, num_windows)
    return [base + 1] * num_long + [base] * (num_windows - num_long)


@pytest.mark.parametrize("num_tokens,window_tokens", [(49, 49), (3136, 49), (35, 9), (1, 49), (260, 49), (50, 49)])
def test_window_layout_covers_every_token_once_and_lengths_differ_by_at_most_one(num_tokens, window_tokens):
    position, valid, slot = window_layout(num_tokens, window_tokens, torch.device("cpu"))
    lengths = window_lengths(num_tokens, window_tokens)
    assert position.shape == valid.shape == (len(lengths) + 1, max(lengths))  # one extra window, dropped later
    assert valid[:-1].sum(1).tolist() == lengths and valid[-1].all()
    assert max(lengths) <= window_tokens and max(lengths) - min(lengths) <= 1
    # valid slots read window-order positions 0..N-1 in order; `slot` finds each one again
    assert torch.equal(position[:-1][valid[:-1]], torch.arange(num_tokens))
    assert torch.equal(position.flatten()[slot], torch.arange(num_tokens)) and valid.flatten()[slot].all()


@pytest.mark.parametrize("num_tokens", [36, 35, 50])
def test_windows_to_tokens_undoes_tokens_to_windows(num_tokens):
    tokens = torch.randn(3, num_tokens, 5)
    position, valid, slot = window_layout(num_tokens, 9, torch.device("cpu"))
    identity = torch.arange(num_tokens)
    windows = tokens_to_windows(tokens, identity[position])  # (B*nW', L, 5)
    assert torch.equal(windows_to_tokens(windows, slot, 3), tokens)
    # with a permutation, windows hold consecutive runs of the permuted tokens
    order = torch.randperm(num_tokens)
    assert torch.equal(windows_to_tokens(tokens_to_windows(tokens, order[position]), slot, 3), tokens[:, order])
    # each token sits in exactly one valid slot of a real window, and windows never mix images of the batch
    ids = torch.arange(3 * num_tokens, dtype=torch.float32).reshape(3, num_tokens, 1)
    windows = tokens_to_windows(ids, order[position]).squeeze(-1)  # (B*nW', L)
    real = valid[:-1].repeat(3, 1, 1)  # (B, nW, L)
    seen = windows.reshape(3, *valid.shape)[:, :-1][real]
    assert torch.equal(torch.sort(seen).values, ids.flatten())
    images = windows // num_tokens  # (B*nW', L): image of each member
    assert (images == images[:, :1]).all()


@pytest.mark.parametrize("num_tokens", [36, 35, 50, 1])
def test_window_indices_send_every_token_back_to_its_place(num_tokens):
    tokens = torch.randn(2, num_tokens, 4)
    order = torch.randperm(num_tokens)
    window_index, token_slot = window_indices(order, 9)
    position, _, _ = window_layout(num_tokens, 9, torch.device("cpu"))
    assert torch.equal(window_index, order[position])
    assert torch.equal(windows_to_tokens(tokens_to_windows(tokens, window_index), token_slot, 2), tokens)


# ---- RS-Win heads against dense masked attention --------------------------------------------------------------------


def dense_window_attention(qkv, order, lengths, num_heads, head_dim):
    """Independent reference: full N x N attention in token order, masked to pairs that share a window."""
    batch, n, _ = qkv.shape
    window_of_slot = torch.arange(len(lengths)).repeat_interleave(torch.tensor(lengths))  # (N,) window of each slot
    window_of_token = torch.empty(n, dtype=torch.long)
    window_of_token[order] = window_of_slot
    same_window = window_of_token[:, None] == window_of_token[None, :]  # (N, N)
    q, k, v = qkv.reshape(batch, n, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
    scores = scores.masked_fill(~same_window, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, num_heads * head_dim)


@pytest.mark.parametrize("height,width", [(6, 6), (5, 7), (1, 1), (9, 4)])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_rswin_heads_match_dense_masked_attention(height, width, attn_implementation):
    config = stage1_config(0, 2, 1, head_dim=4, rswin_window_size=3)
    config._attn_implementation = attn_implementation
    heads = VisionBigBirdRSWinHeads(config, stage_index=0, layer_index=1).eval()
    qkv = torch.randn(2, height * width, 3 * 2 * 4)
    output, _ = heads(qkv, height, width)
    order = heads.window_order(height, width, qkv.device)
    expected = dense_window_attention(qkv, order, window_lengths(height * width, 9), 2, 4)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


def test_rswin_attention_weights_are_those_of_the_window_members():
    config = stage1_config(1, 1, 1, head_dim=4, rswin_window_size=3)
    config._attn_implementation = "eager"
    heads = VisionBigBirdRSWinHeads(config, stage_index=0, layer_index=0).eval()
    qkv = torch.randn(1, 36, 12)
    _, weights = heads(qkv, 6, 6)  # (B, h, N, w)
    order = heads.window_order(6, 6, qkv.device)
    q, k, _ = qkv.reshape(1, 36, 3, 4).unbind(2)
    slot_of_token = torch.empty_like(order)
    slot_of_token[order] = torch.arange(36)
    token = 17
    members = order[(slot_of_token[token] // 9) * 9 : (slot_of_token[token] // 9) * 9 + 9]
    expected = ((q[0, token] @ k[0, members].T) / 2.0).softmax(-1)
    torch.testing.assert_close(weights[0, 0, token], expected)


def test_rswin_training_draws_new_windows_and_eval_is_fixed():
    config = stage1_config(1, 1, 1, head_dim=4)
    heads = VisionBigBirdRSWinHeads(config, stage_index=0, layer_index=0)
    heads.train()
    assert not torch.equal(
        heads.window_order(8, 8, torch.device("cpu")), heads.window_order(8, 8, torch.device("cpu"))
    )
    heads.eval()
    assert torch.equal(heads.window_order(8, 8, torch.device("cpu")), heads.window_order(8, 8, torch.device("cpu")))
    other_layer = VisionBigBirdRSWinHeads(config, stage_index=0, layer_index=1).eval()
    assert not torch.equal(
        heads.window_order(8, 8, torch.device("cpu")), other_layer.window_order(8, 8, torch.device("cpu"))
    )
    sampling = VisionBigBirdRSWinHeads(
        stage1_config(1, 1, 1, head_dim=4, rswin_sample_in_eval=True), stage_index=0, layer_index=0
    ).eval()
    assert not torch.equal(
        sampling.window_order(8, 8, torch.device("cpu")), sampling.window_order(8, 8, torch.device("cpu"))
    )


# ---- global heads ----------------------------------------------------------------------------------------------------


def test_global_heads_attend_to_exactly_the_pooled_tokens():
    config = stage1_config(1, 1, 2, head_dim=3)  # 12 channels, pool 3
    config._attn_implementation = "eager"
    heads = VisionBigBirdGlobalHeads(config, stage_index=0).eval()
    hidden = torch.randn(2, 36, 12)
    query = torch.randn(2, 36, 6)
    output, weights = heads(query, hidden, 6, 6)
    assert weights.shape == (2, 2, 36, 9)
    # independent pooling: mean of each 2x2 block of the 6x6 map
    blocks = hidden.reshape(2, 3, 2, 3, 2, 12).mean(dim=(2, 4)).reshape(2, 9, 12)
    key, value = heads.kv(heads.pool_norm(blocks)).reshape(2, 9, 2, 2, 3).permute(2, 0, 3, 1, 4)
    q = query.reshape(2, 36, 2, 3).transpose(1, 2)
    expected_weights = (q @ key.transpose(-1, -2) / math.sqrt(3)).softmax(-1)
    torch.testing.assert_close(weights, expected_weights)
    expected = (expected_weights @ value).transpose(1, 2).reshape(2, 36, 6)
    torch.testing.assert_close(output, expected)


def test_global_pool_is_capped_at_the_map_size():
    config = stage1_config(1, 0, 1, head_dim=4, global_pool_size=[7, 3, 2, 2])  # 8 channels, pool 7
    config._attn_implementation = "eager"
    heads = VisionBigBirdGlobalHeads(config, stage_index=0).eval()
    _, weights = heads(torch.randn(1, 10, 4), torch.randn(1, 10, 8), 2, 5)  # a 2 x 5 map, pool grid 7 x 7
    grid = weights.unflatten(-1, (7, 7))  # (B, h, N, 7, 7)
    torch.testing.assert_close(grid[..., :2, :5].sum((-1, -2)), torch.ones(1, 1, 10))
    assert (grid[..., :2, :5] > 0).all() and not grid[..., 2:, :].any() and not grid[..., :, 5:].any()


# ---- conv heads ------------------------------------------------------------------------------------------------------


def test_conv_heads_are_local():
    config = VisionBigBirdConfig(**tiny_config_kwargs(conv_kernel_size=3))
    heads = VisionBigBirdConvHeads(config, channels=4).eval()
    values = torch.randn(1, 10 * 12, 4)
    changed = values.clone()
    changed[0, 9 * 12 + 11] += 10.0  # bottom-right token
    difference = (heads(changed, 10, 12) - heads(values, 10, 12)).abs().sum(-1).reshape(10, 12)
    assert difference[8:, 10:].gt(0).all()  # its 3x3 neighbourhood changes
    difference[8:, 10:] = 0
    assert difference.eq(0).all()  # nothing else does


def test_conv_heads_see_position_through_zero_padding():
    # the same constant input gives different outputs at the border and in the middle: positional information
    config = VisionBigBirdConfig(**tiny_config_kwargs())
    heads = VisionBigBirdConvHeads(config, channels=2).eval()
    output = heads(torch.ones(1, 25, 2), 5, 5).reshape(5, 5, 2)
    assert not torch.allclose(output[0, 0], output[2, 2])


# ---- the model as a whole ---------------------------------------------------------------------------------------------


def test_model_has_no_position_embedding_parameter_by_default():
    model = VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs()))
    assert not any("position" in name for name, _ in model.named_parameters())
    with_positions = VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs(use_absolute_embeddings=True)))
    assert any("position" in name for name, _ in with_positions.named_parameters())


@pytest.mark.parametrize(
    "split",
    [
        {"conv_heads": [0, 0, 0, 0], "rswin_heads": [2, 2, 2, 2], "global_heads": [1, 1, 1, 1]},
        {"conv_heads": [2, 2, 2, 2], "rswin_heads": [0, 0, 0, 0], "global_heads": [1, 1, 1, 1]},
        {"conv_heads": [1, 1, 1, 1], "rswin_heads": [2, 2, 2, 2], "global_heads": [0, 0, 0, 0]},
        {"conv_heads": [3, 0, 0, 0], "rswin_heads": [0, 3, 0, 0], "global_heads": [0, 0, 3, 3]},
    ],
)
def test_any_group_can_have_zero_heads(split):
    model = VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs(**split))).eval()
    with torch.no_grad():
        output = model(torch.randn(1, 3, 64, 64))
    assert output.last_hidden_state.shape == (1, 4, 96) and torch.isfinite(output.last_hidden_state).all()


def test_all_groups_empty_is_rejected():
    with pytest.raises(StrictDataclassError, match="stage1"):
        VisionBigBirdConfig(
            **tiny_config_kwargs(conv_heads=[0, 1, 1, 1], rswin_heads=[0, 1, 1, 1], global_heads=[0, 1, 1, 1])
        )
