"""The models of the Fashion-MNIST study: name -> (kind, description, model type, config overrides). Shared by
`compare_models.py` (each is a `train_image_classification.py` run) and `device_check.py` (the GPU training race).
Vision Big Bird's runs are the `"study"` preset (`--model_preset study`) with their overrides."""

from vision_bigbird_hf import PRESETS

PRESET = "study"
DROP_PATH = PRESETS[PRESET]["drop_path_rate"]  # the peers' too
# --config_overrides of each run: peers of Vision Big Bird's parameter count and token grid, ablations that keep every
# stage's heads (on top of the preset), a two-stage Swin (why: the Setup section of docs/results.md)
VBB = {}
NO_CONV = {"conv_heads": [0, 0, 0, 0], "rswin_heads": [2, 2, 3, 3], "global_heads": [1, 1, 3, 3]}
NO_RSWIN = {"conv_heads": [2, 2, 3, 3], "rswin_heads": [0, 0, 0, 0], "global_heads": [1, 1, 3, 3]}
NO_GLOBAL = {"conv_heads": [2, 2, 3, 3], "rswin_heads": [1, 1, 3, 3], "global_heads": [0, 0, 0, 0]}
GRID, ABS_POS = {"rswin_sampling": "grid"}, {"use_absolute_embeddings": True}
CONVNEXT = {"patch_size": 4, "hidden_sizes": [35, 70, 140, 280], "depths": [1, 1, 3, 1], "drop_path_rate": DROP_PATH}
SWIN = {"patch_size": 4, "embed_dim": 64, "depths": [2, 6], "num_heads": [2, 4], "window_size": 4}
SWIN["drop_path_rate"] = DROP_PATH
PVTV2 = {"hidden_sizes": [26, 52, 130, 208], "depths": [1, 1, 2, 1], "num_attention_heads": [1, 2, 5, 8]}
PVTV2 |= {"sr_ratios": [4, 2, 1, 1], "mlp_ratios": [8, 8, 4, 4], "drop_path_rate": DROP_PATH}
VIT = {"patch_size": 4, "hidden_size": 128, "num_hidden_layers": 7, "num_attention_heads": 4, "intermediate_size": 512}
RUNS = {  # name: (kind, description, --model_type, --config_overrides)
    "vbb": ("vbb", "Vision Big Bird: conv + RS-Win + global heads, no position embedding", "vision_bigbird", VBB),
    "convnext": ("peer", "ConvNeXt, depths 1-1-3-1, widths 35-280", "convnext", CONVNEXT),
    "swin": ("peer", "Swin, patch 4, window 4, depths 2-6, widths 64-128 (two stages)", "swin", SWIN),
    "pvtv2": ("peer", "PVTv2, depths 1-1-2-1, widths 26-208, sr 4-2-1-1", "pvt_v2", PVTV2),
    "vbb-no-conv": ("ablation", "VBB without conv heads (given to RS-Win/global)", "vision_bigbird", NO_CONV),
    "vbb-no-rswin": ("ablation", "VBB without RS-Win heads (given to conv/global)", "vision_bigbird", NO_RSWIN),
    "vbb-no-global": ("ablation", "VBB without global heads (given to conv/RS-Win)", "vision_bigbird", NO_GLOBAL),
    "vbb-grid": ("ablation", "VBB with fixed 4x4 windows instead of random ones", "vision_bigbird", GRID),
    "vbb-abs-pos": ("ablation", "VBB + learned absolute position embedding", "vision_bigbird", ABS_POS),
    "vit": ("peer", "ViT, patch 4 (64 tokens + CLS), 7 layers of width 128", "vit", VIT),
}


def config_kwargs(name: str) -> dict:
    """The config keyword arguments of run `name`: the preset with the overrides for Vision Big Bird, the overrides
    alone (on the transformers config's defaults) for a peer."""
    _, _, model_type, overrides = RUNS[name]
    return {**PRESETS[PRESET], **overrides} if model_type == "vision_bigbird" else dict(overrides)
