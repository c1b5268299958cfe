"""Benchmark rosbags: format, writing, reading, and converters (no rclpy here).

- ``format``: topic names, message types, ``typestore()`` (ROS 2 Kilted + partseg msgs).
- ``writer``: ``BenchmarkFrame``/``TaskAnnotation`` (validated: ``AnnotationError``),
  ``annotate_task(frame, ...)`` (part ids from names), ``write_benchmark(path, frames, storage, overwrite=...)``,
  ``frame_from_rendered_view(view)``.
- ``reader``: ``read_benchmark(bag) -> Iterator[BenchmarkSample]`` (one per task and frame;
  ``sample.task.target_part_mask`` / ``target_object_mask`` are HxW bool; ``select=`` skips tasks
  before decoding), ``count_tasks(bag)`` and ``bag_paths(folder)``.
- ``instructpart_converter``: the InstructPart dataset layout -> the same bag format.

Replay over DDS lives in ``partseg_ros.ros.replay`` (it needs rclpy). The format is
documented for people with real recordings in docs/benchmark_format.md.
"""
