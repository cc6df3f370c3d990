"""Tests of the two Vision Big Bird image processors (torchvision default and its PIL twin).

Expected values come from an independent PIL + NumPy implementation of the recipe (`reference_pixel_values`) or from
properties (grayscale stays gray, transparent pixels become white, nearest resampling creates no new values).
"""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from skimage import data as skimage_data
from transformers import AutoImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

import vision_bigbird_hf  # noqa: F401  (registers the config and processors with the Auto classes)
from vision_bigbird_hf.configuration_vision_bigbird import VisionBigBirdConfig
from vision_bigbird_hf.image_processing_pil_vision_bigbird import VisionBigBirdImageProcessorPil
from vision_bigbird_hf.image_processing_vision_bigbird import VisionBigBirdImageProcessor


PROCESSOR_CLASSES = [VisionBigBirdImageProcessor, VisionBigBirdImageProcessorPil]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"]
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


def test_mixed_size_batch(processor_class):
    rng = np.random.default_rng(0)
    sizes = [(17, 300), (480, 640), (1200, 900), (64, 64)]
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for height, width in sizes]
    assert pixel_values(processor_class(), images).shape == (len(sizes), 3, 224, 224)


def test_ambiguous_tiny_array_needs_input_data_format(processor_class):
    # a 3-pixel-high channels-last array looks like channels-first; naming the layout fixes it
    image = np.random.default_rng(1).integers(0, 256, (3, 300, 3), dtype=np.uint8)
    out = pixel_values(processor_class(), image, input_data_format="channels_last")
    expected = pixel_values(processor_class(), PIL.Image.fromarray(image))
    np.testing.assert_allclose(out, expected, atol=1e-5)


# ---- Colour modes: everything becomes RGB -----------------------------------


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "I", "F", "1"])
def test_pil_modes_become_three_channels(processor_class, photo, mode):
    image = PIL.Image.fromarray(photo).convert(mode)
    assert pixel_values(processor_class(), image).shape == (1, 3, 224, 224)


@pytest.mark.parametrize("mode", ["L", "LA", "I", "F", "1"])
def test_grayscale_modes_stay_gray(processor_class, photo, mode):
    image = PIL.Image.fromarray(photo).convert(mode)
    rgb = unnormalize(pixel_values(processor_class(), image))[0]  # (3, 224, 224)
    np.testing.assert_allclose(rgb[0], rgb[1], atol=1e-5)
    np.testing.assert_allclose(rgb[0], rgb[2], atol=1e-5)


def test_opaque_alpha_keeps_the_colours(processor_class, photo):
    expected = pixel_values(processor_class(), photo)
    rgba = PIL.Image.fromarray(photo).convert("RGBA")
    np.testing.assert_allclose(pixel_values(processor_class(), rgba), expected, atol=1e-5)


def test_palette_image_is_looked_up(processor_class):
    colours = np.array([[255, 0, 0], [0, 200, 0], [10, 20, 250], [90, 90, 90]], dtype=np.uint8)
    indices = np.random.default_rng(3).integers(0, len(colours), (120, 160), dtype=np.uint8)
    palette_image = PIL.Image.fromarray(indices, mode="P")
    palette_image.putpalette(colours.flatten().tolist())
    expected = pixel_values(processor_class(), colours[indices])  # (H, W, 3) looked up by hand
    np.testing.assert_allclose(pixel_values(processor_class(), palette_image), expected, atol=1e-5)


