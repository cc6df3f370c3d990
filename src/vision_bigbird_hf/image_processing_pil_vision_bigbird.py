"""Image processor for Vision Big Bird, PIL backend (the twin of the torchvision `VisionBigBirdImageProcessor`)."""

import numpy as np
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    is_pil_image,
    is_valid_image,
    make_flat_list_of_images,
)


def make_flat_list_of_images_or_grayscale(images: ImageInput, expected_ndims: int = 3) -> list:
    """
    `make_flat_list_of_images`, except that a 2-D `(H, W)` array or tensor, alone or in a list, also counts as one
    (grayscale) image: the backend's `process_image` gives it a channel axis and `do_convert_rgb` makes it RGB.
    An empty list, an array with an empty axis, or one whose number of dimensions fits neither an image nor a batch
    raises a `ValueError` naming its shape.
    """
    candidates = list(images) if isinstance(images, (list, tuple)) else [images]
    if not candidates:
        raise ValueError("Expected at least one image, got an empty list.")
    arrays = [image for image in candidates if is_valid_image(image) and not is_pil_image(image)]
    for array in arrays:
        if array.ndim not in (2, expected_ndims, expected_ndims + 1) or 0 in array.shape:
            raise ValueError(
                "Expected an image of shape (H, W), (H, W, C) or (C, H, W), or a batch (B, ...) of them, with no "
                f"empty axis; got an array of shape {tuple(array.shape)}."
            )
    if any(array.ndim == 2 for array in arrays) and all(
        is_pil_image(image) or (is_valid_image(image) and image.ndim in (2, expected_ndims)) for image in candidates
    ):
        return candidates
    return make_flat_list_of_images(images, expected_ndims=expected_ndims)


class VisionBigBirdImageProcessorPil(PilBackend):
    r"""
    PIL-backend image processor of Vision Big Bird: the same steps and defaults as `VisionBigBirdImageProcessor`
    (RGB conversion, bicubic resize of the shortest edge to 256, 224x224 center crop, rescale by 1/255, ImageNet
    normalization), computed with PIL and NumPy on CPU. Load it with `AutoImageProcessor.from_pretrained(...,
    backend="pil")`. On photos the two backends differ by at most a couple of uint8 levels per pixel; see
    `VisionBigBirdImageProcessor` for the details of each step.
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

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """Flatten the input to a list of images, letting `(H, W)` grayscale arrays and tensors through."""
        return make_flat_list_of_images_or_grayscale(self.fetch_images(images), expected_ndims=expected_ndims)

    def process_image(
        self, image: ImageInput, *args, input_data_format: str | ChannelDimension | None = None, **kwargs
    ) -> np.ndarray:
        # `PilBackend.process_image` converts to RGB before it looks for a 2-D image, and that conversion cannot infer
        # the channel axis of an (H, W) array, so give it one first.
        if not is_pil_image(image) and image.ndim == 2:
            image, input_data_format = image[None], ChannelDimension.FIRST  # (1, H, W)
        return super().process_image(image, *args, input_data_format=input_data_format, **kwargs)


__all__ = ["VisionBigBirdImageProcessorPil"]
