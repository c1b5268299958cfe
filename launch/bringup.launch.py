"""ros2 launch partseg bringup.launch.py [backend:=...] [device:=...] [camera_namespace:=...] [params_file:=...]

Starts what partseg_ros.ros.bringup_spec describes (the same source the pip
command ``partseg_bringup`` reads), as launch_ros lifecycle nodes. With
autostart:=true (default) the node configures and activates itself; with
autostart:=false drive it with ``ros2 lifecycle set /partseg configure`` etc.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from partseg_ros.ros import bringup_spec


def _start_nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in bringup_spec.ARGUMENTS}
    actions = []
    for spec in bringup_spec.nodes(values):
        node_class = LifecycleNode if spec.lifecycle else Node
        actions.append(
            node_class(
                package=spec.package,
                executable=spec.executable,
                name=spec.name,
                namespace=spec.namespace,
                parameters=[*spec.params_files, spec.parameters],
                remappings=list(spec.remappings),
                arguments=["--ros-args", "--log-level", spec.log_level],
                output="screen",
            )
        )
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in bringup_spec.ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_start_nodes)])
