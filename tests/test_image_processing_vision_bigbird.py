"""Tests of what this project adds to transformers' image-processor backends (torchvision default and its PIL twin):
the ImageNet evaluation recipe as defaults, the 16:1 longest-edge cap, refusals of images without pixels, and the Auto
registration. What the backends do themselves (colour conversion, every switch, saving) is left to transformers' common
image-processor tests, run at the end of this file; decoding and 8-bit conversion are tested in test_bad_input.py.

Expected values come from an independent PIL + NumPy implementation of the recipe (`reference_pixel_values`).
"""

import json

import numpy as np
import PIL.Image
import pytest
from skimage import data as skimage_data
from transformers import AutoImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

import vision_bigbird_hf  # noqa: F401  (registers the config and processors with the Auto classes)
from vision_bigbird_hf.configuration_vision_bigbird import VisionBigBirdConfig
from vision_bigbird_hf.image_processing_pil_vision_bigbird import VisionBigBirdImageProcessorPil
from vision_bigbird_hf.image_processing_vision_bigbird import VisionBigBirdImageProcessor

PROCESSOR_CLASSES = [VisionBigBirdImageProcessor, VisionBigBirdImageProcessorPil]
MEAN = np.array(IMAGENET_DEFAULT_MEAN, dtype=np.float64)[:, None, None]
STD = np.array(IMAGENET_DEFAULT_STD, dtype=np.float64)[:, None, None]
ONE_LEVEL = 1 / 255 / min(IMAGENET_DEFAULT_STD)  # one uint8 step, in normalized units


def pixel_values(processor, images, **kwargs) -> np.ndarray:
    return processor(images, return_tensors="pt", **kwargs).pixel_values.numpy()


