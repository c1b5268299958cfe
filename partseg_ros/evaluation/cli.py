"""partseg_evaluate: score a backend on benchmark bags and write the report.

partseg_evaluate BAG_OR_DIR [...] --backend NAME [--backend-option k=v ...]
    --protocol full|oracle_object|both --path inprocess|live
    [--workers N] [--ray ADDRESS] --out REPORT_DIR
"""

# The live path's answerer talks DDS, so it lives in partseg_ros.ros and is handed to main()
# by the command there (partseg_ros.ros.live_evaluation.main); nothing here imports ROS.

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence


from partseg_ros.backends.base import parse_options
from partseg_ros.evaluation import node_params
from partseg_ros.evaluation.answering import AnsweringError, LiveAnswererFactory, LiveSettings, evaluate_answers
from partseg_ros.evaluation.node_params import DEFAULT_PARAMS_FILE
from partseg_ros.evaluation.records import PATH_INPROCESS, PATH_LIVE, PROTOCOL_FULL, PROTOCOLS, TaskRecord
from partseg_ros.evaluation.runner import EvaluationSettings, evaluate_inprocess
from partseg_ros.evaluation.sharding import RayUnavailableError, evaluate_local, evaluate_ray
from partseg_ros.resources import config_dir

BAG_METADATA = "metadata.yaml"


def find_bags(paths: Sequence[Path]) -> list[Path]:
    """Expand arguments into rosbag2 bag folders (a folder holding metadata.yaml), sorted and unique.

    A folder that is not itself a bag is searched recursively.
    """
    bags: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / BAG_METADATA).is_file():
            bags.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.rglob(BAG_METADATA))
            if not found:
                raise FileNotFoundError(f"no benchmark bag (a folder with {BAG_METADATA}) under {path}")
            bags.extend(found)
        else:
            raise FileNotFoundError(f"{path} is not a bag folder or a folder of bags")
    unique = sorted({p.resolve() for p in bags})
    return unique


def resolve_params_file(path: Optional[Path]) -> Optional[Path]:
    """The given parameters file, else the package's config/partseg.yaml when there is one."""
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"parameters file {path} not found")
        return Path(path)
    try:
        default = config_dir() / DEFAULT_PARAMS_FILE
    except FileNotFoundError:
        return None
    return default if default.is_file() else None


def backend_options_for(backend: str, params_file: Optional[Path], cli_options: dict[str, Any]) -> dict[str, Any]:
    """The params file's backend_options when it configures this same backend, overridden by the command line."""
    options: dict[str, Any] = {}
    if params_file is not None and str(node_params.node_parameters(params_file).get("backend", "")) == backend:
        options.update(node_params.backend_options(params_file))
    options.update(cli_options)
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partseg_evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "bags", nargs="+", type=Path, metavar="BAG_OR_DIR", help="benchmark bags, or folders searched for bags"
    )
    parser.add_argument("--backend", default="shapegrasp", help="backend name (see partseg_ros.backends.registry)")
    parser.add_argument(
        "--backend-option", action="append", default=[], metavar="K=V", help="backend option, repeatable"
    )
    parser.add_argument(
        "--protocol",
        choices=[*PROTOCOLS, "both"],
        default=None,
        help="default: both in process; full on the live path (the node takes no object mask)",
    )
    parser.add_argument("--path", choices=[PATH_INPROCESS, PATH_LIVE], default=PATH_INPROCESS)
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (in-process path)")
    parser.add_argument(
        "--ray", metavar="ADDRESS", help="run the shards on the Ray cluster at ADDRESS (e.g. auto, ray://host:10001)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR")
    parser.add_argument("--no-overlays", action="store_true", help="skip overlay images (faster for big sweeps)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--params-file",
        type=Path,
        default=None,
        help="the node's parameters (default: the package's config/partseg.yaml); both paths take grasp.* and, "
        "for the same backend, backend_options.* from it, so they run the same configuration",
    )
    live = parser.add_argument_group("live path")
    live.add_argument("--task-timeout", type=float, default=120.0, help="seconds to wait for each answer")
    live.add_argument(
        "--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the node and client (default: random 100-199)"
    )
    return parser


