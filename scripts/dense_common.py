"""What the dense-prediction training scripts (`train_semantic_segmentation.py`, `train_object_detection.py`) share:
argument helpers, the Vision Big Bird backbone's config and its start from a trained encoder, output-folder checks.
Imported as a sibling module (scripts/ is their folder); never run.
"""

import json
import logging
import os
from dataclasses import dataclass, field

from transformers import AutoConfig, TrainingArguments
from transformers.trainer_utils import sort_checkpoints

from vision_bigbird_hf import PRESETS, VisionBigBirdBackbone, VisionBigBirdConfig

logger = logging.getLogger(__name__)


class InvalidArgument(ValueError):
    """A command-line value a script refuses; the message names the flag, path or value and what to do."""


def arg(default, help_text: str, **metadata):  # a dataclass field with its --help text, as HfArgumentParser reads it
    return field(default=default, metadata={"help": help_text, **metadata})


@dataclass
class BackboneArguments:
    """A new model on a new Vision Big Bird backbone (preset, overrides, optionally a trained encoder's weights), or a
    trained model folder."""

    model_name_or_path: str | None = arg(None, "A trained model folder (this script's output) or Hub id to fine-tune.")
    model_preset: str | None = arg(None, "Size of a new backbone (None: tiny).", choices=sorted(PRESETS))
    config_overrides: str | None = arg(
        None, "A JSON object set on the new backbone's config, e.g. '{\"depths\": [1, 1, 1, 1]}'."
    )
    backbone_name_or_path: str | None = arg(
        None, "Start the new backbone from this trained Vision Big Bird folder's stem and encoder (a classifier, a "
        "backbone or a pretraining run); its architecture is used, and what is not part of the backbone is left out."
    )  # fmt: skip
    cache_dir: str | None = arg(None, "Where to store what is downloaded from the Hub.")
    model_revision: str = arg("main", "The model version to use (branch name, tag name or commit id).")
    token: str | None = arg(None, "The token for remote files (default: the `hf auth login` one).")

    @property
    def hub_kwargs(self) -> dict:
        return {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token}


def check_model_arguments(args: BackboneArguments):
    """Refuse combinations that mean nothing, and a local path that does not exist (not a Hub error)."""
    new_model_flags = [flag for flag in ("model_preset", "config_overrides") if getattr(args, flag) is not None]
    if args.model_name_or_path is not None and (new_model_flags or args.backbone_name_or_path is not None):
        flags = " and ".join(f"--{flag}" for flag in new_model_flags or ["backbone_name_or_path"])
        raise InvalidArgument(f"{flags} build a new model; they cannot be used with --model_name_or_path")
    if args.backbone_name_or_path is not None and new_model_flags:
        raise InvalidArgument(
            f"--{new_model_flags[0]} cannot be used with --backbone_name_or_path: the backbone takes that folder's "
            "architecture with its weights"
        )
    for flag in ("model_name_or_path", "backbone_name_or_path"):
        check_local_path(f"--{flag}", getattr(args, flag))
    if args.config_overrides is not None:
        parse_config_overrides(args.config_overrides)


def check_local_path(flag: str, path: str | None):
    """A value that can only be a local path (absolute, ./, ../, ~) must exist; a Hub id (`user/repo`) is left alone."""
    looks_local = path is not None and (os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") > 1)
    if looks_local and not os.path.isdir(os.path.expanduser(path)):
        raise InvalidArgument(f"{flag} {path}: no such folder")


def parse_config_overrides(text: str, flag: str = "--config_overrides") -> dict:
    """The JSON object given to `flag` (the backbone's --config_overrides, or a head's own overrides flag)."""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{flag} is not valid JSON ({error}): {text!r}") from None
    if not isinstance(overrides, dict):
        raise InvalidArgument(f"{flag} must be a JSON object, not {text!r}")
    return overrides


def build_backbone_config(args: BackboneArguments, out_features: list[str]) -> VisionBigBirdConfig:
    """The backbone's config: that of --backbone_name_or_path, or --model_preset with --config_overrides."""
    if args.backbone_name_or_path is not None:
        config = AutoConfig.from_pretrained(args.backbone_name_or_path, **args.hub_kwargs)
        if not isinstance(config, VisionBigBirdConfig):
            raise InvalidArgument(
                f"--backbone_name_or_path {args.backbone_name_or_path} holds a {config.model_type} model, not "
                "vision_bigbird"
            )
        config.out_features = out_features
        return config
    overrides = parse_config_overrides(args.config_overrides) if args.config_overrides else {}
    try:
        return VisionBigBirdConfig.from_preset(args.model_preset or "tiny", **overrides, out_features=out_features)
    except (TypeError, ValueError) as error:  # unknown field, or a value the config refuses
        raise InvalidArgument(f"--config_overrides {args.config_overrides}: {error}") from None


def load_backbone_weights(backbone: VisionBigBirdBackbone, args: BackboneArguments):
    """Copy the stem and encoder of --backbone_name_or_path into `backbone` (built from that folder's config) and log
    what was left out (a classification head, a pretraining decoder and mask token) and what is new."""
    source, info = VisionBigBirdBackbone.from_pretrained(
        args.backbone_name_or_path, out_features=backbone.config.out_features, output_loading_info=True,
        **args.hub_kwargs,
    )  # fmt: skip
    backbone.load_state_dict(source.state_dict())
    loaded = len(source.state_dict()) - len(info["missing_keys"])
    if loaded == 0:
        raise InvalidArgument(f"--backbone_name_or_path {args.backbone_name_or_path} holds no Vision Big Bird weights")
    logger.info(
        f"Backbone from {args.backbone_name_or_path}: {loaded} tensors loaded; left out (not part of the backbone): "
        f"{sorted(info['unexpected_keys']) or 'none'}; newly initialised: {sorted(info['missing_keys']) or 'none'}"
    )


def detect_last_checkpoint(training_args: TrainingArguments, overwrite_output_dir: bool) -> str | None:
    """The last complete checkpoint in output_dir to resume from, unless told to overwrite; refuse other content."""
    output_dir = training_args.output_dir
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InvalidArgument(f"--output_dir {output_dir} is a file, not a folder")
    if not (os.path.isdir(output_dir) and training_args.do_train) or overwrite_output_dir:
        return None
    checkpoints = sort_checkpoints(output_dir)  # checkpoint-<step> folders by step
    if not checkpoints and os.listdir(output_dir):
        raise InvalidArgument(
            f"--output_dir {output_dir} already exists and is not empty. Use --overwrite_output_dir to overcome."
        )
    # a checkpoint without trainer_state.json was cut short by a crash
    complete = [path for path in checkpoints if os.path.isfile(os.path.join(path, "trainer_state.json"))]
    if complete and training_args.resume_from_checkpoint is None:
        logger.info(
            f"Checkpoint detected, resuming training at {complete[-1]}. Use --overwrite_output_dir to start anew."
        )
    return complete[-1] if complete else None