def unnormalize(values: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) normalized -> the same in [0, 1]."""
    return values * STD + MEAN


def reference_pixel_values(image: np.ndarray, shortest_edge=256, crop=224) -> np.ndarray:
    """The recipe written out with PIL and NumPy: (H, W, 3) uint8 -> (3, crop, crop) float64."""
    height, width = image.shape[:2]
    scale = shortest_edge / min(height, width)
    if height <= width:
        new_height, new_width = shortest_edge, int(width * scale)
    else:
        new_height, new_width = int(height * scale), shortest_edge
    resized = np.array(PIL.Image.fromarray(image).resize((new_width, new_height), PIL.Image.BICUBIC))
    top, left = (new_height - crop) // 2, (new_width - crop) // 2
    cropped = resized[top : top + crop, left : left + crop].transpose(2, 0, 1)  # (3, crop, crop)
    return (cropped / 255.0 - MEAN) / STD


@pytest.fixture(scope="module")
def photo():
    return skimage_data.chelsea()  # (300, 451, 3) uint8


@pytest.fixture(params=PROCESSOR_CLASSES, ids=["torchvision", "pil"])
def processor_class(request):
    return request.param


# ---- Defaults and output shape ---------------------------------------------


def test_defaults_are_the_imagenet_eval_recipe(processor_class):
    processor = processor_class()
    assert processor.size == {"shortest_edge": 256}
    assert processor.crop_size == {"height": 224, "width": 224}
    assert processor.resample == PILImageResampling.BICUBIC
    assert processor.rescale_factor == pytest.approx(1 / 255)
    assert processor.image_mean == pytest.approx(IMAGENET_DEFAULT_MEAN)
    assert processor.image_std == pytest.approx(IMAGENET_DEFAULT_STD)
    for switch in ["do_convert_rgb", "do_resize", "do_center_crop", "do_rescale", "do_normalize"]:
        assert getattr(processor, switch) is True, switch


def test_both_backends_have_the_same_configuration():
    assert VisionBigBirdImageProcessor().to_dict() == VisionBigBirdImageProcessorPil().to_dict()


@pytest.mark.parametrize(
    "height, width", [(17, 300), (300, 17), (1, 1), (5, 7), (224, 224), (255, 257), (480, 640), (3000, 4000)]
)
def test_any_input_size_gives_224x224(processor_class, height, width):
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert pixel_values(processor_class(), image).shape == (1, 3, 224, 224)


# ---- Values against an independent computation ------------------------------


@pytest.mark.parametrize("name", ["chelsea", "rocket", "astronaut"])
def test_matches_independent_reference(processor_class, name):
    image = getattr(skimage_data, name)()
    out = pixel_values(processor_class(), image)[0]
    expected = reference_pixel_values(image)
    difference = np.abs(out - expected)
    # torchvision's uint8 bicubic kernel matches PIL's up to rounding: at most a couple of uint8 levels
    assert difference.max() <= 2.5 * ONE_LEVEL
    assert difference.mean() <= 0.01


def test_pil_backend_matches_reference_exactly(photo):
    out = pixel_values(VisionBigBirdImageProcessorPil(), photo)[0]
    np.testing.assert_allclose(out, reference_pixel_values(photo), atol=1e-5)


# ---- The two backends agree --------------------------------------------------


@pytest.mark.parametrize("height, width", [(17, 300), (300, 17), (60, 80), (2000, 3000)])
def test_backends_agree_on_rescaled_photo(photo, height, width):
    image = np.array(PIL.Image.fromarray(photo).resize((width, height), PIL.Image.BICUBIC))
    torchvision_values = pixel_values(VisionBigBirdImageProcessor(), image)
    pil_values = pixel_values(VisionBigBirdImageProcessorPil(), image)
    mean_abs_difference = np.abs(torchvision_values - pil_values).mean()
    print(f"chelsea at {height}x{width}: mean |torchvision - pil| = {mean_abs_difference:.6f}")
    assert mean_abs_difference <= 0.02


# ---- Bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_input, error, message",
    [
        ("definitely/not/an/image.png", ValueError, "no such file, and not base64"),
        (np.zeros((0, 32, 3), dtype=np.uint8), ValueError, r"with pixels, got an array of shape \(0, 32, 3\)"),
        ([], ValueError, "empty list"),
    ],
    ids=["string", "empty_axis", "empty_list"],
)
def test_bad_input_raises(processor_class, bad_input, error, message):
    with pytest.raises(error, match=message):
        processor_class()(bad_input, return_tensors="pt")


# ---- AutoImageProcessor ------------------------------------------------------


def test_auto_image_processor_default_is_torchvision(tmp_path, photo):
    VisionBigBirdImageProcessor(crop_size=192).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor) is VisionBigBirdImageProcessor
    assert processor.crop_size == {"height": 192, "width": 192}


def test_auto_image_processor_pil_backend(tmp_path, photo):
    VisionBigBirdImageProcessor(crop_size=192).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    assert type(processor) is VisionBigBirdImageProcessorPil
    assert processor.crop_size == {"height": 192, "width": 192}
    assert pixel_values(processor, photo).shape == (1, 3, 192, 192)


def test_auto_image_processor_loads_a_saved_pil_processor_either_way(tmp_path):
    VisionBigBirdImageProcessorPil().save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is VisionBigBirdImageProcessor
    assert type(AutoImageProcessor.from_pretrained(tmp_path, backend="pil")) is VisionBigBirdImageProcessorPil


def test_auto_image_processor_falls_back_to_the_model_config(tmp_path):
    # a model repo whose preprocessor_config.json names no processor class: the config's model_type decides
    VisionBigBirdConfig().save_pretrained(tmp_path)
    VisionBigBirdImageProcessor().save_pretrained(tmp_path)
    processor_config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    del processor_config["image_processor_type"]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor_config))
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is VisionBigBirdImageProcessor
    assert type(AutoImageProcessor.from_pretrained(tmp_path, backend="pil")) is VisionBigBirdImageProcessorPil


# ---- Inputs that cannot hurt it --------------------------------------------------------------------------------------


@pytest.mark.parametrize("width, height", [(0, 0), (0, 5), (7, 0)])
def test_an_image_without_pixels_is_a_clear_error(processor_class, width, height):
    with pytest.raises(ValueError, match=f"with pixels, got a {width}x{height} PIL image"):
        processor_class()(PIL.Image.new("RGB", (width, height)), return_tensors="pt")


@pytest.mark.parametrize("size", [(65536, 1), (1, 65536)], ids=["wide", "tall"])
def test_an_extreme_aspect_ratio_png_stays_small(processor_class, tmp_path, size):
    """A ~300-byte 65536x1 PNG: uncapped, the shortest-edge resize would make it 16777216x256 (13 GB as floats).
    With the cap the resized image is at most 4096 pixels long, so the processor allocates a few MB at most."""
    import tracemalloc

    path = tmp_path / "strip.png"
    PIL.Image.new("RGB", size, (200, 30, 90)).save(path)
    assert path.stat().st_size < 1000
    processor = processor_class()
    processor(str(path), return_tensors="pt")  # warm-up: first-call imports and caches are not the processor's
    tracemalloc.start()
    try:
        result = processor(str(path), return_tensors="pt", do_center_crop=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(result.pixel_values.shape[-2:]) == [1, 4096]
    assert peak < 64 * 2**20, f"peak traced allocation {peak / 2**20:.0f} MB"
    assert processor(str(path), return_tensors="pt").pixel_values.shape == (1, 3, 224, 224)


@pytest.mark.parametrize(
    "height, width, size, expected",
    [
        (300, 451, {"shortest_edge": 256}, (256, 384)),  # not capped: the backend's usual rounding
        (100, 1600, {"shortest_edge": 256}, (256, 4096)),  # exactly 16:1
        (100, 1700, {"shortest_edge": 256}, (240, 4096)),  # capped at 16 x 256
        (65536, 1, {"shortest_edge": 256}, (4096, 1)),
        (10, 1000, {"shortest_edge": 64, "longest_edge": 500}, (5, 500)),
    ],
)
def test_resized_size_follows_the_longest_edge_cap(processor_class, height, width, size, expected):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    out = pixel_values(processor_class(size=size, do_center_crop=False), image, input_data_format="channels_last")
    assert out.shape[-2:] == expected


# ---- transformers' common image-processor tests ----------------------------------------------------------------------

import sys
import types
import unittest
from pathlib import Path

# The common module imports transformers' repository helper utils/fetch_hub_objects_for_ci.py, which
# scripts/fetch_transformers_tests.py does not fetch. It maps test-image URLs to cached files; here the one photo the
# tests below load (COCO's two cats) is replaced by skimage's cat photo, so they run offline; other URLs (only the
# segmentation tests', which do not apply here) are left as they are.
if "fetch_hub_objects_for_ci" not in sys.modules:
    import tempfile

    _CAT_PHOTO = str(Path(tempfile.mkdtemp()) / "chelsea.png")
    PIL.Image.fromarray(skimage_data.chelsea()).save(_CAT_PHOTO)
    sys.modules["fetch_hub_objects_for_ci"] = types.SimpleNamespace(
        url_to_local_path=lambda url: _CAT_PHOTO if url.endswith("000000039769.jpg") else url
    )

from hf_common.test_image_processing_common import ImageProcessingTester, ImageProcessingTestMixin


class VisionBigBirdImageProcessingTester(ImageProcessingTester):
    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"shortest_edge": 40})
        kwargs.setdefault("crop_size", {"height": 32, "width": 32})
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_center_crop", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", IMAGENET_DEFAULT_MEAN)
        kwargs.setdefault("image_std", IMAGENET_DEFAULT_STD)
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self):
        # the mixin finds in-tree processors by the test file's folder name; these are registered out of tree
        return {"torchvision": VisionBigBirdImageProcessor, "pil": VisionBigBirdImageProcessorPil}

    def expected_output_image_shape(self, images):
        return self.num_channels, self.crop_size["height"], self.crop_size["width"]


class VisionBigBirdImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = VisionBigBirdImageProcessingTester
    # The batched check runs on uniform random noise, where PIL's and torchvision's bicubic kernels overshoot and clip
    # differently at single pixels (up to ~0.3 in normalized units, ~17 uint8 levels); the mean-error limit stays the
    # mixin's. On photos the backends agree within a couple of levels (test_backends_agree_on_photos).
    backend_equivalence_atol = 0.5
