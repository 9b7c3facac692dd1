"""Inference cost levers at the timeline's hop (1.5 s): ``python -m benchmarks.levers --seconds 180 --runs 7``.

The same windows of one generated recording go through each contender, interleaved with a rotating
order (so load on a shared machine hits all alike): the app's path (torch dynamic int8) at several
batch sizes and thread counts, the feature extractor alone, and, where `onnxruntime` is installed, the
model exported to ONNX and run by ONNX Runtime in float32 and in its dynamic int8. Reports the median
seconds per contender, its ratio to the app's path, and the largest confidence difference from float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks import recordings, report
from benchmarks.machine import load_average, machine_record
from benchmarks.timing import load_float32, our_windows
from instrusense.audio import load_audio
from instrusense.model import tagger_for
from instrusense.scores import activate
from instrusense.settings import DEFAULT_MODEL, load_settings


def _features(tagger, windows: np.ndarray) -> torch.Tensor:
    return tagger.feature_extractor(list(windows), sampling_rate=tagger.sampling_rate,
                                    return_tensors="pt")["input_features"]


def _torch_forward(model, feats: torch.Tensor, batch: int) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(input_features=feats[i:i + batch]).logits.float().numpy()
                               for i in range(0, len(feats), batch)])


def onnx_sessions(model_id: str, sample: torch.Tensor, folder: Path, threads: int) -> dict:
    """ONNX Runtime sessions of the checkpoint in float32 and dynamic int8 (empty without onnxruntime)."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return {}

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_features):
            return self.model(input_features=input_features).logits

    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    torch.onnx.export(Logits(load_float32(model_id)), (sample[:2],), str(fp32), input_names=["input_features"],
                      output_names=["logits"], dynamic_axes={"input_features": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in (("onnxruntime float32", fp32), ("onnxruntime int8", int8))}


def _ort_forward(session, feats: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([session.run(None, {"input_features": feats[i:i + batch]})[0]
                           for i in range(0, len(feats), batch)])


def interleaved(contenders: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Seconds of each contender over `runs` rounds, the order rotating each round; one warm-up call each."""
    for fn in contenders.values():
        fn()
    names, times = list(contenders), {name: [] for name in contenders}
    for rep in range(runs):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            started = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - started)
    return times


def run(args: argparse.Namespace, workdir: Path) -> dict:
    load_start = load_average()
    settings = load_settings(model=args.model)
    tagger = tagger_for(settings)
    threads = torch.get_num_threads()
    path = recordings.write_recording(workdir / f"levers-{args.seconds:g}s.wav", args.seconds, "wav")
    rec = load_audio(path, tagger.sampling_rate, max_seconds=settings.max_duration_seconds,
                     min_seconds=settings.min_duration_seconds)
    windows = our_windows(rec.samples, tagger, settings)
    feats = _features(tagger, windows)
    reference = activate(_torch_forward(load_float32(args.model), feats, settings.batch_size), tagger.multi_label)

    def with_threads(n: int, fn: Callable[[], object]) -> Callable[[], object]:
        def call():
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(threads)
        return call

    contenders: dict[str, Callable[[], object]] = {"features (feature extractor alone)": lambda: _features(tagger, windows)}
    outputs: dict[str, Callable[[], np.ndarray]] = {}
    for batch in args.batches:
        outputs[f"torch int8, batch {batch}"] = lambda b=batch: _torch_forward(tagger.model, feats, b)
    outputs[f"torch int8, batch {settings.batch_size}, 1 thread"] = with_threads(
        1, lambda: _torch_forward(tagger.model, feats, settings.batch_size))
    for name, session in onnx_sessions(args.model, feats, workdir, threads).items():
        for batch in sorted({settings.batch_size, max(args.batches)}):
            outputs[f"{name}, batch {batch}"] = lambda s=session, b=batch: _ort_forward(s, feats.numpy(), b)
    contenders.update(outputs)
    times = interleaved(contenders, args.runs)
    app_key = f"torch int8, batch {settings.batch_size}"
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    rows = []
    for name, med in medians.items():
        diff = (float(np.abs(activate(outputs[name](), tagger.multi_label) - reference).max())
                if name in outputs else None)
        rows.append({"contender": name, "median_s": med, "vs_app": med / medians[app_key], "max_diff_vs_float32": diff})
    return {"machine": {**machine_record(), "torch_threads": threads, "load_average_start": load_start,
                        "load_average_end": load_average()},
            "config": {"seconds": args.seconds, "windows": int(len(windows)), "hop_s": settings.hop_seconds,
                       "runs": args.runs, "model": args.model}, "rows": rows, "runs": times}


def render(results: dict) -> str:
    cfg, m = results["config"], results["machine"]
    head = (f"{cfg['seconds']:g} s recording, {cfg['windows']} windows (hop {cfg['hop_s']:g} s), median of "
            f"{cfg['runs']} interleaved runs; {m.get('cpu_model')}, torch threads {m['torch_threads']}, "
            f"load average at the start {m.get('load_average_start')}, at the end {m.get('load_average_end')}")
    rows = [[r["contender"], r["median_s"], r["vs_app"], r["max_diff_vs_float32"]] for r in results["rows"]]
    return head + "\n\n" + report.markdown_table(
        ["contender", "median s", "× the app's path", "largest confidence difference vs float32"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--seconds", type=float, default=180.0, help="length of the generated recording")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--out", type=Path, default=Path("benchmarks/levers.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="instrusense-levers-") as tmp:
        results = run(args, Path(tmp))
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = render(results)
    args.out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
