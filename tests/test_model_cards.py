"""Model cards, through `scripts/make_model_cards.py`'s command line: each committed card is exactly what the generator
writes from the committed sources; the metadata parses with huggingface_hub; the presets claim no accuracy; the
Fashion-MNIST card's numbers are those of its committed `demo_results.json` and of `docs/results.json`; parameter
counts are checked against an independent count."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


REPO_ROOT = Path(__file__).resolve().parent.parent
CARDS = REPO_ROOT / "model_cards"
PRESET_CARDS = {"vision-bigbird-tiny": "tiny", "vision-bigbird-small": "small", "vision-bigbird-base": "base"}
FASHION_MNIST = "vision-bigbird-fashion-mnist"
DEMO_RESULTS = CARDS / FASHION_MNIST / "demo_results.json"


def make_model_cards(*args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_model_cards.py"), *args],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The cards as the generator writes them from the committed sources, in a temporary folder."""
    cards_dir = tmp_path_factory.mktemp("cards")
    make_model_cards("--demo_dir", str(CARDS / FASHION_MNIST), "--cards_dir", str(cards_dir))
    return cards_dir


@pytest.mark.parametrize("card", [*PRESET_CARDS, FASHION_MNIST])
def test_committed_card_is_what_the_generator_writes(generated, card):
    committed = (CARDS / card / "README.md").read_text()
    assert (generated / card / "README.md").read_text() == committed, (
        f"model_cards/{card}/README.md is stale: run `python scripts/make_model_cards.py`"
    )


def test_there_is_one_card_per_preset_and_one_for_the_demo_model():
    assert sorted(path.parent.name for path in CARDS.glob("*/README.md")) == sorted([*PRESET_CARDS, FASHION_MNIST])


@pytest.mark.parametrize("card", [*PRESET_CARDS, FASHION_MNIST])
def test_metadata_and_sections(card):
    model_card = ModelCard.load(CARDS / card / "README.md")
    assert model_card.data.library_name == "transformers" and model_card.data.pipeline_tag == "image-classification"
    assert model_card.data.license == "apache-2.0" and "vision_bigbird" in model_card.data.tags
    for heading in ("## How to load it", "## Training", "## Results", "## Limitations", "## Citation"):
        assert heading in model_card.text, heading
    assert "@article{zhang2023visionbigbird" in model_card.text and "no position embedding" in model_card.text


@pytest.mark.parametrize("card", PRESET_CARDS)
def test_preset_cards_claim_no_accuracy(card):
    model_card = ModelCard.load(CARDS / card / "README.md")
    assert model_card.data.eval_results is None and not model_card.data.datasets
    assert "model-index" not in model_card.content and "%" not in model_card.text
    assert "no weights trained on a real dataset exist" in model_card.text


def printed_parameters(text: str) -> list[int]:
    return [int(count.replace(",", "")) for count in re.findall(r"^\| this model, .*? \| ([\d,]+) \(", text, re.M)]


@pytest.mark.parametrize("card", PRESET_CARDS)
def test_preset_parameter_count_is_the_models(card):
    with torch.device("meta"):
        config = VisionBigBirdConfig.from_preset(PRESET_CARDS[card], num_labels=1000)
        model = VisionBigBirdForImageClassification(config)
    expected = sum(parameter.numel() for parameter in model.parameters())
    assert printed_parameters((CARDS / card / "README.md").read_text()) == [expected]


def test_fashion_mnist_card_holds_the_numbers_and_command_of_its_demo_results():
    demo = json.loads(DEMO_RESULTS.read_text())
    model_card = ModelCard.load(CARDS / FASHION_MNIST / "README.md")
    (result,) = model_card.data.eval_results
    assert result.metric_type == "accuracy" and result.dataset_split == "test"
    assert result.metric_value == round(demo["test_accuracy"], 4)
    assert f"| {demo['test_accuracy']:.4f} |" in model_card.text
    assert f"| {demo['eval_accuracy']:.4f} |" in model_card.text
    assert f"{demo['pipeline_correct']} of {demo['pipeline_total']}" in model_card.text
    block = re.search(r"```bash\n(python scripts/train_image_classification.py.*?)\n```", model_card.text, re.S)[1]
    argv = demo["training_command"]
    assert shlex.split(block.replace("\\\n", " "))[2:] == (argv[1:] if argv[0].endswith(".py") else argv)
    overrides = json.loads(argv[argv.index("--config_overrides") + 1])
    with torch.device("meta"):
        config = VisionBigBirdConfig.from_preset("tiny", num_labels=10, **overrides)
        model = VisionBigBirdForImageClassification(config)
    assert set(printed_parameters(model_card.text)) == {sum(parameter.numel() for parameter in model.parameters())}


def test_fashion_mnist_card_study_table_is_docs_results_json():
    study = json.loads((REPO_ROOT / "docs" / "results.json").read_text())
    text = (CARDS / FASHION_MNIST / "README.md").read_text()
    accuracy = r"[\d.]+ ± [\d.]+ \(n=\d\)|[\d.]+ \(n=1\)|not run"
    rows = dict(re.findall(rf"^\| `([\w-]+)` \| .*? \| ({accuracy}) \|", text, re.M))
    assert list(rows) == [entry["name"] for entry in study["configurations"]]
    for entry in study["configurations"]:
        assert rows[entry["name"]].startswith(f"{entry['test_accuracy_mean']:.2f}"), entry["name"]


def test_a_new_demo_run_is_copied_into_the_card_folder_and_shown(tmp_path):
    demo = json.loads(DEMO_RESULTS.read_text())
    demo.update(test_accuracy=0.91234, eval_accuracy=0.90123, pipeline_correct=15, date_utc="2030-01-02 03:04")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo_results.json").write_text(json.dumps(demo))
    make_model_cards("--demo_dir", str(tmp_path / "demo"), "--cards_dir", str(tmp_path / "cards"))
    assert json.loads((tmp_path / "cards" / FASHION_MNIST / "demo_results.json").read_text()) == demo
    model_card = ModelCard.load(tmp_path / "cards" / FASHION_MNIST / "README.md")
    assert model_card.data.eval_results[0].metric_value == 0.9123
    assert "| 0.9123 |" in model_card.text and "| 0.9012 |" in model_card.text and "15 of 16" in model_card.text


def test_missing_demo_results_name_the_flag(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_model_cards.py"), "--demo_dir",
                             str(tmp_path), "--cards_dir", str(tmp_path / "cards")], capture_output=True, text=True)
    assert result.returncode != 0 and "--demo_dir" in result.stderr
