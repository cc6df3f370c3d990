"""pipeline("image-classification") and pipeline("image-feature-extraction") on a folder written by save_pretrained."""

import numpy as np
import pytest
import torch
from conftest import tiny_config_kwargs
from PIL import Image
from skimage import data as skimage_data
from transformers import pipeline

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification, VisionBigBirdImageProcessor

LABELS = {0: "cat", 1: "astronaut", 2: "coffee", 3: "rocket"}


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vbb")
    torch.manual_seed(0)
    model = VisionBigBirdForImageClassification(VisionBigBirdConfig(**tiny_config_kwargs(id2label=LABELS)))
    model.save_pretrained(folder)
    VisionBigBirdImageProcessor(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64}).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos shipped with scikit-image, as PIL images and as PNG files."""
    folder = tmp_path_factory.mktemp("photos")
    images = {
        name: Image.fromarray(getattr(skimage_data, name)()) for name in ("chelsea", "astronaut", "coffee", "rocket")
    }
    paths = {}
    for name, image in images.items():
        paths[name] = str(folder / f"{name}.png")
        image.save(paths[name])
    return images, paths


def reference_probabilities(folder, image):
    model = VisionBigBirdForImageClassification.from_pretrained(folder).eval()
    pixel_values = VisionBigBirdImageProcessor.from_pretrained(folder)(image, return_tensors="pt").pixel_values
    with torch.no_grad():
        return model(pixel_values).logits.softmax(-1)[0]


def test_image_classification_matches_the_model(saved_folder, photos):
    images, _ = photos
    classifier = pipeline("image-classification", model=str(saved_folder))
    result = classifier(images["chelsea"], top_k=4)
    expected = reference_probabilities(saved_folder, images["chelsea"])
    assert [entry["label"] for entry in result] == [LABELS[i] for i in expected.argsort(descending=True).tolist()]
    np.testing.assert_allclose([entry["score"] for entry in result], expected.sort(descending=True).values, atol=1e-5)


def test_paths_lists_top_k_and_batch_size(saved_folder, photos):
    images, paths = photos
    classifier = pipeline("image-classification", model=str(saved_folder))
    names = list(images)
    one_by_one = [classifier(images[name], top_k=2) for name in names]
    from_paths = classifier([paths[name] for name in names], top_k=2, batch_size=3)
    assert len(from_paths) == len(names)
    for single, batched in zip(one_by_one, from_paths):
        assert [e["label"] for e in single] == [e["label"] for e in batched]
        np.testing.assert_allclose([e["score"] for e in single], [e["score"] for e in batched], atol=1e-5)
    assert len(classifier(paths["rocket"], top_k=1)) == 1


def test_grayscale_and_rgba_images_are_accepted(saved_folder, photos):
    images, _ = photos
    classifier = pipeline("image-classification", model=str(saved_folder))
    assert len(classifier(images["chelsea"].convert("L"), top_k=1)) == 1
    assert len(classifier(images["chelsea"].convert("RGBA"), top_k=1)) == 1


def test_image_feature_extraction(saved_folder, photos):
    images, _ = photos
    extractor = pipeline("image-feature-extraction", model=str(saved_folder))
    tokens = np.array(extractor(images["coffee"]))
    pooled = np.array(extractor(images["coffee"], pool=True))
    assert tokens.shape == (1, 4, 96)  # 64x64 crop -> a 2x2 grid at stride 32, 96 channels
    assert pooled.shape == (1, 96)
    np.testing.assert_allclose(pooled[0], tokens[0].mean(0), atol=1e-5)


def test_a_file_that_is_not_an_image_fails_loudly_naming_it(saved_folder, photos, tmp_path):
    _, paths = photos
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    classifier = pipeline("image-classification", model=str(saved_folder))
    with pytest.raises(Exception, match="notes.png"):
        classifier([paths["chelsea"], str(bad), paths["rocket"]], batch_size=2)
    with pytest.raises(Exception, match="missing.png"):
        classifier(str(tmp_path / "missing.png"))
