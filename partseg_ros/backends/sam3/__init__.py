"""SAM 3 (transformers ``Sam3Model``) without torchvision.

transformers' ``Sam3ImageProcessor`` is built on its torchvision backend and
so cannot be constructed where torchvision is missing (every CPU machine of
this project). The model itself only needs torchvision for *box* prompts
(``torchvision.ops.roi_align`` in the geometry encoder). This package supplies
the missing pieces in plain torch: image preprocessing, a decoder pass driven
by external queries (InstructSAM), text-prompt segmentation, and
post-processing (score/mask thresholds, mask NMS) back to the input resolution.
"""

from typing import Any

__all__ = ["Sam3ImageTransform", "Sam3Instance", "mask_nms", "select_instances"]


def __getattr__(name: str) -> Any:
    """Load the torch-backed parts on first use, so ``sam3.defaults`` stays importable without torch."""
    if name == "Sam3ImageTransform":
        from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform

        return Sam3ImageTransform
    if name in ("Sam3Instance", "mask_nms", "select_instances"):
        from partseg_ros.backends.sam3 import postprocessing

        return getattr(postprocessing, name)
    raise AttributeError(name)
