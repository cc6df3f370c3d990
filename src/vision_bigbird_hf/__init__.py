"""Vision Big Bird (arXiv 2311.05988) for Hugging Face Transformers.

Importing this package registers the configuration, models and image processors with the Auto classes, so
`AutoModelForImageClassification.from_pretrained(folder)` and `pipeline(...)` work on folders saved by this package.
It also registers them for Hub remote code: `save_pretrained` copies the code files next to the weights and writes an
`auto_map` naming every class, so the folder loads with `trust_remote_code=True` where this package is not installed.
"""

import functools
import shutil
from pathlib import Path

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)
from transformers.utils import IMAGE_PROCESSOR_NAME

from . import image_processing_pil_vision_bigbird, image_processing_vision_bigbird
from .configuration_vision_bigbird import PRESETS, VisionBigBirdConfig
from .image_processing_pil_vision_bigbird import VisionBigBirdImageProcessorPil
from .image_processing_vision_bigbird import VisionBigBirdImageProcessor
from .modeling_vision_bigbird import (
    VisionBigBirdBackbone,
    VisionBigBirdForImageClassification,
    VisionBigBirdModel,
    VisionBigBirdPreTrainedModel,
)


AutoConfig.register(VisionBigBirdConfig.model_type, VisionBigBirdConfig, exist_ok=True)
AutoModel.register(VisionBigBirdConfig, VisionBigBirdModel, exist_ok=True)
AutoModelForImageClassification.register(VisionBigBirdConfig, VisionBigBirdForImageClassification, exist_ok=True)
AutoBackbone.register(VisionBigBirdConfig, VisionBigBirdBackbone, exist_ok=True)
AutoImageProcessor.register(
    VisionBigBirdConfig,
    image_processor_classes={"torchvision": VisionBigBirdImageProcessor, "pil": VisionBigBirdImageProcessorPil},
    exist_ok=True,
)

# ---- Hub remote code ---------------------------------------------------------
# Saving a model copies modeling + configuration files and the config's `auto_map` (REMOTE_CODE_AUTO_MAP) names all
# model classes. Saving an image processor copies its file and names its own class only, so the wrapper below adds
# the twin backend's file and the dict form of `auto_map` that `AutoImageProcessor.from_pretrained(..., backend=...)`
# reads.

IMAGE_PROCESSOR_AUTO_MAP = {
    "torchvision": "image_processing_vision_bigbird.VisionBigBirdImageProcessor",
    "pil": "image_processing_pil_vision_bigbird.VisionBigBirdImageProcessorPil",
}


def save_both_image_processor_backends(save_pretrained):
    """Wrap an image processor's `save_pretrained`: after it, the folder holds both backends' code files and its
    preprocessor config maps `AutoImageProcessor` to `IMAGE_PROCESSOR_AUTO_MAP`. (`save_pretrained(...,
    push_to_hub=True)` uploads before this runs; `push_to_hub(...)` and `Trainer.push_to_hub` upload after.)"""

    @functools.wraps(save_pretrained)
    def wrapper(self, save_directory, *args, **kwargs):
        saved_files = save_pretrained(self, save_directory, *args, **kwargs)
        for module in (image_processing_vision_bigbird, image_processing_pil_vision_bigbird):
            shutil.copy(module.__file__, save_directory)
        self.auto_map["AutoImageProcessor"] = dict(IMAGE_PROCESSOR_AUTO_MAP)  # set (as a class name) by the save above
        self.to_json_file(Path(save_directory) / IMAGE_PROCESSOR_NAME)
        return saved_files

    return wrapper


VisionBigBirdConfig.register_for_auto_class("AutoConfig")
VisionBigBirdModel.register_for_auto_class("AutoModel")
VisionBigBirdForImageClassification.register_for_auto_class("AutoModelForImageClassification")
VisionBigBirdBackbone.register_for_auto_class("AutoBackbone")
for image_processor_class in (VisionBigBirdImageProcessor, VisionBigBirdImageProcessorPil):
    image_processor_class.register_for_auto_class("AutoImageProcessor")
    image_processor_class.save_pretrained = save_both_image_processor_backends(image_processor_class.save_pretrained)

__all__ = [
    "PRESETS",
    "VisionBigBirdConfig",
    "VisionBigBirdModel",
    "VisionBigBirdForImageClassification",
    "VisionBigBirdBackbone",
    "VisionBigBirdPreTrainedModel",
    "VisionBigBirdImageProcessor",
    "VisionBigBirdImageProcessorPil",
]
