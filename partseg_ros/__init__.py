"""partseg: task-oriented part grounding for robot grasping.

Sub-packages: ``backends`` (part-grounding models), ``geometry`` (masks + depth
to 3D grasp regions), ``scene`` (synthetic RGB-D scenes), ``bags`` (rosbag2
format, replay, converters), ``evaluation`` (the offline study) and ``ros``
(the ROS 2 glue). Only ``ros`` imports rclpy.
"""

__version__ = "0.1.0"
