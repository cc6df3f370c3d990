"""Model cards and docs/presets.md, through `scripts/make_model_cards.py`'s command line: a card exists only for trained
weights (the Fashion-MNIST demo model); the committed card and presets page are exactly what the generator writes from
the committed sources; the metadata parses with huggingface_hub; the card's numbers are those of its committed
`demo_results.json` and of `docs/results.json`; parameter counts are checked against an independent count."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from vision_bigbird_hf import PRESETS, VisionBigBirdConfig, VisionBigBirdForImageClassification

REPO_ROOT = Path(__file__).resolve().parent.parent
CARDS = REPO_ROOT / "model_cards"
PRESETS_PAGE = REPO_ROOT / "docs" / "presets.md"
FASHION_MNIST = "vision-bigbird-fashion-mnist"
DEMO_RESULTS = CARDS / FASHION_MNIST / "demo_results.json"


def make_model_cards(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "make_model_cards.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The card and the presets page as the generator writes them from the committed sources, in a temporary folder."""
    cards_dir = tmp_path_factory.mktemp("cards")
    make_model_cards(
        "--demo_dir",
        str(CARDS / FASHION_MNIST),
        "--cards_dir",
        str(cards_dir),
        "--presets_page",
        str(cards_dir / "presets.md"),
    )
    return cards_dir


def test_committed_card_and_presets_page_are_what_the_generator_writes(generated):
    committed = (CARDS / FASHION_MNIST / "README.md").read_text()
    assert (generated / FASHION_MNIST / "README.md").read_text() == committed, (
        f"model_cards/{FASHION_MNIST}/README.md is stale: run `python scripts/make_model_cards.py`"
    )
    assert (generated / "presets.md").read_text() == PRESETS_PAGE.read_text(), (
        "docs/presets.md is stale: run `python scripts/make_model_cards.py`"
    )


def test_there_is_one_card_only_for_the_trained_demo_model():
    assert [path.parent.name for path in CARDS.glob("*/README.md")] == [FASHION_MNIST]


def test_metadata_and_sections():
    model_card = ModelCard.load(CARDS / FASHION_MNIST / "README.md")
    assert model_card.data.library_name == "transformers" and model_card.data.pipeline_tag == "image-classification"
    assert model_card.data.license == "apache-2.0" and "vision_bigbird" in model_card.data.tags
    for heading in ("## How to load it", "## Training", "## Results", "## Limitations", "## Citation"):
        assert heading in model_card.text, heading
    assert "@article{zhang2023visionbigbird" in model_card.text and "no position embedding" in model_card.text
    assert "`demo` preset" in model_card.text


def printed_parameters(text: str) -> list[int]:
    return [
        int(count.replace(",", "")) for count in re.findall(r"^\| this model, .*? \| ([\d,]+) \(", text, re.MULTILINE)
    ]


def parameter_count(config: VisionBigBirdConfig) -> int:
    with torch.device("meta"):
        model = VisionBigBirdForImageClassification(config)
    return sum(parameter.numel() for parameter in model.parameters())


def test_presets_page_has_one_section_per_preset_with_its_parameter_count():
    sections = re.split(r"^## `([\w-]+)`$", PRESETS_PAGE.read_text(), flags=re.MULTILINE)
    names, texts = sections[1::2], sections[2::2]
    assert names == list(PRESETS)
    for name, text in zip(names, texts):
        num_labels = 1000 if name in ("tiny", "small", "base") else 10
        expected = parameter_count(VisionBigBirdConfig.from_preset(name, num_labels=num_labels))
        assert set(printed_parameters(text)) == {expected}, name
        assert f"stochastic depth {PRESETS[name]['drop_path_rate']:g}," in text, name


def test_fashion_mnist_card_holds_the_numbers_and_command_of_its_demo_results():
    demo = json.loads(DEMO_RESULTS.read_text())
    model_card = ModelCard.load(CARDS / FASHION_MNIST / "README.md")
    (result,) = model_card.data.eval_results
    assert result.metric_type == "accuracy" and result.dataset_split == "test"
    assert result.metric_value == round(demo["test_accuracy"], 4)
    assert f"| {demo['test_accuracy']:.4f} |" in model_card.text
    assert f"| {demo['eval_accuracy']:.4f} |" in model_card.text
    assert f"{demo['pipeline_correct']} of {demo['pipeline_total']}" in model_card.text
    block = re.search(r"```bash\n(python scripts/train_image_classification.py.*?)\n```", model_card.text, re.DOTALL)[
        1
    ]
    argv = demo["training_command"]
    assert shlex.split(block.replace("\\\n", " "))[2:] == (argv[1:] if argv[0].endswith(".py") else argv)
    # the recorded command spells the demo preset as the tiny one with --config_overrides: the same model
    overrides = json.loads(argv[argv.index("--config_overrides") + 1])
    recorded = VisionBigBirdConfig.from_preset(argv[argv.index("--model_preset") + 1], num_labels=10, **overrides)
    assert recorded.to_dict() == VisionBigBirdConfig.from_preset("demo", num_labels=10).to_dict()
    assert set(printed_parameters(model_card.text)) == {parameter_count(recorded)}


def test_fashion_mnist_card_study_table_is_docs_results_json():
    study = json.loads((REPO_ROOT / "docs" / "results.json").read_text())
    text = (CARDS / FASHION_MNIST / "README.md").read_text()
    accuracy = r"[\d.]+ ± [\d.]+ \(n=\d\)|[\d.]+ \(n=1\)|not run"
    rows = dict(re.findall(rf"^\| `([\w-]+)` \| .*? \| ({accuracy}) \|", text, re.MULTILINE))
    assert list(rows) == [entry["name"] for entry in study["configurations"]]
    for entry in study["configurations"]:
        assert rows[entry["name"]].startswith(f"{entry['test_accuracy_mean']:.2f}"), entry["name"]


def test_a_new_demo_run_is_copied_into_the_card_folder_and_shown(tmp_path):
    demo = json.loads(DEMO_RESULTS.read_text())
    demo.update(test_accuracy=0.91234, eval_accuracy=0.90123, pipeline_correct=15, date_utc="2030-01-02 03:04")
    argv = demo["training_command"]  # as scripts/demo.py now spells it: the preset by name
    start = argv.index("--model_preset")
    demo["training_command"] = [*argv[:start], "--model_preset", "demo", *argv[argv.index("--config_overrides") + 2 :]]
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo_results.json").write_text(json.dumps(demo))
    make_model_cards(
        "--demo_dir",
        str(tmp_path / "demo"),
        "--cards_dir",
        str(tmp_path / "cards"),
        "--presets_page",
        str(tmp_path / "presets.md"),
    )
    assert json.loads((tmp_path / "cards" / FASHION_MNIST / "demo_results.json").read_text()) == demo
    model_card = ModelCard.load(tmp_path / "cards" / FASHION_MNIST / "README.md")
    assert model_card.data.eval_results[0].metric_value == 0.9123
    assert "--model_preset demo" in model_card.text and "--config_overrides" not in model_card.text
    assert "| 0.9123 |" in model_card.text and "| 0.9012 |" in model_card.text and "15 of 16" in model_card.text


def test_missing_demo_results_name_the_flag(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "make_model_cards.py"),
            "--demo_dir",
            str(tmp_path),
            "--cards_dir",
            str(tmp_path / "cards"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "--demo_dir" in result.stderr
