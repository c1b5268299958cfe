"""The evaluation report: JSON for machines, Markdown and one self-contained HTML page for people.

Files written to the report folder:
* ``report.json``: run settings, the summary of every protocol, every task record;
* ``report.md``: the tables, with the plot and overlays as PNG files next to it;
* ``report.html``: the same content with inline CSS and base64 images, one file to mail;
* ``success_vs_latency.png`` and ``overlays/*.png``.
The study's published figures appear as reference rows and points, always
labelled "published, not re-measured".
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from partseg_ros.evaluation.aggregate import build_summary, json_safe
from partseg_ros.evaluation.records import TaskRecord


@dataclass(frozen=True)
class PublishedResult:
    method: str
    part_selection: float  # fraction
    time_s: float
    note: str = ""


SOURCE_OF_PUBLISHED = "InstructPart (arXiv 2505.18291), appendix I, Table I8"
PUBLISHED_NOTE = "published, not re-measured"
PUBLISHED_RESULTS: tuple[PublishedResult, ...] = (
    PublishedResult("PISA", 0.80, 2.0),
    PublishedResult("ShapeGrasp", 0.86, 25.0),
    PublishedResult("LERF-TOGO", 0.82, 120.0, "same object categories, not identical objects"),
)

# (key in the summary, column title, kind) for the overall and per-scene tables.
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("num_tasks", "tasks", "int"),
    ("num_target_not_visible", "target hidden", "int"),
    ("part_selection_mask", "success (mask IoU>=0.5)", "pct"),
    ("part_selection_grasp_point", "success (grasp point)", "pct"),
    ("giou", "gIoU", "pct"),
    ("ciou", "cIoU", "pct"),
    ("p50", "P@50", "pct"),
    ("p50_95", "P@50:95", "pct"),
    ("micro_giou", "micro-gIoU", "pct"),
    ("macro_giou", "macro-gIoU", "pct"),
    ("no_target_accuracy", "no-target acc.", "pct"),
    ("false_empty_rate", "false-empty rate", "pct"),
    ("latency_p50_ms", "latency p50 (ms)", "ms"),
    ("latency_p95_ms", "latency p95 (ms)", "ms"),
    ("throughput_tasks_per_s", "tasks/s", "rate"),
    ("num_errors", "errors", "int"),
)


def format_value(value: Any, kind: str) -> str:
    """A table cell: pct = fraction as percent, ms, rate, or plain; n/a for undefined values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{100.0 * value:.1f}"
    if kind == "ms":
        return f"{value:.1f}"
    if kind == "rate":
        return f"{value:.2f}"
    return str(value)


def format_with_unit(value: Any, kind: str) -> str:
    """:func:`format_value` followed by its unit ("%" or " ms"), or a bare "n/a" when undefined (never "n/a%")."""
    text = format_value(value, kind)
    if text == "n/a":
        return text
    return text + {"pct": "%", "ms": " ms"}.get(kind, "")


def grasp_verdict(record: TaskRecord) -> str:
    """The grasp-point criterion's outcome in words: OK, or miss with the reason.

    ``grasp_status`` says whether a grasp region could be made; when one was
    made ("ok") and still missed, the reason is where it went, not "ok".
    """
    if record.grasp_point_success:
        return "OK"
    if record.grasp_status != "ok":
        return f"miss ({record.grasp_status})"
    if not record.has_target:
        return "miss (a grasp region was offered for a task with no target)"
    return "miss (centroid off the target part)"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def overlay_filename(record: TaskRecord) -> str:
    return (
        "_".join(
            _safe_name(s)
            for s in (record.bag, str(record.sample_index), record.protocol, record.scene, record.view, record.task_id)
        )
        + ".png"
    )


# -- plot ---------------------------------------------------------------------


