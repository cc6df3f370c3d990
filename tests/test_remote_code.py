"""Hub remote code: what `save_pretrained` of each of this package's models and image processors writes
(`register_for_auto_class`: the class's code files and an `auto_map` naming it), loads with `trust_remote_code=True` in
a Python where `vision_bigbird_hf` cannot be imported, and gives the same outputs; and `scripts/export_for_hub.py`
turns a training run into such a folder with its model card.

The loading side runs in one subprocess (about 20 s): a meta-path finder blocks every `vision_bigbird_hf` import,
HF_MODULES_CACHE is a fresh folder and HF_HUB_OFFLINE=1. It loads every saved folder as the class it was saved from
(AutoModelForImageClassification and pipeline("image-classification"), AutoModel, the class `auto_map["AutoBackbone"]`
names, AutoModelForMaskedImageModeling) with its AutoConfig and AutoImageProcessor, and writes the outputs to a file
that the tests compare with this process's.
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import docs_python_block, tiny_config_kwargs
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline
from transformers.dynamic_module_utils import get_imports

import vision_bigbird_hf
from vision_bigbird_hf import (
    VisionBigBirdBackbone,
    VisionBigBirdConfig,
    VisionBigBirdForImageClassification,
    VisionBigBirdForMaskedImageModeling,
    VisionBigBirdImageProcessor,
    VisionBigBirdImageProcessorPil,
    VisionBigBirdModel,
)

PACKAGE_DIR = Path(vision_bigbird_hf.__file__).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_CARD = REPO_ROOT / "model_cards" / "vision-bigbird-fashion-mnist" / "README.md"
CODE_FILES = [
    "configuration_vision_bigbird.py",
    "modeling_vision_bigbird.py",
    "image_processing_vision_bigbird.py",
    "image_decoding.py",
    "image_processing_pil_vision_bigbird.py",
]
ALL_STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]
CONFIG_CLASS = "configuration_vision_bigbird.VisionBigBirdConfig"
# The one entry besides AutoConfig that `save_pretrained` of each model class writes into config.json's auto_map
SAVED_AUTO_CLASS = {
    "classifier": ("AutoModelForImageClassification", "modeling_vision_bigbird.VisionBigBirdForImageClassification"),
    "base": ("AutoModel", "modeling_vision_bigbird.VisionBigBirdModel"),
    "backbone": ("AutoBackbone", "modeling_vision_bigbird.VisionBigBirdBackbone"),
    "mim": ("AutoModelForMaskedImageModeling", "modeling_vision_bigbird.VisionBigBirdForMaskedImageModeling"),
}
SMALL_PROCESSOR = {"size": {"shortest_edge": 72}, "crop_size": {"height": 64, "width": 64}}
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
has_fashion_mnist = os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))

# Runs first in the subprocess: no `vision_bigbird_hf`, however it is installed (editable finder, .pth, site-packages).
BLOCK_PACKAGE = """
import importlib.abc, sys

class BlockVisionBigBird(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "vision_bigbird_hf":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/test_remote_code.py)", name=name)
        return None

sys.meta_path.insert(0, BlockVisionBigBird())
"""

LOAD_EVERYTHING = """
import json, sys
import torch
from PIL import Image
from transformers import AutoBackbone, AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
from transformers import AutoModelForMaskedImageModeling, pipeline

spec = json.loads(sys.argv[1])
try:
    import vision_bigbird_hf
    raise SystemExit("vision_bigbird_hf is importable: the test would prove nothing")
except ModuleNotFoundError:
    pass

image = Image.open(spec["image"])
results = {}


def class_path(obj):
    return type(obj).__module__ + "." + type(obj).__name__


with torch.no_grad():
    for name in ("classifier", "hub"):
        if name not in spec:
            continue
        folder = spec[name]
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        pixel_values = processor(image, return_tensors="pt").pixel_values
        classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        classify = pipeline("image-classification", model=folder, trust_remote_code=True)
        results[name] = {
            "classes": [class_path(obj) for obj in (config, classifier, processor)],
            "pixel_values": pixel_values,
            "logits": classifier(pixel_values).logits,
            "pipeline": classify(spec["image"], top_k=3),
        }

    folder = spec["base"]
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    results["base"] = {
        "classes": [class_path(obj) for obj in (base, processor)],
        "pixel_values": pixel_values,
        "last_hidden_state": base(pixel_values).last_hidden_state,
    }

    folder = spec["mim"]
    mim = AutoModelForMaskedImageModeling.from_pretrained(folder, trust_remote_code=True).eval()
    results["mim"] = {
        "classes": [class_path(mim)],
        "reconstruction": mim(torch.load(spec["backbone_input"])).reconstruction,
    }

    folder = spec["backbone"]
    namespace = {}
    exec(spec["backbone_snippet"], namespace)  # docs/backbone.md's remote-code snippet, on this folder
    config, backbone = namespace["config"], namespace["backbone"].eval()
    try:
        AutoBackbone.from_pretrained(folder, trust_remote_code=True)
        auto_backbone_from_pretrained = "loaded"
    except Exception as error:
        auto_backbone_from_pretrained = type(error).__name__
    results["backbone"] = {
        "classes": [class_path(backbone)],
        "out_features": backbone.out_features,
        "feature_maps": list(backbone(torch.load(spec["backbone_input"])).feature_maps),
        "from_config": type(AutoBackbone.from_config(config, trust_remote_code=True)).__name__,
        "auto_backbone_from_pretrained": auto_backbone_from_pretrained,
    }