def test_transparent_pixels_become_white(processor_class, photo):
    rgba = np.concatenate([photo, np.zeros_like(photo[..., :1])], axis=-1)  # alpha 0 everywhere
    for image in [PIL.Image.fromarray(rgba), rgba, rgba.transpose(2, 0, 1)]:
        np.testing.assert_allclose(unnormalize(pixel_values(processor_class(), image)), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "make_array",
    [
        lambda gray: gray,  # (H, W)
        lambda gray: gray[..., None],  # (H, W, 1)
        lambda gray: gray[None],  # (1, H, W)
        lambda gray: torch.from_numpy(gray),  # (H, W) tensor
        lambda gray: np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1),  # (H, W, 4), opaque
        lambda gray: np.stack([gray, gray, gray, np.full_like(gray, 255)]),  # (4, H, W), opaque
    ],
    ids=["hw", "hw1", "1hw", "torch_hw", "hw4", "4hw"],
)
def test_arrays_become_rgb(processor_class, photo, make_array):
    gray = np.array(PIL.Image.fromarray(photo).convert("L"))
    expected = pixel_values(processor_class(), PIL.Image.fromarray(gray))
    out = pixel_values(processor_class(), make_array(gray))
    assert out.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_list_of_grayscale_arrays(processor_class, photo):
    gray = np.array(PIL.Image.fromarray(photo).convert("L"))
    assert pixel_values(processor_class(), [gray, photo, gray.T]).shape == (3, 3, 224, 224)


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


# ---- Every switch switches ---------------------------------------------------


