"""Masks + depth + intrinsics -> 3D grasp regions, with no ROS imports.

Modules: ``camera`` (CameraInfo -> camera model, undistortion), ``depth``
(16UC1/32FC1 -> metres), ``transforms`` (rigid transforms, quaternions),
``filters`` (erosion, depth discontinuities, outliers, guided filtering on the image grid),
``normals`` (organised normals), ``principal_axes`` (PCA frame) and
``grasp_region`` (the pipeline). See grasp_region's docstring for the frame
and sign conventions.
"""

from partseg_ros.geometry.camera import CameraModel, InvalidIntrinsicsError, camera_model_from_camera_info
from partseg_ros.geometry.depth import depth_to_metres
from partseg_ros.geometry.grasp_region import (
    CAMERA_FRAME,
    GraspRegion,
    GraspRegionConfig,
    GraspRegionStatus,
    compute_grasp_region,
    compute_grasp_regions,
)
from partseg_ros.geometry.transforms import RigidTransform

__all__ = [
    "CAMERA_FRAME",
    "CameraModel",
    "GraspRegion",
    "GraspRegionConfig",
    "GraspRegionStatus",
    "InvalidIntrinsicsError",
    "RigidTransform",
    "camera_model_from_camera_info",
    "compute_grasp_region",
    "compute_grasp_regions",
    "depth_to_metres",
]
