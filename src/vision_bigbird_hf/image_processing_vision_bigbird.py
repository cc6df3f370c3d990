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
"""Image processor for Vision Big Bird, torchvision backend (the default backend)."""

from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import SizeDict
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ImageInput,
    PILImageResampling,
    is_pil_image,
)

from .image_decoding import load_image_tensor, to_8bit, warn_if_already_rescaled


def check_has_pixels(images: list) -> list:
    """The backend's flat list of images, unless it is empty or holds an image without pixels (a 0x5 PIL image, an
    array with an empty axis), which the backends would meet with an IndexError or a ZeroDivisionError: then a
    `ValueError` naming the size."""
    if not images:
        raise ValueError("Expected at least one image, got an empty list.")
    for image in images:
        if is_pil_image(image) and 0 in image.size:
            raise ValueError(f"Expected an image with pixels, got a {image.size[0]}x{image.size[1]} PIL image.")
        if not is_pil_image(image) and 0 in image.shape:
            raise ValueError(f"Expected an image with pixels, got an array of shape {tuple(image.shape)}.")
    return images


# A shortest-edge resize caps the longest edge at this many times the shortest edge unless `size["longest_edge"]`
# says otherwise, so that no aspect ratio can blow an image up (a 65536x1 strip would become 16777216x256).
MAX_ASPECT_RATIO = 16


def capped_resize_size(height: int, width: int, size: SizeDict) -> SizeDict:
    """The output size of a shortest-edge resize with a longest-edge cap: the shortest edge becomes
    `size["shortest_edge"]` = s, unless the longest would then exceed l = `size.get("longest_edge", 16 * s)`; then
    the longest becomes l and the shortest keeps the aspect ratio (at least 1 pixel). A size without
    `shortest_edge`, or a cap that does not bind, is returned for the backend's own resize."""
    if not size.shortest_edge:
        return size
    longest_edge = size.longest_edge or MAX_ASPECT_RATIO * size.shortest_edge
    short, long = sorted((height, width))
    if long * size.shortest_edge <= longest_edge * short:
        return SizeDict(shortest_edge=size.shortest_edge)
    capped_short = max(1, int(short * longest_edge / long))
    if height <= width:
        return SizeDict(height=capped_short, width=longest_edge)
    return SizeDict(height=longest_edge, width=capped_short)


class VisionBigBirdImageProcessor(TorchvisionBackend):
    r"""
    Torchvision-backend image processor of Vision Big Bird. By default it applies the ImageNet evaluation recipe that
    Swin and ConvNeXt checkpoints use (timm's `crop_pct=0.875` at 224 pixels):

    1. `do_convert_rgb`: grayscale (`L`, `LA`, `1`, `I`, `F`), palette (`P`), `RGBA`, `CMYK` PIL images and 1-channel
       or 4-channel arrays/tensors become 3-channel RGB; transparency is composited onto white (the backend's
       conversion; a grayscale array needs its channel axis, `(H, W, 1)` or `(1, H, W)`).
    2. `do_resize`: resize the shortest edge to `size["shortest_edge"]=256` with bicubic resampling, keeping the
       aspect ratio, unless the longest edge would then exceed `size["longest_edge"]` (default: 16 times the
       shortest edge, 4096): then the longest edge becomes that cap (and the shortest less than 256, at least 1
       pixel). The cap bounds time and memory for any image, whatever its aspect ratio: a 65536x1 strip becomes
       4096x1, not 16777216x256. Only images more than 16 times longer than wide are affected.
    3. `do_center_crop`: center crop to `crop_size` = 224x224 (zero-padded first if the image is smaller).
    4. `do_rescale`: multiply by `rescale_factor=1/255`.
    5. `do_normalize`: subtract `image_mean` and divide by `image_std` (ImageNet: mean (0.485, 0.456, 0.406), std
       (0.229, 0.224, 0.225)).

    Every step can be switched off or changed in the constructor or per call, e.g.
    `processor(images, do_center_crop=False, size={"height": 224, "width": 224})` squashes the whole image to 224x224
    as Swin's Hub checkpoints do. Before step 1, 16-bit and 32-bit images (PIL modes `I;16`, `I`, `F`, `uint16` arrays)
    are scaled to 8 bits by their range (`image_decoding.to_8bit`); a float array already in [0, 1] gets a warning
    (pass `do_rescale=False` for it) and a boolean array is refused. Paths, URLs and base64 strings are decoded only
    if their header declares at most `PIL.Image.MAX_IMAGE_PIXELS` pixels; URLs time out after 30 s. Arrays whose height is 1, 3 or 4 pixels have an ambiguous channel axis: pass
    `input_data_format="channels_last"` (or `"channels_first"`) for them. An image with no pixels is a `ValueError`.
    """

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def fetch_images(self, image_url_or_urls):
        """Load URLs, paths and base64 strings with `load_image_tensor`: the header's size is checked against
        `PIL.Image.MAX_IMAGE_PIXELS` before decoding, and a URL has a timeout. Other images pass through."""
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(image) for image in image_url_or_urls]
        if isinstance(image_url_or_urls, str):
            return load_image_tensor(image_url_or_urls)
        return super().fetch_images(image_url_or_urls)

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """The backend's flat list of images, refusing an empty one and images without pixels (`check_has_pixels`)."""
        return check_has_pixels(super()._prepare_images_structure(images, expected_ndims=expected_ndims))

    def process_image(self, image: ImageInput, *args, **kwargs):
        """`TorchvisionBackend.process_image` of the image made 8-bit by `to_8bit` (16-bit, float PIL images)."""
        warn_if_already_rescaled(image, kwargs.get("do_rescale"))
        return super().process_image(to_8bit(image), *args, **kwargs)

    def resize(self, image, size: SizeDict, *args, **kwargs):
        """Resize (B, C, H, W) images, with the longest-edge cap of `capped_resize_size`."""
        return super().resize(image, capped_resize_size(*image.shape[-2:], size), *args, **kwargs)


__all__ = ["VisionBigBirdImageProcessor"]
