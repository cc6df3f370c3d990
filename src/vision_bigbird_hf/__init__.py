"""Vision Big Bird (arXiv 2311.05988) for Hugging Face Transformers.

Importing this package registers the configuration, models and image processors with the Auto classes, so
`AutoModelForImageClassification.from_pretrained(folder)` and `pipeline(...)` work on folders saved by this package.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

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
