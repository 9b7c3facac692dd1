"""In-process timings with the model loaded once: end to end by stage, and the reference comparisons."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from instrusense.analysis import analyze_recording, geometry_for
from instrusense.audio import load_audio
from instrusense.model import Tagger
from instrusense.plot import label_plot
from instrusense.settings import Settings
from instrusense.windows import frame

AST_RATE = 16_000
AST_WINDOW_SECONDS = 10.24  # AST-base's native input: 1024 frames of 10 ms
AST_BATCH = 4


def render_outputs(analysis, settings: Settings) -> int:
    """The label plot and the JSON record (timeline included), serialised as the app sends them; bytes."""
    import json

    from instrusense.export import analysis_record

    plot = label_plot(analysis, settings.top_k).to_json()
    return len(plot) + len(json.dumps(analysis_record("recording", analysis)))


class _Timed:
    """Calls `target`, adding the seconds spent to `self.seconds`; everything else is delegated."""

    def __init__(self, target):
        self._target, self.seconds = target, 0.0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._target(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str):
        return getattr(self._target, name)


def end_to_end(path: str | Path, tagger: Tagger, settings: Settings) -> dict[str, float]:
    """One analysis of `path` as the app runs it, with each stage's seconds.

    The pipeline is `analyze_file` (= `load_audio` + `analyze_recording`) followed by the label plot and
    the JSON record, serialised as the app sends them (`plot_s`). `features` and `forward` are the feature extractor's and the
    model's share of the inference; `rest` is windowing, silence check, pooling and segments.
    """
    features, forward = _Timed(tagger.feature_extractor), _Timed(tagger.model)
    timed = dataclasses.replace(tagger, feature_extractor=features, model=forward)
    t0 = time.perf_counter()
    rec = load_audio(path, tagger.sampling_rate, max_seconds=settings.max_duration_seconds,
                     min_seconds=settings.min_duration_seconds)
    t1 = time.perf_counter()
    analysis = analyze_recording(rec, timed, settings)
    t2 = time.perf_counter()
    render_outputs(analysis, settings)
    t3 = time.perf_counter()
    return {"total_s": t3 - t0, "decode_s": t1 - t0, "features_s": features.seconds, "forward_s": forward.seconds,
            "rest_s": (t2 - t1) - features.seconds - forward.seconds, "plot_s": t3 - t2,
            "windows": int(len(analysis.timeline.probs)), "audio_s": analysis.analysed_seconds}


def median_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-key median of the seconds (each key on its own, so the stages need not sum to the total);
    counts and lengths, the same in every run, as they are."""
    return {key: statistics.median(r[key] for r in runs) if key.endswith("_s") and key != "audio_s" else runs[0][key]
            for key in runs[0]}


def our_windows(samples: np.ndarray, tagger: Tagger, settings: Settings) -> np.ndarray:
    """The windows `analyze_recording` cuts from a recording (same window and hop)."""
    return frame(samples, *geometry_for(tagger, settings).in_samples(tagger.sampling_rate))


