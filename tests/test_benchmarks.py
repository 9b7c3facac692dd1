"""The benchmark harness' pure helpers (recordings, tables, verdicts). Nothing here asserts a timing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from benchmarks import procs, recordings, report
from benchmarks.timing import AST_RATE, ast_windows, describe_precision, median_runs, parameter_count


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_recordings_have_the_requested_length_and_format(tmp_path, fmt):
    path = recordings.write_recording(tmp_path / f"r.{fmt}", 12.5, fmt)  # > one 10 s block
    info = sf.info(str(path))
    assert info.format == recordings.FORMATS[fmt][0]
    assert (info.samplerate, info.channels) == (44_100, 2)
    assert info.frames / info.samplerate == pytest.approx(12.5, abs=0.05)
    samples, _ = sf.read(str(path), dtype="float32")
    assert len(samples) / 44_100 == pytest.approx(12.5, abs=0.05)
    for second in range(12):  # music everywhere: no window would be skipped as silent
        chunk = samples[second * 44_100:(second + 1) * 44_100]
        assert 20 * np.log10(np.sqrt(np.mean(chunk ** 2))) > -30


def test_synthetic_music_is_stereo_in_range_and_seeded():
    a, b = recordings.synth_music(2.0, seed=3), recordings.synth_music(2.0, seed=3)
    assert a.shape == (88_200, 2) and a.dtype == np.float32
    assert np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, recordings.synth_music(2.0, seed=4))
    assert not np.array_equal(a[:, 0], a[:, 1])


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mp3"):
        recordings.write_recording(tmp_path / "r.xyz", 1.0, "xyz")


def test_batch_set_alternates_formats(tmp_path):
    files = recordings.batch_set(tmp_path, 4, 0.6)
    assert [p.suffix for p in files] == [".mp3", ".wav", ".mp3", ".wav"]
    assert len({p.name for p in files}) == 4


def test_ast_windows_cover_the_recording_in_native_chunks():
    n = round(10.24 * AST_RATE)
    wins = ast_windows(np.ones(n * 2 + 5, np.float32))
    assert wins.shape == (3, n)
    assert wins[2, :5].sum() == 5 and wins[2, 5:].sum() == 0
    assert ast_windows(np.ones(10, np.float32)).shape == (1, n)


def test_median_runs_is_per_key():
    runs = [{"total_s": 3.0, "decode_s": 1.0, "windows": 7}, {"total_s": 1.0, "decode_s": 5.0, "windows": 7},
            {"total_s": 2.0, "decode_s": 2.0, "windows": 7}]
    assert median_runs(runs) == {"total_s": 2.0, "decode_s": 2.0, "windows": 7}


def test_markdown_table_formats_cells_and_aligns_numbers():
    table = report.markdown_table(["name", "seconds", "met"], [["a", 1.23456, True], ["b", None, None]])
    lines = table.splitlines()
    assert lines[0] == "| name | seconds | met |"
    assert lines[1] == "|---|---:|---|"
    assert lines[2] == "| a | 1.23 | yes |"
    assert lines[3] == "| b | – | – |"
    assert report.fmt(1234.5) == "1,234.50" and report.fmt(0.0012) == "0.0012" and report.fmt(7) == "7"


def _fake_results(e2e_180: float, quick: bool = False) -> dict:
    stages = {"total_s": e2e_180, "decode_s": 0.1, "features_s": 0.2, "forward_s": 0.3, "rest_s": 0.01,
              "plot_s": 0.1, "windows": 119, "audio_s": 180.0}
    med = {"ours_app": 1.0, "ours_float32": 1.1, "ast_base": 30.0, "ours_end_to_end": 2.0}
    return {
        "config": {"quick": quick, "runs": 2, "cold_file": "10s.wav"},
        "machine": {"cpu_model": "Test CPU", "cpu_count": 2, "cpu_affinity": 2, "cpu_quota": None,
                    "memory_total_mb": 4096.0, "torch": "2.9.1", "torch_threads": 2, "torch_interop_threads": 2,
                    "transformers": "5", "numpy": "2", "libsndfile": "1.2", "python": "3.11",
                    "load_average_start": [0.1, 0.1, 0.1], "load_average_end": [0.2, 0.1, 0.1]},
        "model": {"id": "m", "type": "whisper", "parameters": 10, "precision": "float32", "window_s": 3.0,
                  "hop_s": 1.5, "batch_size": 16},
        "cold_start": {"cli": {"median_s": 5.0, "model_loaded_s": 4.0, "peak_rss_mb": 800.0, "runs": [{}]},
                       "app": {"median_s": 9.0, "model_loaded_s": 6.0, "serving_s": 8.0, "peak_rss_mb": 900.0,
                               "runs": [{}]}},
        "end_to_end": [{"seconds": 180, "format": fmt, "median": stages, "runs": [stages, stages],
                        "x_faster_than_ast": 12.0} for fmt in ("mp3", "wav")],
        "memory": [{"seconds": 600, "format": "wav", "rss_after_load_mb": 700.0, "analysis_peak_mb": 900.0,
                    "analysis_increment_mb": 200.0, "load_peak_mb": 720.0, "peak_rss_mb": 1000.0}],
        "batch": {"files": 100, "file_seconds": 5.0, "wall_s": 60.0, "startup_s": 5.0, "files_per_minute": 100.0,
                  "files_per_minute_excl_startup": 109.1, "peak_rss_mb": 850.0},
        "comparison": {"file": "60s.wav", "audio_s": 60.0, "median_s": med, "runs": {"ast_base": [30.0, 30.0]},
                       "per_audio_second": {k: v / 60 for k, v in med.items()}, "windows": {"ours": 39, "ast_base": 6},
                       "parameters": {"ours": 10, "ast_base": 86_000_000},
                       "precision": {"ours_app": "float32", "ours_float32": "float32"},
                       "ratio": {"ast_vs_ours_inference": 30.0, "ast_vs_ours_end_to_end": 15.0,
                                 "float32_vs_app": 1.1}},
    }


def test_verdicts_judge_each_target_and_leave_unmeasured_ones_open():
    results = _fake_results(e2e_180=2.0)
    results["end_to_end"][1]["median"] = {**results["end_to_end"][1]["median"], "total_s": 2.5}  # worst format
    met = {v["target"]: (v["measured"], v["met"]) for v in report.verdicts(results)}
    assert met["180 s recording end to end (s)"] == (2.5, True)
    assert met["180 s recording end to end, stretch (s)"] == (2.5, False)
    assert met["600 s recording end to end (s)"] == (None, None)
    assert met["timeline hop at 600 s (s)"] == (None, None)
    results["end_to_end"].append({"seconds": 600, "format": "wav", "runs": [],
                                  "median": {"total_s": 5.0, "windows": 399, "audio_s": 600.0}})
    met = {v["target"]: (v["measured"], v["met"]) for v in report.verdicts(results)}
    assert met["timeline hop at 600 s (s)"] == (1.5, True)
    assert met["600 s recording end to end, full-resolution timeline (s)"] == (5.0, True)
    assert met["less time per audio second than AST-base (×)"] == (15.0, True)
    assert met["peak memory analysing 600 s (MB)"] == (1000.0, True)
    assert met["cold start to first result, app (s)"] == (9.0, False)


def test_report_renders_every_section():
    results = _fake_results(e2e_180=2.0, quick=True)
    results["targets"] = report.verdicts(results)
    text = report.render_markdown(results)
    for heading in ("quick smoke run", "Cold start", "End to end", "Peak resident memory", "CLI batch",
                    "AST-base", "Targets", "Test CPU"):
        assert heading in text
    minimal = {"config": results["config"], "machine": results["machine"], "targets": report.verdicts({})}
    assert "Targets" in report.render_markdown(minimal)


def test_run_measured_reports_exit_output_and_marker(tmp_path):
    code = "import sys; print('out'); print('x instrusense.model: loaded m', file=sys.stderr); sys.exit(3)"
    r = procs.run_measured([sys.executable, "-c", code], procs.child_env(tmp_path), tmp_path / "o.txt",
                           marker=procs.MODEL_LOADED_MARK)
    assert (r.returncode, r.stdout.strip()) == (3, "out")
    assert r.marker_s is not None and r.marker_s <= r.wall_s
    assert r.maxrss_kb > 0 and "loaded m" in r.stderr_tail


def test_the_int8_model_counts_the_same_parameters_and_says_it_is_quantised():
    import torch

    from instrusense.model import quantize_int8

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False))
    assert parameter_count(model) == 8 * 4 + 4 + 4 + 4 + 4 * 2 and describe_precision(model) == "float32"
    quantised = quantize_int8(model)
    assert parameter_count(quantised) == parameter_count(model)  # packed int8 weights are no `parameters()`
    assert describe_precision(quantised) == "float32, 2 linear layers in dynamic int8"


def test_live_benchmark_summaries():
    from benchmarks.live import percentiles, render_markdown

    assert percentiles([]) == {"n": 0, "p50": None, "p95": None, "max": None}
    summary = percentiles([0.1, 0.2, 0.3, 1.0])
    assert summary["n"] == 4 and summary["p50"] == pytest.approx(0.25) and summary["max"] == 1.0
    machine = {"cpu_model": "cpu", "cpu_count": 2, "torch": "2.9", "torch_threads": 2, "code_version": "abc",
               "load_average_start": [1.0]}
    pipe = {"audio_seconds": 60, "hop_lines": 40, "latency": summary, "final_equals_analyze": False}
    table = render_markdown({"machine": machine, "pipe": pipe, "load_average_end": [2.0]})
    assert "| `stream`, paced pipe (60 s, 40 hop lines) | 0.25 |" in table and "final == analyze: NO" in table


def test_levers_interleave_every_contender_and_render_a_table():
    from benchmarks import levers

    order = []
    times = levers.interleaved({name: (lambda n=name: order.append(n)) for name in "abc"}, runs=3)
    assert all(len(ts) == 3 for ts in times.values())
    assert order[3:] == list("abc") + list("bca") + list("cab")  # after one warm-up each, the order rotates
    results = {"config": {"seconds": 60.0, "windows": 39, "hop_s": 1.5, "runs": 3},
               "machine": {"cpu_model": "Test CPU", "torch_threads": 2, "load_average_start": [1.0],
                           "load_average_end": [1.0]},
               "rows": [{"contender": "torch int8, batch 16", "median_s": 0.5, "vs_app": 1.0, "max_diff_vs_float32": 0.1}]}
    text = levers.render(results)
    assert "39 windows (hop 1.5 s)" in text and "| torch int8, batch 16 |" in text