def success_latency_plot(summary: dict[str, Any], backend: str, path: str) -> bytes:
    """PNG of part-selection success against per-task latency, with the published points for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
    markers = {"part_selection_mask": "o", "part_selection_grasp_point": "s"}
    for protocol, block in summary.items():
        overall = block["overall"]
        latency_s = overall["latency_p50_ms"] / 1000.0
        for key, marker in markers.items():
            success = overall[key]
            if not (math.isfinite(latency_s) and math.isfinite(success)) or latency_s <= 0:
                continue
            criterion = "mask" if key == "part_selection_mask" else "grasp point"
            ax.scatter(
                [latency_s],
                [100 * success],
                marker=marker,
                s=60,
                zorder=3,
                label=f"{backend}, {protocol}, {criterion} ({path})",
            )
    for i, ref in enumerate(PUBLISHED_RESULTS):
        ax.scatter(
            [ref.time_s],
            [100 * ref.part_selection],
            marker="D",
            s=50,
            facecolors="none",
            edgecolors="grey",
            zorder=2,
            label=f"published, not re-measured ({SOURCE_OF_PUBLISHED.split(' (')[0]} Table I8)" if i == 0 else None,
        )
        # Alternate label sides: the published points sit close together.
        ax.annotate(
            ref.method,
            (ref.time_s, 100 * ref.part_selection),
            textcoords="offset points",
            xytext=(0, 8 if i % 2 else -14),
            ha="center",
            fontsize=8,
            color="grey",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency per task, p50 (s, log scale)")
    ax.set_ylabel("part-selection success (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, which="major", alpha=0.3)
    # Below the axes: inside, it would hide points of low-scoring runs.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax.set_title("Part selection vs latency")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


# -- tables as rows of strings, shared by Markdown and HTML ----------------------


def _overall_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["protocol"] + [title for _, title, _ in METRIC_COLUMNS]
    rows = [
        [protocol] + [format_value(block["overall"][key], kind) for key, _, kind in METRIC_COLUMNS]
        for protocol, block in summary.items()
    ]
    return header, rows


def _scene_table(block: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["scene"] + [title for _, title, _ in METRIC_COLUMNS]
    rows = [
        [scene] + [format_value(s[key], kind) for key, _, kind in METRIC_COLUMNS]
        for scene, s in block["per_scene"].items()
    ]
    return header, rows


def _task_table(block: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = [
        "scene",
        "task",
        "instruction",
        "target",
        "predicted",
        "views",
        "views target hidden",
        "mean IoU",
        "mask success",
        "grasp-point success",
        "latency p50 (ms)",
        "errors",
    ]
    rows = [
        [
            row["scene"],
            row["task_id"],
            row["instruction"],
            row["target"],
            ", ".join(row["predicted"]),
            str(row["num_views"]),
            str(row["views_target_hidden"]),
            format_value(row["mean_iou"], "pct"),
            format_value(row["mask_success"], "pct"),
            format_value(row["grasp_point_success"], "pct"),
            format_value(row["latency_p50_ms"], "ms"),
            "; ".join(row["errors"]),
        ]
        for row in block["per_task"]
    ]
    return header, rows


def _reference_table(summary: dict[str, Any], backend: str, path: str) -> tuple[list[str], list[list[str]]]:
    header = ["method", "part selection (%)", "time per task (s)", "source"]
    rows = []
    for protocol, block in summary.items():
        o = block["overall"]
        latency_s = o["latency_p50_ms"] / 1000.0 if math.isfinite(o["latency_p50_ms"]) else float("nan")
        time_text = f"{latency_s:.3g}" if math.isfinite(latency_s) else "n/a"
        rows.append(
            [
                f"{backend} ({protocol}, mask criterion)",
                format_value(o["part_selection_mask"], "pct"),
                time_text,
                f"measured here, {path} path, p50",
            ]
        )
        rows.append(
            [
                f"{backend} ({protocol}, grasp-point criterion)",
                format_value(o["part_selection_grasp_point"], "pct"),
                time_text,
                f"measured here, {path} path, p50",
            ]
        )
    for ref in PUBLISHED_RESULTS:
        note = f"{PUBLISHED_NOTE}: {SOURCE_OF_PUBLISHED}" + (f"; {ref.note}" if ref.note else "")
        rows.append([f"{ref.method} ({PUBLISHED_NOTE})", f"{100 * ref.part_selection:.0f}", f"{ref.time_s:g}", note])
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]], published_rows: int = 0) -> str:
    """A table; the last ``published_rows`` rows are styled as published reference rows."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        ("<tr class='published'>" if i >= len(rows) - published_rows else "<tr>")
        + "".join(f"<td>{html.escape(c)}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _caption(record: TaskRecord) -> str:
    predicted = "(empty)" if record.prediction_empty else f"{record.predicted_object}/{record.predicted_part}"
    target = f"{record.target_object}/{record.target_part}" if record.has_target else "(no target)"
    if record.has_target and not record.target_visible:
        target += " (hidden in this view: not scored)"
    verdict = "OK" if record.mask_success else "miss"
    grasp = grasp_verdict(record)
    return (
        f'{record.scene} / view {record.view} / {record.task_id} [{record.protocol}]: "{record.instruction}" '
        f"target {target}, predicted {predicted}, IoU {100 * record.iou:.1f}%, mask {verdict}, grasp point {grasp}, "
        f"{record.latency_ms:.0f} ms"
    )


# -- writers ----------------------------------------------------------------


_LEGEND = (
    "Overlays: green = target part only, magenta = prediction only, yellow = both, blue cross = grasp-region centroid."
)


def _markdown(
    meta: dict[str, Any], summary: dict[str, Any], records: list[TaskRecord], overlay_files: dict[int, str]
) -> str:
    out = [f"# Part-selection evaluation: {meta['backend']}", ""]
    out.append(
        f"Path: {meta['path']}; protocols: {', '.join(meta['protocols'])}; bags: {', '.join(meta['bags'])}; "
        f"tasks scored: {len(records)}."
    )
    out.append("Percentages unless stated; n/a = undefined for this subset. Definitions: docs/evaluation.md.")
    out += ["", "## Overall", "", _md_table(*_overall_table(summary)), ""]
    out += [
        "## Against the published study",
        "",
        _md_table(*_reference_table(summary, meta["backend"], meta["path"])),
        "",
    ]
    out += ["![success vs latency](success_vs_latency.png)", ""]
    for protocol, block in summary.items():
        out += [f"## Protocol `{protocol}`", "", "### Per scene", "", _md_table(*_scene_table(block)), ""]
        out += ["### Per task", "", _md_table(*_task_table(block)), ""]
    out += ["## Overlays", "", _LEGEND, ""]
    for index, record in enumerate(records):
        if index in overlay_files:
            out += [f"![{record.task_id}](overlays/{overlay_files[index]})", "", _caption(record), ""]
        else:
            out += [_caption(record), ""]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr:nth-child(even) td{background:#fafafa}
tr.published td{color:#777;font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:250px;font-size:0.75em}
figure img{display:block;max-width:240px;border:1px solid #ccc}
"""


def _html(meta: dict[str, Any], summary: dict[str, Any], records: list[TaskRecord], plot_png: bytes) -> str:
    def b64(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

    title = f"partseg evaluation: {html.escape(meta['backend'])}"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style></head><body>"
    ]
    parts.append(f"<h1>Part-selection evaluation: {html.escape(meta['backend'])}</h1>")
    parts.append(
        f"<p>Path: {html.escape(meta['path'])}; protocols: {html.escape(', '.join(meta['protocols']))}; "
        f"bags: {html.escape(', '.join(meta['bags']))}; tasks scored: {len(records)}. "
        "Percentages unless stated; n/a = undefined for this subset.</p>"
    )
    parts += ["<h2>Overall</h2>", _html_table(*_overall_table(summary))]
    parts += [
        "<h2>Against the published study</h2>",
        _html_table(*_reference_table(summary, meta["backend"], meta["path"]), published_rows=len(PUBLISHED_RESULTS)),
    ]
    parts.append(f"<img alt='success vs latency' src='{b64(plot_png)}'>")
    for protocol, block in summary.items():
        parts += [f"<h2>Protocol {html.escape(protocol)}</h2>", "<h3>Per scene</h3>", _html_table(*_scene_table(block))]
        parts += ["<h3>Per task</h3>", _html_table(*_task_table(block))]
    parts += ["<h2>Overlays</h2>", f"<p>{html.escape(_LEGEND)}</p>", "<div class='grid'>"]
    for record in records:
        image = (
            f"<img alt='{html.escape(record.task_id)}' src='{b64(record.overlay_png)}'>" if record.overlay_png else ""
        )
        parts.append(f"<figure>{image}<figcaption>{html.escape(_caption(record))}</figcaption></figure>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def write_report(
    records: list[TaskRecord], out_dir: Path, meta: dict[str, Any], summary: Optional[dict[str, Any]] = None
) -> dict[str, Path]:
    """Write report.json, report.md, report.html, the plot and the overlays; return their paths.

    ``meta`` must hold at least ``backend``, ``path``, ``protocols`` and ``bags``.
    """
    out_dir = Path(out_dir)
    overlay_dir = out_dir / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(records) if summary is None else summary

    overlay_files: dict[int, str] = {}
    for index, record in enumerate(records):
        if record.overlay_png:
            name = overlay_filename(record)
            (overlay_dir / name).write_bytes(record.overlay_png)
            overlay_files[index] = name

    plot_png = success_latency_plot(summary, meta["backend"], meta["path"])
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "plot": out_dir / "success_vs_latency.png",
    }
    paths["plot"].write_bytes(plot_png)
    document = {
        "meta": meta,
        "published_reference": {
            "source": SOURCE_OF_PUBLISHED,
            "note": PUBLISHED_NOTE,
            "results": [
                {"method": r.method, "part_selection": r.part_selection, "time_s": r.time_s, "note": r.note}
                for r in PUBLISHED_RESULTS
            ],
        },
        "summary": summary,
        "records": [r.to_json() for r in records],
    }
    paths["json"].write_text(json.dumps(json_safe(document), indent=2, sort_keys=False) + "\n")
    paths["markdown"].write_text(_markdown(meta, summary, records, overlay_files))
    paths["html"].write_text(_html(meta, summary, records, plot_png))
    return paths
