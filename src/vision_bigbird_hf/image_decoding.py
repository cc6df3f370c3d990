# Copyright 2026 The vision-bigbird-hf authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Bounded and faithful image decoding, shared by both image processors and the training script.

- `load_image_tensor` / `load_image_pil`: a URL (with a timeout), a file path or base64 data -> an image, after its
  header has been read and its size checked against `PIL.Image.MAX_IMAGE_PIXELS`, so that a small file declaring a
  huge image (a decompression bomb) is refused before any pixel is decoded.
- `to_8bit`: 16-bit, 32-bit and float images -> 8 bits by their real range; boolean masks refused.
"""

import base64
import binascii
import io
import os
import warnings

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from huggingface_hub.utils import httpx
from torchvision.io import ImageReadMode, decode_image
from transformers.image_utils import is_pil_image, is_scaled_image
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Seconds a URL may take to connect, and then between two parts of its answer; transformers' loaders wait forever.
URL_TIMEOUT = 30.0

# PIL modes holding more than 8 bits per pixel: 32-bit integers, 16-bit integers (PNG, TIFF), 32-bit floats.
WIDE_PIL_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def describe_source(source: str) -> str:
    """A short name for an image source in messages: the path or URL, or the start of base64 data."""
    return source if len(source) <= 80 else f"{source[:60]}... ({len(source)} characters)"


def read_image_source(source: str) -> bytes:
    """The encoded bytes of a URL starting with http:// or https://, a file path, or base64 data (optionally a
    `data:image/...;base64,` URL). A URL that takes longer than `URL_TIMEOUT` seconds is an `httpx.TimeoutException`."""
    if source.startswith(("http://", "https://")):
        response = httpx.get(source, timeout=URL_TIMEOUT, follow_redirects=True)
        response.raise_for_status()
        return response.content
    if os.path.isfile(source):
        with open(source, "rb") as file:
            return file.read()
    data = source.split(",", 1)[1] if source.startswith("data:image/") else source
    try:  # strict about the alphabet (a mistyped path is not base64), not about line breaks
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(
            f"Expected a URL starting with http:// or https://, a path to an image file, or base64 image data; got "
            f"{describe_source(source)!r}: no such file, and not base64"
        ) from error


def check_pixel_limit(width: int, height: int, name: str):
    """Refuse an image of more pixels than `PIL.Image.MAX_IMAGE_PIXELS` (no limit when it is None)."""
    limit = PIL.Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ValueError(
            f"{name} declares {width}x{height} = {width * height} pixels, more than PIL.Image.MAX_IMAGE_PIXELS = "
            f"{limit}: refused before decoding (a possible decompression bomb). Raise PIL.Image.MAX_IMAGE_PIXELS, or "
            "set it to None, to decode images you trust."
        )


def open_image_header(raw: bytes, name: str) -> PIL.Image.Image:
    """Encoded image bytes -> a PIL image whose header only is read, its size checked by `check_pixel_limit`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)  # `check_pixel_limit` says it below
        try:
            image = PIL.Image.open(io.BytesIO(raw))
        except PIL.Image.DecompressionBombError as error:  # PIL refuses twice its limit before giving the size
            raise ValueError(
                f"{name}: {error} Refused before decoding; PIL.Image.MAX_IMAGE_PIXELS = {PIL.Image.MAX_IMAGE_PIXELS}. "
                "Raise it, or set it to None, to decode images you trust."
            ) from error
        except PIL.UnidentifiedImageError as error:
            raise ValueError(f"{name}: not an image file PIL can read ({len(raw)} bytes)") from error
    check_pixel_limit(image.width, image.height, name)
    return image


def load_image_tensor(source: str) -> torch.Tensor:
    """A URL, path or base64 string -> a (3, H, W) uint8 RGB tensor, upright (EXIF orientation applied), decoded by
    torchvision once the header passed `check_pixel_limit`; 16-bit images are scaled to 8 bits by `to_8bit`."""
    raw = read_image_source(source)
    open_image_header(raw, describe_source(source)).close()
    encoded = torch.frombuffer(bytearray(raw), dtype=torch.uint8)  # (num_bytes,)
    return to_8bit(decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True))  # (3, H, W)


def load_image_pil(source: str) -> PIL.Image.Image:
    """A URL, path or base64 string -> an upright PIL image in its own mode (the processor converts it to RGB),
    decoded once the header passed `check_pixel_limit`."""
    return PIL.ImageOps.exif_transpose(open_image_header(read_image_source(source), describe_source(source)))


def scale_to_uint8(array: np.ndarray) -> np.ndarray:
    """Integer or float pixel values -> uint8, by the range the values are written in:

    - 16-bit integers (`uint16`, `int16`) span 0-65535: divided by 257.
    - Wider integers (a PIL `I` image) hold 8-bit values when all are at most 255 (kept), 16-bit values when all are at
      most 65535 (divided by 257), otherwise their own range (min to max).
    - Floats in [0, 1] are multiplied by 255, floats in [0, 255] kept, others mapped from their min-max range.
    Negative integers also map from their min-max range. Rounded to the nearest level."""
    values = np.nan_to_num(array.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        scaled = values * 255
    elif low >= 0 and (high <= 255 and array.dtype.itemsize != 2):
        scaled = values
    elif array.dtype.kind in "iu" and low >= 0 and high <= 65535:
        scaled = values / 257
    else:
        scaled = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def to_8bit(image):
    """Make an image 8-bit by `scale_to_uint8` where it has more bits: PIL images of a mode in `WIDE_PIL_MODES` (->
    mode `L`) and integer arrays or tensors wider than 8 bits. Float arrays and tensors are left to `do_rescale`
    (see `warn_if_already_rescaled`), everything else is returned as it is. A boolean array or tensor is a
    `ValueError`: a mask is not an image."""
    if is_pil_image(image):
        return PIL.Image.fromarray(scale_to_uint8(np.asarray(image))) if image.mode in WIDE_PIL_MODES else image
    if isinstance(image, torch.Tensor):
        check_not_boolean(image.dtype == torch.bool, tuple(image.shape))
        if image.is_floating_point() or image.dtype == torch.uint8:
            return image
        return torch.from_numpy(scale_to_uint8(image.cpu().numpy())).to(image.device)
    if isinstance(image, np.ndarray):
        check_not_boolean(image.dtype == np.bool_, image.shape)
        return scale_to_uint8(image) if image.dtype.kind in "iu" and image.dtype != np.uint8 else image
    return image


def check_not_boolean(is_boolean: bool, shape: tuple):
    if is_boolean:
        raise ValueError(
            f"Got a boolean array of shape {shape}: a mask is not an image. Convert it to pixel values first, "
            "e.g. `mask.astype(np.uint8) * 255`."
        )


def warn_if_already_rescaled(image, do_rescale: bool | None):
    """Warn (once) when a float image already in [0, 1] is about to be divided by 255 again."""
    if isinstance(image, torch.Tensor):  # also bfloat16, which NumPy lacks
        scaled = image.is_floating_point() and bool((image.min() >= 0) & (image.max() <= 1))
    else:
        scaled = isinstance(image, np.ndarray) and image.dtype.kind == "f" and is_scaled_image(image)
    if do_rescale and scaled:
        logger.warning_once(
            "It looks like you are trying to rescale already rescaled images: a float image has all its values in "
            "[0, 1] and `do_rescale=True` divides them by 255 again. If the pixel values are in [0, 1], pass "
            "`do_rescale=False`."
        )
