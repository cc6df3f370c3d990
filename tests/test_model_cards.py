"""Model cards in model_cards/: each YAML header parses and carries the Hub metadata, every number in a card is what
scripts/make_model_cards.py measures (parameters exactly, MACs to the printed precision), and each card is exactly
what the script writes, so no generated part was edited by hand."""

import json
import re

import pytest
import torch
from transformers import SwinConfig, SwinForImageClassification

import make_model_cards as cards
from model_cost import SWIN_SIZES, count_forward_macs, count_parameters
from vision_bigbird_hf import VisionBigBirdForImageClassification


ALL_CARDS = [*cards.PRESET_CARDS, cards.FASHION_MNIST_CARD]


def card_text(card: str) -> str:
    return (cards.MODEL_CARDS / card / "README.md").read_text()


def test_there_is_one_card_per_preset_and_one_for_the_demo_model():
    assert sorted(path.parent.name for path in cards.MODEL_CARDS.glob("*/README.md")) == sorted(ALL_CARDS)
    assert set(cards.PRESET_CARDS.values()) == {"tiny", "small", "base"}


@pytest.mark.parametrize("card", ALL_CARDS)
def test_yaml_header_has_the_hub_metadata(card):
    metadata, body = cards.split_front_matter(card_text(card))
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "image-classification"
    assert metadata["license"] == "apache-2.0"
    assert "vision_bigbird" in metadata["tags"]
    assert isinstance(metadata["datasets"], list)
    if card in cards.PRESET_CARDS:
        # no weights exist for the presets, so nothing was measured and nothing may be claimed
        assert metadata["datasets"] == []
        assert "model-index" not in metadata
        assert "No ImageNet weights exist yet" in body


@pytest.mark.parametrize("card", ALL_CARDS)
def test_card_has_the_required_sections(card):
    _, body = cards.split_front_matter(card_text(card))
    for heading in ("## How to load it", "## Training", "## Results", "## Limitations", "## Citation"):
        assert heading in body, heading
    assert "trust_remote_code=True" in body and "import vision_bigbird_hf" in body
    assert "no position embedding" in body.lower()
    assert "@article{zhang2023visionbigbird" in body and "arXiv:2311.05988" in body
    assert "author  = {Zhang, Zhemin and Gong, Xun}" in body


def printed_costs(card: str) -> dict[tuple[str, int], tuple[int, str]]:
    """{(model column, image size): (parameters, printed MACs like '4.30 G')} from the card's cost table."""
    row = r"^\| (.+?) \| (\d+)x\2 \| ([\d,]+) \([\d.]+ M\) \| ([\d.]+ [GM]) \|$"
    rows = re.findall(row, cards.read_section(card_text(card), "cost"), flags=re.MULTILINE)
    return {(name, int(size)): (int(params.replace(",", "")), macs) for name, size, params, macs in rows}


def measured(model_builder, image_size: int) -> tuple[int, int]:
    with torch.device("meta"):
        model = model_builder().eval()
        return count_parameters(model), count_forward_macs(model, torch.randn(1, 3, image_size, image_size))


def matches_printed(macs: int, printed: str) -> bool:
    value, unit = printed.split()
    return f"{macs / {'G': 1e9, 'M': 1e6}[unit]:.2f}" == value


@pytest.mark.parametrize("card", ALL_CARDS)
def test_printed_parameters_and_macs_are_what_model_cost_measures(card):
    costs = printed_costs(card)
    if card in cards.PRESET_CARDS:
        preset = cards.PRESET_CARDS[card]
        config = cards.preset_config(preset)
        swin_row = (f"{cards.SWIN_NAMES[preset]} (transformers' Swin), 1000-class head, for comparison", 224)
        expected_rows = {("this model, 1000-class head", 224), swin_row}
        swin_params, swin_macs = measured(
            lambda: SwinForImageClassification(SwinConfig(**SWIN_SIZES[preset], num_labels=1000)), 224
        )
        assert costs[swin_row][0] == swin_params
        assert matches_printed(swin_macs, costs[swin_row][1]), (swin_macs, costs[swin_row])
    else:
        config = cards.fashion_mnist_config()
        expected_rows = {("this model, 10-class head", 32), ("this model, 10-class head", 224)}
        assert config.num_labels == 10 and config.hidden_sizes == [32, 64, 128, 256]
    assert set(costs) == expected_rows
    for (name, size), (params, macs) in costs.items():
        if name.startswith("this model"):
            own_params, own_macs = measured(lambda: VisionBigBirdForImageClassification(config), size)
            assert params == own_params
            assert matches_printed(own_macs, macs), (size, own_macs, macs)


@pytest.mark.parametrize("card", ALL_CARDS)
def test_card_is_exactly_what_the_generator_writes(card):
    text = card_text(card)
    assert cards.render_card(card, text) == text, f"run `python scripts/make_model_cards.py` to refresh {card}"


def test_fashion_mnist_results_are_only_the_measured_ones():
    text = card_text(cards.FASHION_MNIST_CARD)
    metadata, body = cards.split_front_matter(text)
    results = cards.read_section(body, "results")
    source = re.search(r"Numbers from `([^`]+)`", results)
    if source is None:  # not filled in yet: then the card must claim no number at all
        assert "Not measured yet" in results
        assert "model-index" not in metadata
        return
    test_row = re.search(r"\| test \(official Fashion-MNIST test set\) \| [\d,]+ \| ([\d.]+) \|", results)
    table_accuracy = float(test_row[1])
    (model_index,) = metadata["model-index"]
    (result,) = model_index["results"]
    assert result["metrics"][0]["value"] == table_accuracy
    metrics_path = cards.REPO_ROOT / source[1]
    if metrics_path.exists():  # the run folder is not committed; when it is there, the card must match it
        metrics = json.loads(metrics_path.read_text())
        assert f"{metrics['test_accuracy']:.4f}" == f"{table_accuracy:.4f}"


def test_results_are_filled_from_a_metrics_file_and_kept_on_the_next_run():
    """The script's formatting, on a results file shaped like the Trainer's all_results.json (values made up here,
    in a temporary copy of the card only)."""
    metrics = {"epoch": 4.0, "eval_accuracy": 0.87654, "eval_samples": 6000, "test_accuracy": 0.86543,
               "test_samples": 10000, "train_runtime": 543.2, "train_samples": 54000}
    card = cards.FASHION_MNIST_CARD
    filled = cards.render_card(card, card_text(card), metrics, "runs/some-run/all_results.json")
    metadata, body = cards.split_front_matter(filled)
    results = cards.read_section(body, "results")
    assert "| test (official Fashion-MNIST test set) | 10,000 | 0.8654 |" in results
    assert "| validation (held out from the training split) | 6,000 | 0.8765 |" in results
    assert "Not measured yet" not in results
    assert metadata["model-index"][0]["results"][0]["metrics"] == [
        {"type": "accuracy", "value": 0.8654, "name": "Accuracy"}
    ]
    assert metadata["model-index"][0]["results"][0]["dataset"]["split"] == "test"
    assert cards.render_card(card, filled) == filled  # a later run without a results file keeps them

