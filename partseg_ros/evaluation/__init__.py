"""Offline evaluation of part selection from benchmark bags (``partseg_evaluate``).

Modules, in the order data flows through them:

* tasks: bag samples -> :class:`EvalTask`, and the request of each protocol (full, oracle_object);
* runner: the in-process path (backend call, grasp region, timing); sharding: local processes or Ray;
* answering: what answers tasks on the other paths (a TaskAnswerer) and the loop that scores its answers;
  the live path's answerer, which replays each task's recorded frame into a running node over DDS, is
  partseg_ros.ros.evaluation_client, plugged in by partseg_ros.ros.live_evaluation (nothing here imports ROS);
* scoring: a prediction -> :class:`TaskRecord`; metrics: every metric as a numpy function;
* aggregate: records -> per-protocol, per-scene and per-task summaries; report: JSON, Markdown, HTML;
* cli: the command (run as partseg_evaluate through partseg_ros.ros.live_evaluation); node_params: reads
  the node's parameters file so both paths run the same settings.

Metric definitions and how to read the report: docs/evaluation.md.
"""
