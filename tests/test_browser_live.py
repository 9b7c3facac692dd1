"""Live mode in a real browser: headless Chromium whose fake microphone plays examples/medley.flac.

It records ~15 s: the rolling timeline changes while it records and names the instruments of the stretch
being played; every chunk the page sends reaches the take; after Stop the page shows the take's analysis,
equal to what uploading that recording gets.
"""

import time
from pathlib import Path

import pytest
import soundfile as sf

from instrusense.audio import resample
from instrusense.settings import REPO_ROOT, load_settings
from instrusense.streaming import StreamAnalyser
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port

FAKE_MICROPHONE_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake_microphone(tmp_path_factory) -> Path:
    """The medley as the 16-bit WAV Chromium's fake capture device plays (in a loop)."""
    samples, rate = sf.read(str(REPO_ROOT / "examples" / "medley.flac"), dtype="float32")
    path = tmp_path_factory.mktemp("mic") / "medley48k.wav"
    sf.write(str(path), resample(samples, rate, 48000), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def live_browser(playwright, fake_microphone):
    """Chromium (Debian's, never a downloaded build) whose fake microphone plays the medley."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=[*CHROMIUM_ARGS, *FAKE_MICROPHONE_ARGS,
                                               f"--use-file-for-fake-audio-capture={fake_microphone}"])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def served_app():
    """The app on the shipped model, with its upload handler's results recorded."""
    import app

    results = []
    make_analyze = app.make_analyze

    def recording_make_analyze(settings):
        analyze, error = make_analyze(settings)

        def analyze_and_keep(path, *args):
            results.append(analyze(path, *args))
            return results[-1]

        return analyze_and_keep, error

    import app_live

    takes, kept = [], []
    write, keep = app_live.sf.write, StreamAnalyser.keep

    def write_and_keep(path, data, rate, **kwargs):  # the take, kept to upload it afterwards
        write(path, data, rate, **kwargs)
        takes.append(app_live.take_folder() / f"kept-{Path(str(path)).name}")
        write(str(takes[-1]), data, rate, **kwargs)

    def keep_and_count(analyser, chunk):  # the chunks that reached the take
        kept.append(len(chunk))
        keep(analyser, chunk)

    app.make_analyze = recording_make_analyze
    app_live.sf.write = write_and_keep
    StreamAnalyser.keep = keep_and_count
    settings = load_settings({})
    try:
        demo = app.build_app(settings)
    finally:
        app.make_analyze = make_analyze
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.PAGE_LOOK,
                **app.launch_options(demo, settings))  # as `python app.py`: the guards' middleware too
    try:
        yield f"http://127.0.0.1:{port}/", results, takes, kept
    finally:
        demo.close()
        app_live.sf.write, StreamAnalyser.keep = write, keep
        for take in takes:
            take.unlink(missing_ok=True)


def _wait_for_result(page, results: list, count: int) -> tuple:
    for _ in range(240):
        if len(results) >= count:
            return results[count - 1]
        page.wait_for_timeout(250)
    raise AssertionError("no analysis came back")


