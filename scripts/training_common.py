"""What the training scripts share beyond data (train_image_classification.py, pretrain_masked_image_modeling.py, the
dense-prediction scripts): argument helpers, recipes as data, logging, output-folder and local-path checks.
Imported as a sibling module (scripts/ is their folder); never run.
"""

import argparse
import json
import logging
import os
import sys
from dataclasses import field

import datasets
import transformers
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import sort_checkpoints

logger = logging.getLogger(__name__)
RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


class InvalidArgument(ValueError):
    """A command-line value the script refuses; the message names the flag, path or value and what to do."""


def arg(default, help_text: str, **metadata):  # a dataclass field with its --help text, as HfArgumentParser reads it
    return field(default=default, metadata={"help": help_text, **metadata})


def check_local_path(flag: str, name: str):
    """A `--model_name_or_path` that is no folder and cannot be a Hub id (or names a folder under an existing local
    one) is a missing local folder: say so, instead of letting the Hub report a bad id or no connection."""
    if os.path.isdir(name):
        return
    try:
        validate_repo_id(name)
        is_repo_id = not (os.path.exists(name) or os.path.isdir(os.path.dirname(name)) or name.startswith(("./", "~")))
    except HFValidationError:
        is_repo_id = False
    if not is_repo_id:
        raise InvalidArgument(f"{flag} {name}: no such folder (and not a Hub model id)")


def detect_last_checkpoint(training_args: TrainingArguments, overwrite_output_dir: bool) -> str | None:
    """The last complete checkpoint in output_dir to resume from, unless told to overwrite; refuse other content."""
    output_dir = training_args.output_dir
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InvalidArgument(f"--output_dir {output_dir} is a file: give a folder to write the run to")
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
            f"Checkpoint detected, resuming training at {complete[-1]}. To avoid this behavior, change "
            "the `--output_dir` or add `--overwrite_output_dir` to train from scratch."
        )
    return complete[-1] if complete else None


def parse_config_overrides(text: str | None, flag: str = "--config_overrides") -> dict:
    """The JSON object given to `flag` (a model's --config_overrides, or a head's own overrides flag); {} if None."""
    if text is None:
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{flag} is not valid JSON ({error}): {text!r}") from None
    if not isinstance(overrides, dict):
        raise InvalidArgument(f"{flag} must be a JSON object, not {text!r}")
    return overrides


def recipe_values(name: str) -> dict:
    """The "values" of scripts/recipes/NAME.json ({} for none); each has its source under "sources"."""
    if name == "none":
        return {}
    path = os.path.join(RECIPES_DIR, f"{name}.json")
    if not os.path.isfile(path):
        known = sorted(file[:-5] for file in os.listdir(RECIPES_DIR) if file.endswith(".json"))
        raise InvalidArgument(f"--recipe {name}: no such recipe; choose none or one of {known}")
    with open(path) as file:
        return json.load(file)["values"]


def read_recipe(parser: argparse.ArgumentParser, args: list[str]) -> dict:
    """`--recipe NAME` on the command line: scripts/recipes/NAME.json's values become the parser's defaults, so any flag
    given on the command line wins over the recipe (abbreviated flags are refused: build the parser with
    `allow_abbrev=False`). Returns the recipe's values ({} for none)."""
    recipe_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    recipe_parser.add_argument("--recipe", default="none")
    values = recipe_values(recipe_parser.parse_known_args(args)[0].recipe)
    parser.set_defaults(**values)
    return values


def parse_with_recipe(parser: HfArgumentParser, args: list[str]) -> tuple:
    """The dataclasses, from the command line (`read_recipe`, then the parser) or from one `.json` file of arguments
    (as in transformers' examples), whose "recipe" fills what the file does not give."""
    if len(args) == 1 and args[0].endswith(".json"):
        with open(args[0]) as file:
            given = json.load(file)
        return parser.parse_dict({**recipe_values(given.get("recipe", "none")), **given})
    read_recipe(parser, args)
    return parser.parse_args_into_dataclasses(args=args)


def save_resolved_arguments(output_dir: str, *arguments):
    """Every value the run used (recipe and flags, resolved) -> `training_recipe.json` in the output folder."""
    resolved = {}
    for group in arguments:
        resolved |= group.to_dict() if isinstance(group, TrainingArguments) else vars(group)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "training_recipe.json"), "w") as file:
        json.dump(resolved, file, indent=2, sort_keys=True, default=str)


def setup_logging(training_args: TrainingArguments):
    """transformers' example logging: info on the main process unless --log_level says otherwise."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", stream=sys.stdout)
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for name in ("__main__", "image_data", "training_common", "dense_common"):  # the script and its shared modules
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, device: "
        f"{training_args.device}, n_gpu: {training_args.n_gpu}, distributed training: "
        f"{training_args.parallel_mode.value == 'distributed'}, 16-bits training: "
        f"{training_args.fp16 or training_args.bf16}"
    )
