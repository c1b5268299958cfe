"""Synthetic RGB-D tabletop scenes for the part-selection study.

Main entry points (all numpy; open3d is needed only to render):

- ``partseg_ros.scene.render.render_study_view(scene_name, view_index=0, seed=0, num_views=3,
  width=640, height=480, include_no_target=False) -> RenderedView``: one frame with
  ``rgb`` (HxWx3 uint8), ``depth_m`` (noisy, NaN = no return), ``depth_clean_m``,
  ``normals``, ``intrinsics`` (CameraIntrinsics), ``world_from_camera``,
  ``object_ids``/``part_ids`` (HxW uint16, 0 = table) indexing ``object_names`` /
  ``part_names`` ("instance/part"), and ``tasks`` (TaskLabel: task_id, instruction,
  targets, parts, reason, has_target, target_object_ids, target_part_ids;
  ``view.task_part_mask(task)`` gives the bool mask).
- ``partseg_ros.scene.scenes``: ``STUDY_SCENE_NAMES`` (12 scenes), ``build_scene(name, seed)
  -> Scene`` and ``load_study_tasks(include_no_target=False, scene=None) -> list[StudyTask]``
  (the 48 study tasks from ``partseg_ros/data/study_tasks.yaml``).
- ``partseg_ros.scene.render.render_view(scene, view_index, seed, num_views, intrinsics)``
  to render a Scene you built or modified yourself.
- ``partseg_ros.scene.objects.make_object(kind, rng, instance, color_name) -> ObjectModel``
  and ``object_kinds()``: the procedural object library (named parts).
- ``partseg_ros.scene.primitives``: mesh builders (lathe, cylinder, tube, box,
  rounded_box, torus, ellipsoid, capsule, bent_tube, extruded_polygon, ...).
- ``partseg_ros.scene.generate.main``: the ``partseg_generate_benchmark`` command that
  writes the study as rosbag2 files (see docs/benchmark_format.md).
"""