results["imported"] = sorted(name for name in sys.modules if name.split(".")[0] == "vision_bigbird_hf")
torch.save(results, spec["output"])
"""


# ---- Folders saved by the package ---------------------------------------------------


def tiny_classifier() -> VisionBigBirdForImageClassification:
    labels = ["cat", "dog", "bird", "fish"]
    config = VisionBigBirdConfig(
        **tiny_config_kwargs(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    )
    return VisionBigBirdForImageClassification(config).eval()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("remote_code")


@pytest.fixture(scope="module")
def saved(workdir) -> dict[str, Path]:
    """Folders written by plain `save_pretrained` calls, one per model class, with a processor of either backend."""
    torch.manual_seed(0)
    folders = {name: workdir / name for name in SAVED_AUTO_CLASS}
    tiny_classifier().save_pretrained(folders["classifier"])
    VisionBigBirdImageProcessor(**SMALL_PROCESSOR).save_pretrained(folders["classifier"])
    VisionBigBirdModel(VisionBigBirdConfig(**tiny_config_kwargs())).save_pretrained(folders["base"])
    VisionBigBirdImageProcessorPil(**SMALL_PROCESSOR).save_pretrained(folders["base"])
    backbone = VisionBigBirdBackbone(VisionBigBirdConfig(**tiny_config_kwargs(out_features=ALL_STAGES)))
    for norm in backbone.hidden_states_norms.values():  # trained-looking norms, so loading them is checked
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    backbone.save_pretrained(folders["backbone"])
    VisionBigBirdForMaskedImageModeling(VisionBigBirdConfig(**tiny_config_kwargs())).save_pretrained(folders["mim"])
    return folders


def export_for_hub(*args: str) -> subprocess.CompletedProcess:
    """scripts/export_for_hub.py through its command line."""
    command = [sys.executable, str(REPO_ROOT / "scripts" / "export_for_hub.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def exported_folder(run_dir: Path, output_dir: Path, *args: str) -> Path:
    result = export_for_hub("--run_dir", str(run_dir), "--output_dir", str(output_dir), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.fixture(scope="module")
def exported_classifier(saved, workdir) -> Path:
    """The saved classifier folder through scripts/export_for_hub.py (a generated card)."""
    return exported_folder(saved["classifier"], workdir / "hub-classifier")


@pytest.fixture(scope="module")
def training_run(workdir) -> Path:
    """A real (two-step) run of scripts/train_image_classification.py, through its command line, on Fashion-MNIST."""
    if not has_fashion_mnist:
        pytest.skip(f"Fashion-MNIST not in {DEFAULT_FASHION_MNIST_DIR}: `sudo apt-get install dataset-fashion-mnist`")
    run_dir = workdir / "run"
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "train_image_classification.py"),
        "--model_preset",
        "demo",
        "--image_size",
        "32",
        "--output_dir",
        str(run_dir),
        "--do_train",
        "--do_eval",
        "--do_predict",
        "--max_steps",
        "2",
        "--max_train_samples",
        "64",
        "--max_eval_samples",
        "32",
        "--max_predict_samples",
        "32",
        "--per_device_train_batch_size",
        "32",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def exported(training_run, workdir) -> Path:
    return exported_folder(training_run, workdir / "hub", "--model_card", str(FASHION_MNIST_CARD))


@pytest.fixture(scope="module")
def image_path(workdir) -> Path:
    path = workdir / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (75, 90, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def remote(saved, exported_classifier, workdir, image_path, request) -> dict:
    """Everything the package-free subprocess loaded and computed."""
    spec = {name: str(folder) for name, folder in saved.items()}
    spec["classifier"] = str(exported_classifier)
    if has_fashion_mnist:
        spec["hub"] = str(request.getfixturevalue("exported"))
    spec["backbone_snippet"] = docs_python_block("snippet: remote-code-backbone").replace(
        "path/to/saved/model", str(saved["backbone"])
    )
    spec["image"] = str(image_path)
    spec["backbone_input"] = str(workdir / "backbone_input.pt")
    spec["output"] = str(workdir / "remote_outputs.pt")
    torch.save(torch.randn(1, 3, 64, 96), spec["backbone_input"])
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(workdir / "hf_modules"),
        "TRANSFORMERS_VERBOSITY": "error",
    }
    env.pop("PYTHONPATH", None)
    process = subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE + LOAD_EVERYTHING, json.dumps(spec)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return torch.load(spec["output"], weights_only=False)


# ---- What save_pretrained writes ---------------------------------------------------------


@pytest.mark.parametrize("name", SAVED_AUTO_CLASS)
def test_config_auto_map_names_the_saved_model_class(saved, name):
    auto_map = json.loads((saved[name] / "config.json").read_text())["auto_map"]
    auto_class, class_reference = SAVED_AUTO_CLASS[name]
    assert auto_map == {"AutoConfig": CONFIG_CLASS, auto_class: class_reference}


def test_a_config_built_in_python_has_no_auto_map():
    """`auto_map` is written by `save_pretrained`, not carried by every config."""
    assert getattr(VisionBigBirdConfig(), "auto_map", None) is None


def test_processor_auto_map_names_the_saved_image_processor(saved, exported_classifier):
    def processor_auto_map(folder):
        return json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]

    torchvision_class = {"AutoImageProcessor": "image_processing_vision_bigbird.VisionBigBirdImageProcessor"}
    assert processor_auto_map(saved["classifier"]) == torchvision_class
    assert processor_auto_map(saved["base"]) == {
        "AutoImageProcessor": "image_processing_pil_vision_bigbird.VisionBigBirdImageProcessorPil"
    }
    assert processor_auto_map(exported_classifier) == torchvision_class


def test_folders_carry_the_code_of_the_saved_classes(saved, exported_classifier):
    def code_files(folder):
        return sorted(path.name for path in folder.glob("*.py"))

    # the saved classes' files and what they import (the processors import image_decoding, the PIL twin the
    # torchvision file)
    assert code_files(saved["classifier"]) == sorted(CODE_FILES[:4])
    assert code_files(saved["base"]) == sorted(CODE_FILES)
    assert code_files(saved["backbone"]) == code_files(saved["mim"]) == sorted(CODE_FILES[:2])
    assert code_files(exported_classifier) == sorted(CODE_FILES[:4])
    for path in exported_classifier.glob("*.py"):
        assert path.read_bytes() == (PACKAGE_DIR / path.name).read_bytes(), path.name


@pytest.mark.parametrize("code_file", CODE_FILES)
def test_code_files_are_self_contained(saved, code_file):
    """Only relative imports of files that travel with the folder, and absolute imports of installed libraries other
    than this package (what transformers' `check_imports` requires of remote code)."""
    path = saved["base"] / code_file
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            assert node.level == 1 and (saved["base"] / f"{node.module}.py").exists(), ast.unparse(node)
    for module in get_imports(path):
        assert module.split(".")[0] != "vision_bigbird_hf", module
        assert importlib.util.find_spec(module) is not None, module


# ---- Loading without the package gives the same outputs ------------------------------------------


def test_nothing_of_the_package_was_imported_in_the_subprocess(remote):
    assert remote["imported"] == []
    for entry in ("classifier", "base", "backbone", "mim", *(["hub"] if "hub" in remote else [])):
        for class_path in remote[entry]["classes"]:
            assert class_path.startswith("transformers_modules."), class_path


def test_every_class_loads_with_the_expected_type(remote):
    class_names = [path.rsplit(".", 1)[1] for path in remote["classifier"]["classes"]]
    assert class_names == ["VisionBigBirdConfig", "VisionBigBirdForImageClassification", "VisionBigBirdImageProcessor"]
    assert [path.rsplit(".", 1)[1] for path in remote["base"]["classes"]] == [
        "VisionBigBirdModel",
        "VisionBigBirdImageProcessorPil",
    ]
    assert remote["mim"]["classes"][0].endswith(".VisionBigBirdForMaskedImageModeling")
    assert remote["backbone"]["from_config"] == "VisionBigBirdBackbone"
    assert remote["backbone"]["out_features"] == ALL_STAGES[1:]


def test_auto_backbone_from_pretrained_on_a_folder_fails_as_documented(remote):
    """docs/backbone.md: transformers 5.24's AutoBackbone.from_pretrained validates the folder as a Hub repo id."""
    assert remote["backbone"]["auto_backbone_from_pretrained"] == "HFValidationError"


def reference_outputs(folder: Path, image_path: Path) -> dict:
    """The same computations with this package's classes."""
    pixel_values = AutoImageProcessor.from_pretrained(folder)(Image.open(image_path), return_tensors="pt").pixel_values
    classifier = AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return {
            "pixel_values": pixel_values,
            "logits": classifier(pixel_values).logits,
            "pipeline": pipeline("image-classification", model=str(folder))(str(image_path), top_k=3),
        }


@pytest.mark.parametrize("name", ["classifier", "hub"])
def test_classifier_folder_gives_the_same_outputs_without_the_package(
    remote, exported_classifier, image_path, name, request
):
    if name == "hub" and "hub" not in remote:
        pytest.skip("no exported training run (Fashion-MNIST missing)")
    folder = exported_classifier if name == "classifier" else request.getfixturevalue("exported")
    expected = reference_outputs(folder, image_path)
    got = remote[name]
    assert torch.equal(got["pixel_values"], expected["pixel_values"])
    torch.testing.assert_close(got["logits"], expected["logits"])
    assert [p["label"] for p in got["pipeline"]] == [p["label"] for p in expected["pipeline"]]
    scores = [[prediction["score"] for prediction in outputs["pipeline"]] for outputs in (got, expected)]
    np.testing.assert_allclose(*scores, rtol=1e-5)


def test_base_folder_saved_with_the_pil_processor_gives_the_same_outputs(remote, saved, image_path):
    image = Image.open(image_path)
    expected = AutoImageProcessor.from_pretrained(saved["base"], backend="pil")(image, return_tensors="pt")
    assert torch.equal(remote["base"]["pixel_values"], expected.pixel_values)
    model = VisionBigBirdModel.from_pretrained(saved["base"]).eval()
    with torch.no_grad():
        expected = model(remote["base"]["pixel_values"]).last_hidden_state
    torch.testing.assert_close(remote["base"]["last_hidden_state"], expected)


def test_masked_image_modeling_folder_gives_the_same_reconstruction_without_the_package(remote, saved, workdir):
    model = VisionBigBirdForMaskedImageModeling.from_pretrained(saved["mim"]).eval()
    with torch.no_grad():
        expected = model(torch.load(workdir / "backbone_input.pt")).reconstruction
    torch.testing.assert_close(remote["mim"]["reconstruction"], expected)


def test_backbone_folder_gives_the_same_feature_maps_without_the_package(remote, saved, workdir):
    """Loaded in the subprocess by docs/backbone.md's snippet (stages 1-4, the backbone's saved output norms)."""
    backbone = VisionBigBirdBackbone.from_pretrained(saved["backbone"], out_features=ALL_STAGES[1:]).eval()
    with torch.no_grad():
        expected = backbone(torch.load(workdir / "backbone_input.pt")).feature_maps
    for got_map, expected_map in zip(remote["backbone"]["feature_maps"], expected, strict=True):
        torch.testing.assert_close(got_map, expected_map)


# ---- scripts/export_for_hub.py ---------------------------------------------------------------


def test_export_writes_a_complete_hub_folder(exported, training_run):
    files = sorted(path.name for path in exported.iterdir())
    assert files == sorted(
        [
            "README.md",
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            *CODE_FILES[:4],
            "all_results.json",
            "train_results.json",
            "eval_results.json",
            "test_results.json",
        ]
    )
    assert json.loads((exported / "config.json").read_text())["auto_map"] == {
        "AutoConfig": CONFIG_CLASS,
        **dict([SAVED_AUTO_CLASS["classifier"]]),
    }
    assert (exported / "README.md").read_text() == FASHION_MNIST_CARD.read_text()  # --model_card: copied as it is


def test_export_generates_a_card_for_a_run_without_one(training_run, workdir):
    output_dir = exported_folder(
        training_run, workdir / "hub-generated", "--dataset", "zalando-datasets/fashion_mnist"
    )
    card = ModelCard.load(output_dir / "README.md")
    metrics = json.loads((training_run / "all_results.json").read_text())
    assert card.data.pipeline_tag == "image-classification" and card.data.license == "apache-2.0"
    test_result = next(result for result in card.data.eval_results if result.dataset_split == "test")
    assert test_result.metric_type == "accuracy" and test_result.metric_value == round(metrics["test_accuracy"], 4)
    assert f"| test accuracy | {metrics['test_accuracy']:.4f} |" in card.text
    assert "arXiv:2311.05988" in card.text and "T-shirt/top" in card.text and "trust_remote_code=True" in card.text


def test_export_refuses_a_non_empty_output_folder_and_a_missing_card(saved, workdir):
    result = export_for_hub("--run_dir", str(saved["classifier"]), "--output_dir", str(saved["base"]))
    assert result.returncode != 0 and "is not empty" in result.stderr
    result = export_for_hub(
        "--run_dir",
        str(saved["classifier"]),
        "--output_dir",
        str(workdir / "no-card"),
        "--model_card",
        str(workdir / "missing.md"),
    )
    assert result.returncode != 0 and "--model_card" in result.stderr and "missing.md" in result.stderr
