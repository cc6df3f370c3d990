"""scripts/training_common.py: a recipe file's values become defaults that any flag given on the command line
overrides, abbreviated flags are refused, and an unknown recipe is named."""

import json
from dataclasses import dataclass

import pytest
import training_common
from transformers import HfArgumentParser


@dataclass
class Flags:
    recipe: str = "none"
    learning_rate: float = 1.0
    weight_decay: float = 0.0
    mask_ratio: float = 0.5


@pytest.fixture
def recipes(tmp_path, monkeypatch):
    (tmp_path / "test.json").write_text(json.dumps({"values": {"learning_rate": 0.25, "weight_decay": 0.05}}))
    monkeypatch.setattr(training_common, "RECIPES_DIR", str(tmp_path))


def parse(args):
    parser = HfArgumentParser(Flags, allow_abbrev=False)
    values = training_common.read_recipe(parser, args)
    return parser.parse_args_into_dataclasses(args=args)[0], values


def test_recipe_fills_defaults_and_given_flags_win(recipes):
    flags, values = parse(["--recipe", "test", "--weight_decay=0.0"])  # given, even at the field's own default
    assert values == {"learning_rate": 0.25, "weight_decay": 0.05}
    assert (flags.learning_rate, flags.weight_decay, flags.mask_ratio) == (0.25, 0.0, 0.5)
    assert parse(["--weight_decay", "0.1"])[0].learning_rate == 1.0  # no recipe: the fields' defaults


def test_abbreviations_and_unknown_recipes_are_refused(recipes):
    with pytest.raises(ValueError, match="--weight_dec"):
        parse(["--recipe", "test", "--weight_dec", "0.1"])
    with pytest.raises(training_common.InvalidArgument, match=r"--recipe imagenet: no such recipe; .*'test'"):
        parse(["--recipe", "imagenet"])


@pytest.mark.parametrize("name", ["simmim", "ade20k", "imagenet"])
def test_shipped_recipes_cite_every_value(name):
    with open(f"{training_common.RECIPES_DIR}/{name}.json") as file:
        recipe = json.load(file)
    assert set(recipe["values"]) == set(recipe["sources"]) and all(recipe["sources"].values())
