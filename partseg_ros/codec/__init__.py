"""One codec for sensor_msgs/Image and sensor_msgs/CameraInfo, over the message fields.

The node decodes rclpy messages and the bag reader decodes rosbags messages.
When each had its own decoder, the same bag meant different things on the two
evaluation paths: the reader dropped the distortion coefficients and quietly
rescaled a camera_info of the wrong size, which the node refuses. Here both
kinds of message (and anything else with the same field names) go through the
same functions, so they are checked and decoded by the same rules:

* ``images``: encodings, declared sizes against limits before anything is
  allocated, row step, byte order; 16UC1/mono16 depth in integer units
  (millimetres by default), 32FC1 in metres; and the reverse, numpy -> fields.
* ``camera_info``: CameraInfo fields -> the one
  :class:`partseg_ros.geometry.camera.CameraModel` (K and D for raw images, P
  for rectified ones), refused rather than rescaled when it describes an image
  of another size; and the reverse, a camera model -> CameraInfo fields.

No ROS import: the ROS layer wraps the errors into its rejection counters.
"""

from partseg_ros.codec.camera_info import (
    CAMERA_INFO_INVALID,
    SIZE_MISMATCH,
    CameraInfoError,
    CameraInfoValues,
    camera_from_info,
    camera_info_fields,
    is_calibrated,
)
from partseg_ros.codec.errors import CodecError
from partseg_ros.codec.images import (
    BAD_ENCODING,
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    ENCODINGS,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    LABEL_ENCODINGS,
    MALFORMED_IMAGE,
    DecodeLimits,
    EncodedImage,
    ImageFormatError,
    check_declared_size,
    color_to_rgb,
    depth_to_metres,
    encode_image,
    image_to_array,
    labels_to_array,
    mask_to_bool,
)

__all__ = [
    "BAD_ENCODING",
    "CAMERA_INFO_INVALID",
    "COLOR_ENCODINGS",
    "CameraInfoError",
    "CameraInfoValues",
    "CodecError",
    "DEPTH_ENCODINGS",
    "DecodeLimits",
    "ENCODINGS",
    "EncodedImage",
    "IMAGE_TOO_LARGE",
    "IMAGE_TOO_SMALL",
    "ImageFormatError",
    "LABEL_ENCODINGS",
    "MALFORMED_IMAGE",
    "SIZE_MISMATCH",
    "camera_from_info",
    "camera_info_fields",
    "check_declared_size",
    "color_to_rgb",
    "depth_to_metres",
    "encode_image",
    "image_to_array",
    "is_calibrated",
    "labels_to_array",
    "mask_to_bool",
]
