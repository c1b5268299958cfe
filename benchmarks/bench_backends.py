"""Per-backend latency per task, printed next to the papers' figures.

Random weights in the published architectures give the real cost of every
layer without downloading anything (accuracy is not measured here). One
"task" is a new frame plus a new instruction, nothing cached: the figure the
papers report. The "new instruction, same frame" column shows what the image
embedding cache saves when a robot re-asks about the frame it already has.

    python benchmarks/bench_backends.py                    # tiny configs: a smoke run, seconds
    python benchmarks/bench_backends.py --real-size        # published sizes (CPU: minutes, ~6 GB)
    python benchmarks/bench_backends.py --real-size --device cuda --dtype fp16
    python benchmarks/bench_backends.py --gpu-check
        [--bags /tmp/bench --evaluate instructsam:checkpoint=/models/InstructSAM-2B]

``--gpu-check`` is the one command for a lent GPU: real sizes, fp16 and bf16,
3 repeats, peak GPU memory per backend, and (when local checkpoint folders
and study bags are given) an end-to-end evaluator run per backend, all in one
table, within a wall-clock budget (``--budget-s``, default 540 s) so that it
fits a 10-minute device call. A CPU test runs it on tiny configs.

On CPU at real size, PISA's 7B language model is built with ``--lm-layers``
decoder layers (default 2) and its time extrapolated to all 32 from the
measured per-layer time; on CUDA it runs whole. Paper figures were taken on
GPUs: InstructPart table I8 (PISA), InstructSAM table 10 (InstructSAM-2B,
SAM3-Agent with Qwen3-VL-2B, the agentic counterpart of the Grounded-SAM pipeline).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))  # offline tokenizer builders live with the tiny test models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from partseg_ros.backends.reference_configs import reference_config, shrink  # noqa: E402
from partseg_ros.backends.runtime import RuntimeProfile, resolve_runtime, select_device  # noqa: E402
from partseg_ros.types import GroundingRequest  # noqa: E402

PAPER_SECONDS = {
    "pisa": ("PISA, InstructPart tab. I8", 2.0),
    "grounded_sam": ("SAM3-Agent-Qwen3-VL-2B, InstructSAM tab. 10", 29.6),
    "instructsam": ("InstructSAM-2B, InstructSAM tab. 10", 1.1),
}
INSTRUCTIONS = ("pick up the mug by its handle", "pour water from the kettle", "cut the bread with the knife")


@dataclass
class Row:
    backend: str
    config: str
    first_task_s: list[float] = field(default_factory=list)
    same_frame_s: list[float] = field(default_factory=list)
    note: str = ""
    error: str = ""
    dtype: str = ""
    peak_gb: Optional[float] = None


def _frame(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _time(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _measure(row: Row, ground: Callable[[GroundingRequest], object], clear_caches: Callable[[], None],
             runtime: RuntimeProfile, height: int, width: int, repeats: int) -> None:
    """Warm-up once, then ``repeats`` x (empty caches, new frame + instruction; then same frame + another one)."""
    def ask(rgb: np.ndarray, instruction: str) -> Callable[[], object]:
        return lambda: ground(GroundingRequest(rgb, instruction))

    ground(GroundingRequest(_frame(height, width, 999), "warm up the kettle"))
    for i in range(repeats):
        rgb = _frame(height, width, i)
        clear_caches()
        row.first_task_s.append(_time(ask(rgb, INSTRUCTIONS[i % 3]), runtime.device))
        row.same_frame_s.append(_time(ask(rgb, INSTRUCTIONS[(i + 1) % 3]), runtime.device))


# ---- PISA ------------------------------------------------------------------------------------------
class _LayerClock:
    """Forward hooks timing each LM decoder layer, to extrapolate a truncated LM to its full depth."""

    def __init__(self, layers, device: torch.device) -> None:
        self.device, self.total, self.calls, self._start = device, 0.0, 0, 0.0
        for layer in layers:
            layer.register_forward_pre_hook(self._pre)
            layer.register_forward_hook(self._post)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, *_):
        self._sync()
        self._start = time.perf_counter()

    def _post(self, *_):
        self._sync()
        self.total += time.perf_counter() - self._start
        self.calls += 1


def bench_pisa(args, runtime: RuntimeProfile) -> Row:
    from transformers import Dinov2Model, LlamaForCausalLM

    import tiny_models
    from partseg_ros.backends.pisa.backend import PisaBackend
    from partseg_ros.backends.pisa.model import PisaHead, PisaHeadConfig, PisaModel

    tokenizer = tiny_models.build_llama_tokenizer()
    if args.real_size:
        backbone_cfg = reference_config(args.pisa_backbone)
        lm_cfg = reference_config(args.pisa_lm)
        full_layers = lm_cfg.num_hidden_layers
        kept = full_layers if (runtime.is_cuda and not args.lm_layers) else min(args.lm_layers or 2, full_layers)
        lm_cfg = shrink(lm_cfg, num_hidden_layers=kept)
        head_cfg = PisaHeadConfig.for_models(backbone_cfg, lm_cfg)
        config = f"{args.pisa_backbone} @518 + {args.pisa_lm}"
        if kept < full_layers:
            config += f" ({kept}/{full_layers} layers, extrapolated)"
    else:
        backbone_cfg = shrink(reference_config("facebook/dinov2-base"), hidden_size=64, num_hidden_layers=4,
                              num_attention_heads=2)
        lm_cfg = shrink(reference_config(args.pisa_lm), vocab_size=len(tokenizer), hidden_size=64,
                        intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        full_layers = kept = 2
        head_cfg = PisaHeadConfig.for_models(backbone_cfg, lm_cfg, image_size=224, decoder_dim=64, decoder_heads=4,
                                             decoder_mlp_dim=128)
        config = "tiny (smoke run, not comparable)"
    torch.manual_seed(0)
    with torch.device(runtime.device):
        model = PisaModel(Dinov2Model(backbone_cfg), LlamaForCausalLM(lm_cfg), tokenizer, PisaHead(head_cfg))
    model = model.to(dtype=runtime.dtype)
    backend = PisaBackend.from_model(model, runtime=runtime)
    clock = _LayerClock(model.language_model.base_model.layers, runtime.device)
    row = Row("pisa", config, note="DINOv2 + LM + decoder")

    def clear() -> None:
        backend.image_cache.clear()
        backend.text_cache.clear()

    _measure(row, backend.ground, clear, runtime, args.height, args.width, args.repeats)
    if kept < full_layers and clock.calls:
        # Every timed call (first task and same-frame, new instruction) runs the LM exactly once.
        per_layer = clock.total / clock.calls
        missing = per_layer * (full_layers - kept)
        row.first_task_s = [t + missing for t in row.first_task_s]
        row.same_frame_s = [t + missing for t in row.same_frame_s]
        row.note += f"; LM {per_layer * 1000:.0f} ms/layer measured x {full_layers} layers"
    return row


# ---- Grounded-SAM ---------------------------------------------------------------------------------
def bench_grounded_sam(args, runtime: RuntimeProfile) -> Row:
    from transformers import Owlv2ForObjectDetection, Owlv2Processor, SamModel, SamProcessor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    import tiny_models
    from partseg_ros.backends.grounded_sam.backend import GroundedSamBackend
    from partseg_ros.backends.grounded_sam.detectors import Owlv2Detector
    from partseg_ros.backends.grounded_sam.segmenter import SamBoxSegmenter

    tokenizer = tiny_models.build_clip_tokenizer()
    if args.real_size:
        owl_cfg, sam_cfg = reference_config(args.detector), reference_config(args.sam)
        owl_side, sam_side = owl_cfg.vision_config.image_size, sam_cfg.vision_config.image_size
        config = f"{args.detector} @{owl_side} + {args.sam} @{sam_side}"
    else:
        owl_side, sam_side = 128, 256
        owl_cfg = shrink(reference_config("google/owlv2-base-patch16-ensemble"),
                         text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=2),
                         vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=owl_side),
                         projection_dim=64)
        sam_cfg = shrink(reference_config("facebook/sam-vit-base"),
                         vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                            global_attn_indexes=[1], mlp_dim=128, image_size=sam_side),
                         prompt_encoder_config=dict(image_size=sam_side, image_embedding_size=sam_side // 16))
        config = "tiny (smoke run, not comparable)"
    torch.manual_seed(0)
    with torch.device(runtime.device):
        owl, sam = Owlv2ForObjectDetection(owl_cfg), SamModel(sam_cfg)
    tiny_models.start_boxes_at_prior(owl)  # random box heads saturate to empty boxes; keep every stage running
    detector = Owlv2Detector(
        owl, Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": owl_side, "width": owl_side}),
                            tokenizer=tokenizer), runtime)
    segmenter = SamBoxSegmenter(
        sam, SamProcessor(image_processor=SamImageProcessorPil(
            size={"longest_edge": sam_side}, pad_size={"height": sam_side, "width": sam_side})), runtime)
    # Zero thresholds: random scores must not end a task early, so both detector queries and both SAM prompts run.
    backend = GroundedSamBackend.from_components(detector, segmenter, runtime, object_threshold=0.0, part_threshold=0.0)
    row = Row("grounded_sam", config, note="OWLv2 on frame + on object crop, SAM embed once, 2 box prompts")

    def clear() -> None:
        for cache in (detector.image_cache, detector.text_cache, segmenter.embedding_cache):
            cache.clear()

    _measure(row, backend.ground, clear, runtime, args.height, args.width, args.repeats)
    return row


# ---- InstructSAM (the other engineer's backend, used if importable) -----------------------------------
def bench_instructsam(args, runtime: RuntimeProfile) -> Row:
    try:
        from partseg_ros.backends.instructsam.presets import build_instructsam_for_benchmark
    except ImportError as exc:
        return Row("instructsam", "-", error=f"not importable: {exc}")
    size = "2B" if args.real_size else "tiny"
    predictor = build_instructsam_for_benchmark(size=size, device=runtime.device, dtype=runtime.dtype)
    row = Row("instructsam",
              "InstructSAM-2B (Qwen3-VL-2B + SAM 3)" if args.real_size else "tiny (smoke run, not comparable)",
              note="forced phrase: prefill + query block + SAM 3, no phrase generation steps")
    def clear() -> None:
        for name in ("llm_image_cache", "detector_image_cache"):
            cache = getattr(predictor, name, None)
            if cache is not None:
                cache.clear()

    _measure(row, lambda req: predictor.predict(req.rgb, req.instruction, phrase="handle"), clear, runtime,
             args.height, args.width, args.repeats)
    return row


def _evaluate(spec: str, args, budget_left: float) -> Row:
    """``partseg_evaluate --bags`` with one backend and its options (local checkpoint folders), end to end."""
    import subprocess
    import tempfile

    name, _, options = spec.partition(":")
    row = Row(name, f"evaluator on {args.bags}", dtype=args.dtypes.split(",")[0].strip())
    if budget_left < 30:
        row.error = "evaluation skipped: time budget spent"
        return row
    out = Path(tempfile.mkdtemp(prefix=f"gpu_check_{name}_"))
    command = [sys.executable, "-m", "partseg_ros.evaluation.cli", args.bags, "--backend", name, "--out", str(out),
               "--backend-option", f"device={args.device}", "--backend-option", f"dtype={row.dtype}"]
    for option in filter(None, options.split(",")):
        command += ["--backend-option", option]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget_left, cwd=ROOT)
    except subprocess.TimeoutExpired:
        row.error = f"evaluation ran past the time budget ({budget_left:.0f} s)"
        return row
    row.first_task_s = [time.perf_counter() - start]
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        row.error = f"evaluation failed (exit {done.returncode}): {tail}"
    else:
        summary = [line.strip() for line in done.stdout.splitlines() if line.strip()][-1:]
        row.note = f"whole run, report in {out}; {summary[0] if summary else ''}"
    return row


BENCHES = {"pisa": bench_pisa, "grounded_sam": bench_grounded_sam, "instructsam": bench_instructsam}


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):8.2f}" + (f" (n={len(values)})" if len(values) > 1 else "")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="pisa,grounded_sam,instructsam")
    parser.add_argument("--real-size", action="store_true", help="published model sizes (slow on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto: fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--dtypes", default="", help="comma-separated dtypes to measure in turn (default: --dtype)")
    parser.add_argument("--gpu-check", action="store_true",
                        help="real sizes on CUDA, fp16 and bf16, 3 repeats, peak memory; plus --evaluate runs")
    parser.add_argument("--bags", default="", help="study bags for --evaluate (partseg_generate_benchmark output)")
    parser.add_argument("--evaluate", action="append", default=[], metavar="BACKEND[:key=value,...]",
                        help="run partseg_evaluate on --bags with this backend and options (repeatable)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop starting new measurements after this")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--pisa-backbone", default="facebook/dinov2-large")
    parser.add_argument("--pisa-lm", default="lmsys/vicuna-7b-v1.5")
    parser.add_argument("--lm-layers", type=int, default=0, help="LM layers actually built (0: all on CUDA, 2 on CPU)")
    parser.add_argument("--detector", default="google/owlv2-base-patch16-ensemble")
    parser.add_argument("--sam", default="facebook/sam-vit-base")
    args = parser.parse_args(argv)
    if args.gpu_check:
        args.real_size, args.repeats = True, max(args.repeats, 3)
        args.device = "cuda" if args.device == "auto" else args.device
        args.dtypes = args.dtypes or "fp16,bf16"
    if args.evaluate and not args.bags:
        parser.error("--evaluate needs --bags")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dtype == "auto":  # the papers' GPU setting: half precision on CUDA; CPU always runs fp32
        args.dtype = "fp16" if select_device(args.device).type == "cuda" else "fp32"
    args.dtypes = args.dtypes or args.dtype
    runtime = resolve_runtime(args.device, args.dtypes.split(",")[0].strip())
    if runtime.is_cuda:
        device_name = torch.cuda.get_device_name(runtime.device)
    else:
        device_name = f"CPU, {torch.get_num_threads()} threads"
    print(f"# partseg backend latency: {runtime.describe()} ({device_name}), frame {args.width}x{args.height}, "
          f"random weights, {'published sizes' if args.real_size else 'TINY configs'}, dtypes {args.dtypes}")
    rows = []
    started = time.perf_counter()
    for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        runtime = resolve_runtime(args.device, dtype)
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            if name not in BENCHES:
                parser.error(f"unknown backend {name!r}; choose from {sorted(BENCHES)}")
            if time.perf_counter() - started > args.budget_s:
                rows.append(Row(name, "-", dtype=dtype, error=f"skipped: time budget {args.budget_s:.0f} s spent"))
                continue
            print(f"... {name} {dtype}", flush=True)
            if runtime.is_cuda:
                torch.cuda.reset_peak_memory_stats(runtime.device)
            try:
                with torch.inference_mode():
                    row = BENCHES[name](args, runtime)
            except Exception as exc:  # one backend failing (memory, missing piece) must not hide the others
                row = Row(name, "-", error=f"{type(exc).__name__}: {exc}")
            row.dtype = dtype
            if runtime.is_cuda:
                row.peak_gb = torch.cuda.max_memory_allocated(runtime.device) / 2**30
            rows.append(row)
            gc.collect()
            if runtime.is_cuda:
                torch.cuda.empty_cache()
    for spec in args.evaluate:
        rows.append(_evaluate(spec, args, budget_left=args.budget_s - (time.perf_counter() - started)))
    print()
    print(f"{'backend':<13} {'dtype':<5} {'per task [s]':>14} {'same frame, new instr. [s]':>27} "
          f"{'peak GPU [GiB]':>14} {'paper [s]':>10}  config / notes")
    for row in rows:
        ref_name, ref_s = PAPER_SECONDS.get(row.backend, ("-", float("nan")))
        peak = f"{row.peak_gb:14.2f}" if row.peak_gb is not None else f"{'-':>14}"
        if row.error:
            print(f"{row.backend:<13} {row.dtype:<5} {'-':>14} {'-':>27} {peak} {ref_s:>10.1f}  {row.error}")
            continue
        paper = f"paper: {ref_name}" if ref_name != "-" else ""
        notes = "; ".join(part for part in (row.config, row.note, paper) if part)
        print(f"{row.backend:<13} {row.dtype:<5} {_fmt(row.first_task_s):>14} {_fmt(row.same_frame_s):>27} {peak} "
              f"{ref_s:>10.1f}  {notes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
