"""SAM 3 (transformers ``Sam3Model``) without torchvision.

transformers' ``Sam3ImageProcessor`` is built on its torchvision backend and
so cannot be constructed where torchvision is missing (every CPU machine of
this project). The model itself only needs torchvision for *box* prompts
(``torchvision.ops.roi_align`` in the geometry encoder). This package supplies
the missing pieces in plain torch: image preprocessing, a decoder pass driven
by external queries (InstructSAM), text-prompt segmentation, and
post-processing (score/mask thresholds, mask NMS) back to the input resolution.
"""

from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform
from partseg_ros.backends.sam3.postprocessing import Sam3Instance, mask_nms, select_instances

__all__ = ["Sam3ImageTransform", "Sam3Instance", "mask_nms", "select_instances"]