def build_ast_base():
    """AST-base (`ASTConfig()` defaults: 12 layers, 768 wide, 1024×128 input), random weights, timing only."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig()).eval()
    return model, ASTFeatureExtractor()


def ast_windows(samples_16k: np.ndarray) -> np.ndarray:
    """Non-overlapping 10.24 s windows (AST's native input), the last one zero-padded."""
    n = round(AST_WINDOW_SECONDS * AST_RATE)
    count = max(1, math.ceil(len(samples_16k) / n))
    padded = np.zeros(count * n, np.float32)
    padded[:len(samples_16k)] = samples_16k
    return padded.reshape(count, n)


def ast_inference(windows: np.ndarray, model, extractor, batch_size: int = AST_BATCH) -> float:
    """Seconds for AST's feature extractor + forward pass over all windows."""
    started = time.perf_counter()
    for i in range(0, len(windows), batch_size):
        inputs = extractor(list(windows[i:i + batch_size]), sampling_rate=AST_RATE, return_tensors="pt")
        with torch.inference_mode():
            model(**inputs).logits.float().numpy()
    return time.perf_counter() - started


def our_inference(windows: np.ndarray, tagger: Tagger, batch_size: int) -> float:
    """Seconds for our feature extractor + forward pass over all windows (`Tagger.predict`)."""
    started = time.perf_counter()
    tagger.predict(windows, batch_size)
    return time.perf_counter() - started


def load_float32(model_id: str) -> torch.nn.Module:
    """The checkpoint as plain float32 weights (the reference for any quantisation the app applies)."""
    from transformers import AutoModelForAudioClassification

    return AutoModelForAudioClassification.from_pretrained(model_id, use_safetensors=True).float().eval()


def _quantised_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Dynamic int8 linear layers: their packed weights are not `parameters()`."""
    return [m for m in model.modules() if "quantiz" in type(m).__module__.lower() and callable(getattr(m, "weight", None))]


def describe_precision(model) -> str:
    """What the app computes in: parameter dtypes, plus the linear layers quantised to int8 if there are any."""
    if not isinstance(model, torch.nn.Module):
        return type(model).__name__
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    quantised = len(_quantised_linears(model))
    text = "+".join(dtypes) or "no parameters"
    return f"{text}, {quantised} linear layers in dynamic int8" if quantised else text


def parameter_count(model) -> int | None:
    """Weights and biases, those of int8 linear layers included."""
    if not isinstance(model, torch.nn.Module):
        return None
    count = sum(p.numel() for p in model.parameters())
    for m in _quantised_linears(model):
        bias = m.bias()
        count += m.weight().numel() + (bias.numel() if bias is not None else 0)
    return count


def compare(path: Path, tagger: Tagger, settings: Settings, model_id: str, runs: int) -> dict:
    """AST-base vs our model (as the app loads it, and at float32) on the same audio, interleaved.

    Each repetition times all contenders back to back, so load on a shared machine hits them alike and
    the ratios stay meaningful even when the absolute seconds do not.
    """
    ast_model, ast_extractor = build_ast_base()
    fp32 = dataclasses.replace(tagger, model=load_float32(model_id))
    load = dict(max_seconds=settings.max_duration_seconds, min_seconds=settings.min_duration_seconds)
    ours_win = our_windows(load_audio(path, tagger.sampling_rate, **load).samples, tagger, settings)
    rec16 = load_audio(path, AST_RATE, **load)
    ast_win = ast_windows(rec16.samples)
    audio_s = rec16.duration

    contenders = {
        "ours_app": lambda: our_inference(ours_win, tagger, settings.batch_size),
        "ours_float32": lambda: our_inference(ours_win, fp32, settings.batch_size),
        "ast_base": lambda: ast_inference(ast_win, ast_model, ast_extractor),
        "ours_end_to_end": lambda: end_to_end(path, tagger, settings)["total_s"],
    }
    # Warm-up with full batches (first calls allocate and pick kernels), then interleaved repetitions
    # whose order rotates, so that no contender always runs first or last.
    our_inference(ours_win[:settings.batch_size], tagger, settings.batch_size)
    our_inference(ours_win[:settings.batch_size], fp32, settings.batch_size)
    ast_inference(ast_win[:AST_BATCH], ast_model, ast_extractor)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(runs):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            times[name].append(contenders[name]())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "file": Path(path).name,
        "audio_s": audio_s,
        "runs": times,
        "median_s": med,
        "per_audio_second": {k: v / audio_s for k, v in med.items()},
        "windows": {"ours": int(len(ours_win)), "ast_base": int(len(ast_win))},
        "batch_size": {"ours": settings.batch_size, "ast_base": AST_BATCH},
        "parameters": {"ours": parameter_count(tagger.model), "ast_base": parameter_count(ast_model)},
        "precision": {"ours_app": describe_precision(tagger.model), "ours_float32": "float32"},
        "ratio": {
            "ast_vs_ours_inference": med["ast_base"] / med["ours_app"],
            "ast_vs_ours_end_to_end": med["ast_base"] / med["ours_end_to_end"],
            "float32_vs_app": med["ours_float32"] / med["ours_app"],
        },
    }
