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
"""Vision Big Bird (arXiv 2311.05988) for Hugging Face Transformers.

Importing this package registers the configuration, models and image processors with the Auto classes, so
`AutoModelForImageClassification.from_pretrained(folder)` and `pipeline(...)` work on folders saved by this package.
It also registers each class for Hub remote code (`register_for_auto_class`, the one mechanism): `save_pretrained`
then copies the class's code files next to the weights and names the class and its config in the saved `auto_map`.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
)

from .configuration_vision_bigbird import PRESETS, VisionBigBirdConfig
from .image_processing_pil_vision_bigbird import VisionBigBirdImageProcessorPil
from .image_processing_vision_bigbird import VisionBigBirdImageProcessor
from .modeling_vision_bigbird import (
    VisionBigBirdBackbone,
    VisionBigBirdForImageClassification,
    VisionBigBirdForMaskedImageModeling,
    VisionBigBirdModel,
    VisionBigBirdPreTrainedModel,
)

AutoConfig.register(VisionBigBirdConfig.model_type, VisionBigBirdConfig, exist_ok=True)
AutoModel.register(VisionBigBirdConfig, VisionBigBirdModel, exist_ok=True)
AutoModelForImageClassification.register(VisionBigBirdConfig, VisionBigBirdForImageClassification, exist_ok=True)
AutoBackbone.register(VisionBigBirdConfig, VisionBigBirdBackbone, exist_ok=True)
AutoModelForMaskedImageModeling.register(VisionBigBirdConfig, VisionBigBirdForMaskedImageModeling, exist_ok=True)
AutoImageProcessor.register(
    VisionBigBirdConfig,
    image_processor_classes={"torchvision": VisionBigBirdImageProcessor, "pil": VisionBigBirdImageProcessorPil},
    exist_ok=True,
)

VisionBigBirdConfig.register_for_auto_class("AutoConfig")
VisionBigBirdModel.register_for_auto_class("AutoModel")
VisionBigBirdForImageClassification.register_for_auto_class("AutoModelForImageClassification")
VisionBigBirdBackbone.register_for_auto_class("AutoBackbone")
VisionBigBirdForMaskedImageModeling.register_for_auto_class("AutoModelForMaskedImageModeling")
VisionBigBirdImageProcessor.register_for_auto_class("AutoImageProcessor")
VisionBigBirdImageProcessorPil.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "PRESETS",
    "VisionBigBirdBackbone",
    "VisionBigBirdConfig",
    "VisionBigBirdForImageClassification",
    "VisionBigBirdForMaskedImageModeling",
    "VisionBigBirdImageProcessor",
    "VisionBigBirdImageProcessorPil",
    "VisionBigBirdModel",
    "VisionBigBirdPreTrainedModel",
]