def test_live_mode_rolls_while_recording_and_ends_with_the_upload_analysis(live_browser, served_app):
    url, results, takes, kept = served_app
    page = live_browser.new_page(viewport={"width": 1280, "height": 1400})
    sent = []  # the page's chunk uploads (not the stream's close)
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" and "/stream/" in r.url
            and not r.url.endswith("/close") else None)
    page.goto(url)
    page.get_by_role("tab", name="Listen live").click()
    page.locator("#live").get_by_role("button", name="Record").first.click()
    started, seen, shots, legends = time.monotonic(), [], {}, []
    now_playing = page.locator("#live-now dl")  # the listed instruments, strongest first (headed only from 50 %)
    while (elapsed := time.monotonic() - started) < 15.0:
        if now_playing.count():
            seen.append((elapsed, now_playing.first.inner_text().split("\n")[0].strip()))
        legend = page.eval_on_selector_all(  # (name, colour) of each legend entry
            "#live-timeline .role-legend", "ls => ls.flatMap(l => { const names = [...l.querySelectorAll("
            "'.role-legend-label text')].map(t => t.textContent); const marks = [...l.querySelectorAll("
            "'.role-legend-symbol path')].map(p => p.getAttribute('stroke')); return names.map((n, i) => [n, marks[i]]); })")
        if legend:
            drawn = page.eval_on_selector_all(  # the colours of the lines drawn (a line has more than one point)
                "#live-timeline .mark-line path", "ps => ps.filter(p => (p.getAttribute('d') || '').includes('L'))"
                ".map(p => p.getAttribute('stroke'))")
            legends.append((elapsed, legend, drawn))
        for moment in (3.5, 11.0):
            if moment not in shots and elapsed >= moment:
                shots[moment] = page.locator("#live-timeline").screenshot()
        if "docs" not in shots and elapsed >= 14.0:  # the README's picture of the live view
            shots["docs"] = page.locator("#live").screenshot(path=str(REPO_ROOT / "docs" / "live.png"))
        page.wait_for_timeout(250)
    page.locator("#live").get_by_role("button", name="Stop").first.click()
    *_, take_record, _ = _wait_for_result(page, results, 1)
    # the same recording uploaded through the page: the same analysis
    page.get_by_role("tab", name="Record or upload").click()
    page.locator("#recording input[type=file]").first.set_input_files(str(takes[-1]))
    page.get_by_role("button", name="Analyse").click()
    *_, upload_record, _ = _wait_for_result(page, results, 2)
    page.wait_for_function("document.body.innerText.includes('Acoustic guitar')", timeout=30000)

    assert shots[3.5] != shots[11.0]  # the timeline rolled on
    # the plot draws instruments that first play after its first update, each in its own colour (it once kept the
    # first update's five forever)
    named = [(t, legend, drawn) for t, legend, drawn in legends  # before its first data the chart's legend
             if all(name != "NaN" for name, _ in legend)]  # reads "NaN" for a moment (Vega's empty domain)
    first_legend = {name for name, _ in named[0][1]}
    last_legend = named[-1][1]
    newcomers = {name for _, legend, _ in named for name, _ in legend} - first_legend
    assert newcomers, legends
    assert len({colour for _, colour in last_legend}) == len(last_legend)  # lines told apart
    for name in newcomers:  # drawn (as a line of two or more points) in its legend colour at some update
        if sum(any(n == name for n, _ in legend) for _, legend, _ in named) < 2:
            continue  # named at one look only: the lines are read just after the legend, maybe before the chart
            # drew the newcomer's (one run in six failed on a newcomer; its looks were cut from the message)
        assert any(colour.lower() in [c.lower() for c in drawn] for _, legend, drawn in named
                   for n, colour in legend if n == name), (name, [(round(t, 1), l, d) for t, l, d in legends])
    # Chromium's fake microphone loops the medley from wherever it stands when recording starts (not always its
    # start): over 15 s every part of the 14 s medley plays once, in some order
    heard_live = {label for _, label in seen}
    assert len(heard_live) >= 3, seen  # the headline follows the parts as they enter
    assert "Acoustic guitar" in heard_live, seen  # ... among them the steel-string guitar
    assert take_record["file"].startswith("live-") and 11.5 <= take_record["duration"] <= 16.5, (
        take_record["duration"], len(kept), len(sent))
    assert {**take_record, "file": ""} == {**upload_record, "file": ""}
    assert "acoustic_guitar" in {x["label"] for x in take_record["labels"]
                                 if x["confidence"] >= load_settings({}).threshold}
    # Gradio's stream keeps only the latest chunk sent while the handler runs: a handler that waited for the model
    # lost 13 of 148 chunks here; the app's returns at once, and `space_guards.StreamChunksInTurn` holds a chunk
    # until the one before was taken (without it 0-2 of ~149 lost alone, 2-6 after tests/test_browser.py)
    assert len(sent) > 100 and len(kept) >= 0.97 * len(sent), (len(kept), len(sent))
    page.close()