def run_evaluation(args: argparse.Namespace, live_answerer: Optional[LiveAnswererFactory] = None
                   ) -> tuple[list[TaskRecord], dict[str, Any]]:
    """Evaluate as the arguments say; returns the records and the report's run metadata.

    ``live_answerer`` starts what answers the live path's tasks (the ROS layer passes it).
    """
    bags = find_bags(args.bags)
    protocol = args.protocol or (PROTOCOL_FULL if args.path == PATH_LIVE else "both")
    protocols = PROTOCOLS if protocol == "both" else (protocol,)
    params_file = resolve_params_file(args.params_file)
    settings = EvaluationSettings(
        backend=args.backend,
        backend_options=backend_options_for(args.backend, params_file, parse_options(args.backend_option)),
        protocols=tuple(protocols),
        overlays=not args.no_overlays,
        grasp_options=node_params.grasp_options(params_file),
    )
    progress = not args.no_progress
    start = time.perf_counter()
    if args.path == PATH_LIVE:
        if args.ray or args.workers != 1:
            raise AnsweringError(
                "the live path runs one node and answers tasks in order: use it without --workers/--ray"
            )
        if live_answerer is None:
            raise AnsweringError("the live path needs the ROS layer: run the partseg_evaluate command "
                                 "(partseg_ros.ros.live_evaluation), which starts the node and its client")
        if params_file is None:
            raise FileNotFoundError("the live path needs the node's parameters file: pass --params-file")
        live_settings = LiveSettings(
            params_file=params_file, task_timeout_s=args.task_timeout, domain_id=args.domain_id
        )
        with live_answerer(settings, live_settings) as answerer:
            records = evaluate_answers(answerer, bags, settings, progress=progress)
    elif args.ray:
        records = evaluate_ray(bags, settings, args.ray, max(1, args.workers), progress=progress)
    elif args.workers > 1:
        records = evaluate_local(bags, settings, args.workers, progress=progress)
    else:
        records = evaluate_inprocess(bags, settings, progress=progress)
    elapsed = time.perf_counter() - start
    meta = {
        "backend": settings.backend,
        "backend_options": settings.backend_options,
        "path": args.path,
        "engine": "ray" if args.ray else ("processes" if args.workers > 1 else "single process"),
        "workers": args.workers,
        "protocols": list(protocols),
        "bags": [str(b) for b in bags],
        "params_file": str(params_file) if params_file else None,
        "grasp_options": settings.grasp_options,
        "wall_time_s": elapsed,
        "wall_throughput_tasks_per_s": len(records) / elapsed if elapsed > 0 else None,
    }
    return records, meta


def summary_line(protocol: str, overall: dict[str, Any]) -> str:
    """One protocol's headline figures; undefined ones (no targeted or no no-target task) read "n/a"."""
    from partseg_ros.evaluation.report import format_with_unit as fmt

    return (
        f"{protocol}: {overall['num_tasks']} tasks, part-selection success: "
        f"mask {fmt(overall['part_selection_mask'], 'pct')}, "
        f"grasp point {fmt(overall['part_selection_grasp_point'], 'pct')}; gIoU {fmt(overall['giou'], 'pct')}, "
        f"no-target acc. {fmt(overall['no_target_accuracy'], 'pct')}; "
        f"latency p50 {fmt(overall['latency_p50_ms'], 'ms')}"
    )


def main(argv: Optional[Sequence[str]] = None, live_answerer: Optional[LiveAnswererFactory] = None) -> int:
    """The command; ``live_answerer`` enables ``--path live`` (see the note under the module docstring)."""
    args = build_parser().parse_args(argv)
    from partseg_ros.evaluation.aggregate import build_summary
    from partseg_ros.evaluation.report import write_report

    try:
        records, meta = run_evaluation(args, live_answerer)
    except (FileNotFoundError, RayUnavailableError, AnsweringError, ValueError,
            argparse.ArgumentTypeError) as exc:
        # Usage problems (missing bag, weights or params file, unknown backend, no ray, node
        # failing to start) get one clear line; anything else keeps its traceback.
        print(f"partseg_evaluate: {exc}", file=sys.stderr)
        return 2
    summary = build_summary(records)
    paths = write_report(records, args.out, meta, summary)
    for protocol, block in summary.items():
        print(summary_line(protocol, block["overall"]))
    print(f"report: {paths['html']} (also {paths['markdown'].name}, {paths['json'].name})")
    return 0


if __name__ == "__main__":
    from partseg_ros.console import run

    sys.exit(run("partseg_evaluate"))