def test_do_resize_and_do_center_crop(processor_class, photo):
    processor = processor_class()
    assert pixel_values(processor, photo, do_center_crop=False).shape == (1, 3, 256, 384)
    assert pixel_values(processor, photo, do_resize=False, do_center_crop=False).shape == (1, 3, 300, 451)
    cropped = pixel_values(processor, photo, do_resize=False)[0]  # crop of the original image
    top, left = (300 - 224) // 2, (451 - 224) // 2
    expected = (photo[top : top + 224, left : left + 224].transpose(2, 0, 1) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(cropped, expected, atol=1e-5)


def test_size_and_crop_size(processor_class, photo):
    assert pixel_values(processor_class(size=288, crop_size=256), photo).shape == (1, 3, 256, 256)
    squashed = pixel_values(processor_class(), photo, size={"height": 200, "width": 100}, do_center_crop=False)
    assert squashed.shape == (1, 3, 200, 100)


def test_do_rescale_and_do_normalize(processor_class, photo):
    processor = processor_class()
    raw = pixel_values(processor, photo, do_rescale=False, do_normalize=False)
    rescaled = pixel_values(processor, photo, do_normalize=False)
    normalized = pixel_values(processor, photo)
    assert raw.max() > 1.5 and raw.min() >= 0 and raw.max() <= 255
    np.testing.assert_allclose(rescaled, raw / 255, atol=1e-5)
    np.testing.assert_allclose(normalized, (rescaled - MEAN) / STD, atol=1e-5)
    doubled = pixel_values(processor, photo, do_normalize=False, rescale_factor=2 / 255)
    np.testing.assert_allclose(doubled, 2 * rescaled, atol=1e-5)
    identity = pixel_values(processor, photo, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
    np.testing.assert_allclose(identity, rescaled, atol=1e-5)


def test_do_convert_rgb(processor_class, photo):
    gray = PIL.Image.fromarray(photo).convert("L")
    assert pixel_values(processor_class(), gray, do_convert_rgb=False, do_normalize=False).shape == (1, 1, 224, 224)
    assert pixel_values(processor_class(do_convert_rgb=False), gray, do_normalize=False).shape[1] == 1


def test_resample(processor_class):
    # nearest-neighbour resampling only copies pixels, bicubic creates values in between
    levels = np.array([0, 100, 200], dtype=np.uint8)
    image = levels[np.random.default_rng(2).integers(0, 3, (40, 50, 3))]
    raw = {"do_rescale": False, "do_normalize": False}
    nearest = pixel_values(processor_class(), image, resample=PILImageResampling.NEAREST, **raw)
    bicubic = pixel_values(processor_class(), image, **raw)
    assert set(np.unique(nearest)) <= {0.0, 100.0, 200.0}
    assert len(np.unique(bicubic)) > 10


def test_constructor_switches_become_defaults(processor_class, photo):
    processor = processor_class(do_resize=False, do_center_crop=False, do_normalize=False)
    out = pixel_values(processor, photo)
    np.testing.assert_allclose(out[0], photo.transpose(2, 0, 1) / 255, atol=1e-6)


# ---- The two backends agree --------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
def test_backends_agree_on_photos(name):
    image = getattr(skimage_data, name)()
    torchvision_values = pixel_values(VisionBigBirdImageProcessor(), image)
    pil_values = pixel_values(VisionBigBirdImageProcessorPil(), image)
    mean_abs_difference = np.abs(torchvision_values - pil_values).mean()
    print(f"{name} {image.shape}: mean |torchvision - pil| = {mean_abs_difference:.6f} (normalized units)")
    assert mean_abs_difference <= 0.02


@pytest.mark.parametrize("height, width", [(17, 300), (300, 17), (60, 80), (2000, 3000)])
def test_backends_agree_on_rescaled_photo(photo, height, width):
    image = np.array(PIL.Image.fromarray(photo).resize((width, height), PIL.Image.BICUBIC))
    torchvision_values = pixel_values(VisionBigBirdImageProcessor(), image)
    pil_values = pixel_values(VisionBigBirdImageProcessorPil(), image)
    mean_abs_difference = np.abs(torchvision_values - pil_values).mean()
    print(f"chelsea at {height}x{width}: mean |torchvision - pil| = {mean_abs_difference:.6f}")
    assert mean_abs_difference <= 0.02


# ---- Save / load -------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"size": 288, "crop_size": 256, "do_normalize": False}])
def test_save_load_round_trip(processor_class, photo, tmp_path, kwargs):
    processor = processor_class(**kwargs)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "VisionBigBirdImageProcessor"
    reloaded = processor_class.from_pretrained(tmp_path)
    assert type(reloaded) is processor_class
    assert reloaded.to_dict() == processor.to_dict()
    np.testing.assert_array_equal(pixel_values(reloaded, photo), pixel_values(processor, photo))


# ---- Bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_input, error, message",
    [
        ("definitely/not/an/image.png", ValueError, "no such file, and not base64"),
        (np.zeros((1, 2, 3, 32, 32), dtype=np.uint8), ValueError, r"shape \(1, 2, 3, 32, 32\)"),
        (np.zeros((0, 32, 3), dtype=np.uint8), ValueError, r"empty axis; got an array of shape \(0, 32, 3\)"),
        ([], ValueError, "empty list"),
        (np.zeros((32, 32, 2), dtype=np.uint8), ValueError, "channel dimension"),
        (42, TypeError, "int"),
    ],
    ids=["string", "5d", "empty_axis", "empty_list", "two_channels", "int"],
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
        (300, 451, {"shortest_edge": 256}, (256, 384)),             # not capped: the backend's usual rounding
        (100, 1600, {"shortest_edge": 256}, (256, 4096)),           # exactly 16:1
        (100, 1700, {"shortest_edge": 256}, (240, 4096)),           # capped at 16 x 256
        (65536, 1, {"shortest_edge": 256}, (4096, 1)),
        (10, 1000, {"shortest_edge": 64, "longest_edge": 500}, (5, 500)),
    ],
)
def test_resized_size_follows_the_longest_edge_cap(processor_class, height, width, size, expected):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    out = pixel_values(processor_class(size=size, do_center_crop=False), image, input_data_format="channels_last")
    assert out.shape[-2:] == expected


# ---- transformers' common image-processor tests ----------------------------------------------------------------------

import sys  # noqa: E402
import types  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402


# The common module imports transformers' repository helper utils/fetch_hub_objects_for_ci.py, which
# scripts/fetch_transformers_tests.py does not fetch. It maps test-image URLs to cached files; here the one photo the
# tests below load (COCO's two cats) is replaced by skimage's cat photo, so they run offline; other URLs (only the
# segmentation tests', which do not apply here) are left as they are.
if "fetch_hub_objects_for_ci" not in sys.modules:
    import tempfile  # noqa: E402

    _CAT_PHOTO = str(Path(tempfile.mkdtemp()) / "chelsea.png")
    PIL.Image.fromarray(skimage_data.chelsea()).save(_CAT_PHOTO)
    sys.modules["fetch_hub_objects_for_ci"] = types.SimpleNamespace(
        url_to_local_path=lambda url: _CAT_PHOTO if url.endswith("000000039769.jpg") else url
    )

from hf_common.test_image_processing_common import ImageProcessingTestMixin, ImageProcessingTester  # noqa: E402


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
