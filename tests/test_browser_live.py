"""Live mode in a real browser: headless Chromium whose fake microphone plays examples/medley.flac.

It records ~15 s: the rolling timeline changes while it records and names the instruments of the stretch
being played, and after Stop the page shows the analysis an upload of the same file gets.
"""

import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrusense.audio import resample
from instrusense.settings import REPO_ROOT, load_settings

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream"]
KEYBOARDS = {"Harpsichord", "Electric piano", "Piano", "Organ"}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fake_microphone(tmp_path_factory) -> Path:
    """The medley as the 16-bit WAV Chromium's fake capture device plays (in a loop)."""
    samples, rate = sf.read(str(REPO_ROOT / "examples" / "medley.flac"), dtype="float32")
    path = tmp_path_factory.mktemp("mic") / "medley48k.wav"
    sf.write(str(path), resample(samples, rate, 48000), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def live_browser(fake_microphone):
    """Chromium (Debian's, never a downloaded build) with a fake microphone; skipped where it is absent."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*BROWSER_ARGS, f"--use-file-for-fake-audio-capture={fake_microphone}"])
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

        def analyze_and_keep(path):
            results.append(analyze(path))
            return results[-1]

        return analyze_and_keep, error

    app.make_analyze = recording_make_analyze
    try:
        demo = app.build_app(load_settings({}))
    finally:
        app.make_analyze = make_analyze
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", results, make_analyze
    finally:
        demo.close()


def test_live_mode_rolls_while_recording_and_ends_with_the_upload_analysis(live_browser, served_app,
                                                                           fake_microphone, tmp_path):
    url, results, make_analyze = served_app
    page = live_browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    page.get_by_role("button", name="Record").first.click()
    started, seen, shots = time.monotonic(), [], {}
    now_playing = page.locator("#live-now [data-testid=label-output-value]")  # the top instrument
    while (elapsed := time.monotonic() - started) < 15.0:
        if now_playing.count():
            seen.append((elapsed, now_playing.inner_text().strip()))
        for moment in (3.5, 11.0):
            if moment not in shots and elapsed >= moment:
                shots[moment] = page.locator("#live-timeline").screenshot(path=str(tmp_path / f"live-{moment}.png"))
        page.wait_for_timeout(250)
    page.get_by_role("button", name="Stop").first.click()
    page.get_by_text(re.compile(r"live-.*-segments")).wait_for(timeout=60000)  # the take's exports
    shown = page.locator("body").inner_text()

    assert shots[3.5] != shots[11.0]  # the timeline rolled on
    first = {label for t, label in seen if 1.0 <= t <= 4.0}
    later = {label for t, label in seen if 9.5 <= t <= 13.0}
    assert first & KEYBOARDS, seen  # the medley opens with an electric piano (heard as a keyboard)
    assert "Acoustic guitar" in later, seen  # ... and the steel-string guitar plays from 9 s
    *_, take_record, _ = results[-1]
    assert take_record["file"].startswith("live-") and 14.0 <= take_record["duration"] <= 16.5
    upload_record = make_analyze(load_settings({}))[0](str(fake_microphone))[5]
    assert take_record["labels"][0]["label"] == upload_record["labels"][0]["label"]
    for seg in upload_record["segments"]:  # every upload segment is found in the take, within a hop
        assert any(s["label"] == seg["label"] and abs(s["start"] - seg["start"]) <= 1.5
                   for s in take_record["segments"]), (seg, take_record["segments"], seen)
    assert "Acoustic guitar" in shown and "Saxophone" in shown
    page.close()
