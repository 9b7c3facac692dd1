"""Fresh-process probe: load the model, analyse one file end to end, report time and memory as JSON.

``python -m benchmarks.probe --model M --launched T FILE`` (T = the parent's ``time.time()`` just before
starting this process), one JSON object on stdout. Run by `benchmarks.run`, one process per recording,
so every peak belongs to that recording alone.
"""

from __future__ import annotations

import time

_T0 = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def _status_kb(key: str) -> int | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in kB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Restart the kernel's peak-RSS mark (VmHWM) so that the analysis' own peak can be read later."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe")
    parser.add_argument("file")
    parser.add_argument("--model", required=True)
    parser.add_argument("--launched", type=float, default=None, help="parent's time.time() at launch")
    args = parser.parse_args(argv)
    launched = args.launched if args.launched is not None else _T0

    from benchmarks.timing import render_outputs
    from instrusense.analysis import analyze_file
    from instrusense.model import tagger_for
    from instrusense.settings import load_settings

    imported = time.time()
    settings = load_settings(model=args.model)
    tagger = tagger_for(settings)
    loaded = time.time()
    rss_loaded, maxrss_loaded = _status_kb("VmRSS"), _maxrss_kb()
    peak_reset = _reset_peak()

    analysis = analyze_file(args.file, tagger, settings)
    render_outputs(analysis, settings)
    done = time.time()
    analysis_peak = _status_kb("VmHWM") if peak_reset else None
    maxrss_end = _maxrss_kb()

    json.dump({
        "file": args.file,
        "analysed_seconds": analysis.analysed_seconds,
        "imports_s": imported - launched,
        "model_loaded_s": loaded - launched,
        "first_result_s": done - launched,
        "analysis_s": done - loaded,
        "rss_after_load_kb": rss_loaded,
        "maxrss_after_load_kb": maxrss_loaded,
        "analysis_peak_kb": analysis_peak,
        "maxrss_kb": maxrss_end,
        # The process' peak up to the result (the reset above hides the loading peak from ru_maxrss).
        "peak_kb": max(maxrss_loaded, maxrss_end, analysis_peak or 0),
    }, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
