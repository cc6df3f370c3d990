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
"""Image processor for Vision Big Bird, PIL backend (the twin of the torchvision `VisionBigBirdImageProcessor`)."""

import numpy as np
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import SizeDict
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageInput, PILImageResampling

from .image_decoding import load_image_pil, to_8bit, warn_if_already_rescaled
from .image_processing_vision_bigbird import capped_resize_size, check_has_pixels


class VisionBigBirdImageProcessorPil(PilBackend):
    r"""
    PIL-backend image processor of Vision Big Bird: the same steps and defaults as `VisionBigBirdImageProcessor`
    (RGB conversion, bicubic resize of the shortest edge to 256 with the longest edge capped at 16x that, 224x224
    center crop, rescale by 1/255, ImageNet normalization), computed with PIL and NumPy on CPU. Load it with
    `AutoImageProcessor.from_pretrained(..., backend="pil")`. On photos the two backends differ by at most a couple
    of uint8 levels per pixel; see `VisionBigBirdImageProcessor` for the details of each step.
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
        """Load URLs, paths and base64 strings with `load_image_pil` (size checked before decoding, URL timeout)."""
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(image) for image in image_url_or_urls]
        if isinstance(image_url_or_urls, str):
            return load_image_pil(image_url_or_urls)
        return super().fetch_images(image_url_or_urls)

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """The backend's flat list of images, refusing an empty one and images without pixels (`check_has_pixels`)."""
        return check_has_pixels(super()._prepare_images_structure(images, expected_ndims=expected_ndims))

    def process_image(self, image: ImageInput, *args, **kwargs) -> np.ndarray:
        """`PilBackend.process_image` of the image made 8-bit by `to_8bit` (16-bit, float PIL images)."""
        warn_if_already_rescaled(image, kwargs.get("do_rescale"))
        return super().process_image(to_8bit(image), *args, **kwargs)

    def resize(self, image: np.ndarray, size: SizeDict, *args, **kwargs) -> np.ndarray:
        """Resize a (C, H, W) image, with the longest-edge cap of `capped_resize_size`."""
        return super().resize(image, capped_resize_size(*image.shape[-2:], size), *args, **kwargs)


__all__ = ["VisionBigBirdImageProcessorPil"]
