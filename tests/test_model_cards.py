"""Model cards in model_cards/: each YAML header parses and carries the Hub metadata, every number in a card is what
scripts/make_model_cards.py measures (parameters exactly, MACs to the printed precision), each card is exactly
what the script writes, so no generated part was edited by hand, and the Fashion-MNIST card's study section is what
the script writes from docs/results.json and agrees with docs/results.md."""

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



def study_rows(text: str) -> dict[str, tuple[str, str]]:
    """{configuration: (test accuracy cell, params cell)} of the first table whose rows start `| `name` | what |
    test |`: the card's study table (params last) or the results table of docs/results.md (params 6th)."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([\w-]+)` \| (.*) \|$", line)
        if match and match[1] not in rows:  # docs/results.md's later tables (calibration) start the same way
            cells = match[2].split(" | ")
            rows[match[1]] = (cells[1], cells[-1] if len(cells) == 3 else cells[4])
    return rows


def test_study_section_is_what_the_generator_writes_from_docs_results_json():
    card = cards.FASHION_MNIST_CARD
    text = card_text(card)
    assert cards.STUDY_RESULTS.is_file(), "run `python scripts/compare_models.py --report` (writes docs/results.json)"
    study = json.loads(cards.STUDY_RESULTS.read_text())
    rendered = cards.render_card(card, text, study=study, study_path="docs/results.json")
    assert cards.read_section(rendered, "study") == cards.read_section(text, "study"), (
        "the card's study section differs from docs/results.json: run `python scripts/make_model_cards.py`"
    )
    assert rendered == text
    _, body = cards.split_front_matter(text)
    assert body.index("<!-- results:end -->") < body.index(cards.STUDY_HEADING) < body.index("<!-- study:start -->")
    assert body.index("<!-- study:end -->") < body.index("## Limitations")


def test_study_table_in_the_card_agrees_with_docs_results_md():
    """Independent of results.json: every configuration of docs/results.md, with the same test accuracy and
    parameter count, and the same claims."""
    study_text = cards.read_section(card_text(cards.FASHION_MNIST_CARD), "study")
    results_md = (cards.REPO_ROOT / "docs" / "results.md").read_text()
    card_rows, md_rows = study_rows(study_text), study_rows(results_md)
    assert md_rows and list(card_rows) == list(md_rows)
    assert card_rows == md_rows
    claims = [line for line in study_text.splitlines() if line.startswith("- **")]
    assert claims and all(line in results_md.splitlines() for line in claims)


def test_study_section_formatting_on_made_up_numbers():
    """The section's formatting, on a results.json with made-up numbers (in a temporary copy of the card only)."""
    card = cards.FASHION_MNIST_CARD
    study = json.loads(cards.STUDY_RESULTS.read_text())
    made_up = {  # name: (seed -> accuracy %), n = 3, 1 and 0 seeds
        "vbb": {"0": 91.25, "1": 90.75, "2": 91.0}, "swin": {"0": 89.125}, "vit": {},
    }
    entries = {entry["name"]: entry for entry in study["configurations"]}
    for name, per_seed in made_up.items():
        values = list(per_seed.values())
        entries[name].update(
            n_seeds=len(values), test_accuracy_per_seed=per_seed,
            test_accuracy_mean=sum(values) / len(values) if values else None,
            test_accuracy_sd=0.25 if len(values) == 3 else None, params=1_234_567,
        )
    study["claims"] = ["- **A made-up claim.** It holds."]
    study["seeds"] = [0, 1, 2]
    filled = cards.render_card(card, card_text(card), study=study, study_path="somewhere/results.json")
    section = cards.read_section(filled, "study")
    rows = study_rows(section)
    assert rows["vbb"] == ("91.00 ± 0.25 (n=3)", "1.235")
    assert rows["swin"] == ("89.12 (n=1)", "1.235")  # one seed: no standard deviation
    assert rows["vit"] == ("not run", "1.235")
    assert "- **A made-up claim.** It holds." in section.splitlines()
    assert "`somewhere/results.json`" in section and "seeds 0, 1, 2" in section
    assert "1.23 M parameters), is a different model, smaller than this demo model" in section.replace("\n", " ")
    assert cards.render_card(card, filled) == filled  # a later run without the study file keeps the section


def test_missing_study_results_leave_the_section_as_it_is(tmp_path, capsys):
    assert cards.load_study(tmp_path / "results.json") is None
    assert "left as it is" in capsys.readouterr().out
