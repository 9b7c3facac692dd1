"""Results → targets verdicts and a markdown report (pure functions over the results dict)."""

from __future__ import annotations

from typing import Any

TARGETS = {  # name: (goal, comparison); the targets for this 2-core CPU
    "180 s recording end to end (s)": (3.0, "<="),
    "180 s recording end to end, stretch (s)": (1.5, "<="),
    "600 s recording end to end (s)": (10.0, "<="),
    "600 s recording end to end, full-resolution timeline (s)": (6.0, "<="),
    "timeline hop at 600 s (s)": (1.5, "<="),
    "less time per audio second than AST-base (×)": (10.0, ">="),
    "peak memory analysing 600 s (MB)": (1536.0, "<="),
    "cold start to first result, CLI (s)": (8.0, "<="),
    "cold start to first result, app (s)": (8.0, "<="),
}


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers rounded, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; numbers right-aligned."""
    cells = [[fmt(c) for c in row] for row in rows]
    numeric = [bool(rows) and all((isinstance(r[i], (int, float)) and not isinstance(r[i], bool)) or r[i] is None
                                   for r in rows)
               for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _worst(rows: list[dict], seconds: float, key: str) -> float | None:
    values = [r[key] for r in rows if r["seconds"] == seconds and r.get(key) is not None]
    return max(values) if values else None


def measured_for_targets(results: dict) -> dict[str, float | None]:
    """The figure each target is judged on (worst format; whole-process peak memory)."""
    e2e = [{"seconds": r["seconds"], "total_s": r["median"]["total_s"]} for r in results.get("end_to_end", [])]
    cold = results.get("cold_start", {})
    ratio = results.get("comparison", {}).get("ratio", {}).get("ast_vs_ours_end_to_end")
    return {
        "180 s recording end to end (s)": _worst(e2e, 180, "total_s"),
        "600 s recording end to end, full-resolution timeline (s)": _worst(e2e, 600, "total_s"),
        "timeline hop at 600 s (s)": _hop(results, 600),
        "180 s recording end to end, stretch (s)": _worst(e2e, 180, "total_s"),
        "600 s recording end to end (s)": _worst(e2e, 600, "total_s"),
        "less time per audio second than AST-base (×)": ratio,
        "peak memory analysing 600 s (MB)": _worst(results.get("memory", []), 600, "peak_rss_mb"),
        "cold start to first result, CLI (s)": cold.get("cli", {}).get("median_s"),
        "cold start to first result, app (s)": cold.get("app", {}).get("median_s"),
    }


def _hop(results: dict, seconds: float) -> float | None:
    """The hop the analysis actually used, from the windows it ran over that recording."""
    window = results.get("model", {}).get("window_s")
    rows = [r["median"] for r in results.get("end_to_end", []) if r["seconds"] == seconds]
    if not rows or not window or rows[0]["windows"] < 2:
        return None
    return (rows[0]["audio_s"] - window) / (rows[0]["windows"] - 1)


def verdicts(results: dict) -> list[dict]:
    """One row per target: goal, measured value, met (None where this run did not measure it)."""
    rows = []
    for name, value in measured_for_targets(results).items():
        goal, op = TARGETS[name]
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        rows.append({"target": name, "goal": f"{op} {goal:g}", "measured": value, "met": met})
    return rows


def _machine_lines(m: dict, model: dict) -> list[str]:
    cores = f"{m['cpu_count']} logical CPUs, {m['cpu_affinity']} usable"
    if m.get("cpu_quota"):
        cores += f", cgroup quota {m['cpu_quota']:g} CPUs"
    return [
        f"- CPU: {m['cpu_model']} ({cores}); memory {fmt(m.get('memory_total_mb'), 0)} MB",
        f"- torch {m['torch']} ({m['torch_threads']} intra-op threads, {m['torch_interop_threads']} inter-op), "
        f"transformers {m['transformers']}, numpy {m['numpy']}, libsndfile {m['libsndfile']}, Python {m['python']}",
        f"- load average (1/5/15 min) at start {m.get('load_average_start')}, at end {m.get('load_average_end')}",
        f"- code {m.get('code_version')}; model `{model.get('id')}` ({model.get('type')}, "
        f"{fmt(model.get('parameters'))} parameters, {model.get('precision')}, window {fmt(model.get('window_s'))} s, "
        f"hop {fmt(model.get('hop_s'))} s, batch {model.get('batch_size')})",
    ]


def render_markdown(results: dict) -> str:
    """The whole report: machine, then each measurement that ran, then the targets."""
    cfg = results["config"]
    out = [f"## Benchmark results{' (quick smoke run: no conclusions)' if cfg.get('quick') else ''}", ""]
    out += _machine_lines(results["machine"], results.get("model", {})) + [""]

    cold = results.get("cold_start")
    if cold:
        rows = [[face, c["median_s"], c.get("model_loaded_s"), c.get("serving_s"), c.get("peak_rss_mb"),
                 len(c["runs"])] for face, c in cold.items()]
        out += [f"### Cold start (process start → first result, {cfg['cold_file']})", "",
                markdown_table(["face", "first result (s)", "model loaded (s)", "serving (s)",
                                "peak RSS incl. exit (MB)", "runs"], rows), ""]

    e2e = results.get("end_to_end")
    if e2e:
        stages = ("decode_s", "features_s", "forward_s", "rest_s", "plot_s", "windows")
        rows = [[f"{r['seconds']:g} s", r["format"], r["median"]["total_s"], min(x["total_s"] for x in r["runs"]),
                 *(r["median"][k] for k in stages), r.get("x_faster_than_ast")] for r in e2e]
        out += [f"### End to end, warm (decode → windows → inference → segments → plot, median of {cfg['runs']})",
                "", "Stage columns are medians in seconds; `features` + `forward` are the inference.", "",
                markdown_table(["recording", "format", "median (s)", "best (s)", "decode", "features", "forward",
                                "rest", "plot", "windows", "× faster than AST-base"], rows), ""]

    mem = results.get("memory")
    if mem:
        rows = [[f"{r['seconds']:g} s", r["format"], r["rss_after_load_mb"], r["analysis_peak_mb"],
                 r["analysis_increment_mb"], r["load_peak_mb"], r["peak_rss_mb"]] for r in mem]
        out += ["### Peak resident memory (fresh process: load model, analyse one file, plot)", "",
                markdown_table(["recording", "format", "after model load (MB)", "analysis peak (MB)",
                                "analysis increment (MB)", "peak while loading (MB)", "whole-process peak (MB)"],
                               rows), ""]

    batch = results.get("batch")
    if batch:
        rows = [[batch["files"], batch["file_seconds"], batch["wall_s"], batch["startup_s"], batch["files_per_minute"],
                 batch["files_per_minute_excl_startup"], batch["peak_rss_mb"]]]
        out += ["### CLI batch (one `python -m instrusense analyze --json` call)", "",
                markdown_table(["files", "seconds each", "wall (s)", "start-up (s)", "files/min",
                                "files/min excl. start-up", "peak RSS incl. exit (MB)"], rows), ""]

    comp = results.get("comparison")
    if comp:
        med, per, ratio = comp["median_s"], comp["per_audio_second"], comp["ratio"]
        rows = [
            ["AST-base (random weights)", "float32", comp["parameters"]["ast_base"], comp["windows"]["ast_base"],
             med["ast_base"], per["ast_base"], 1.0],
            ["ours, inference, as the app loads it", comp["precision"]["ours_app"], comp["parameters"]["ours"],
             comp["windows"]["ours"], med["ours_app"], per["ours_app"], ratio["ast_vs_ours_inference"]],
            ["ours, inference, float32", "float32", comp["parameters"]["ours"], comp["windows"]["ours"],
             med["ours_float32"], per["ours_float32"], med["ast_base"] / med["ours_float32"]],
            ["ours, end to end", comp["precision"]["ours_app"], comp["parameters"]["ours"], comp["windows"]["ours"],
             med["ours_end_to_end"], per["ours_end_to_end"], ratio["ast_vs_ours_end_to_end"]],
        ]
        out += [f"### Same audio through AST-base and our model ({comp['file']}, {comp['audio_s']:g} s, interleaved, "
                f"median of {len(comp['runs']['ast_base'])})", "",
                markdown_table(["model", "precision", "parameters", "windows", "median (s)", "s per audio s",
                                "× less time than AST-base"], rows), "",
                f"float32 / app precision: {fmt(ratio['float32_vs_app'])}× (1.0 = the app runs float32).", ""]

    out += ["### Targets", "",
            markdown_table(["target", "goal", "measured", "met"],
                           [[v["target"], v["goal"], v["measured"], v["met"]] for v in results["targets"]]), ""]
    return "\n".join(out)
