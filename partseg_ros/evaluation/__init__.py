"""Offline evaluation of part selection from benchmark bags (``partseg_evaluate``).

Modules, in the order data flows through them:

* tasks: bag samples -> :class:`EvalTask`, and the request of each protocol (full, oracle_object);
* runner: the in-process path (backend call, grasp region, timing); sharding: local processes or Ray;
* live: the same tasks through the running node over DDS (its DDS client is partseg_ros.ros.evaluation_client);
* scoring: a prediction -> :class:`TaskRecord`; metrics: every metric as a numpy function;
* aggregate: records -> per-protocol, per-scene and per-task summaries; report: JSON, Markdown, HTML;
* cli: the command; node_params: reads the node's parameters file so both paths run the same settings.

Metric definitions and how to read the report: docs/evaluation.md.
"""
