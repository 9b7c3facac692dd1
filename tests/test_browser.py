"""The page in a real browser (headless Chromium, 1280 and 390 px, light and dark), with the shipped model.

Upload or click an example, analyse, read the ranking and the segment table, check the plot's text size and
theme, every text's contrast, fetch both downloads, and save a screenshot of each to docs/ (the README shows
`docs/screenshot-1280-light.png`); upload every format the page promises; check what the first screen shows.
Skipped where Chromium or Playwright is missing (see the `browser` fixture).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from browser_checks import BROKEN_WORDS_JS, CONTRAST_JS
from conftest import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MEDLEY = REPO / "examples" / "medley.flac"
DOCS = REPO / "docs"
LOOKS = [(1280, "light", "upload"), (1280, "dark", "upload"), (390, "light", "upload"), (390, "dark", "example")]


@pytest.fixture(scope="module")
def page_url():
    import app
    from instrusense.settings import load_settings

    demo = app.build_app(load_settings({}))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.PAGE_LOOK)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def _luminance(css_rgb: str) -> float:
    r, g, b = (float(v) for v in css_rgb[css_rgb.index("(") + 1:css_rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.parametrize("width,scheme,how", LOOKS)
def test_page_analyses_and_reads_well(browser, page_url, width, scheme, how):
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    try:
        page.goto(page_url, wait_until="load")  # never "networkidle": the live microphone's recorder keeps loading
        page.get_by_role("button", name="Analyse").wait_for()
        assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark")
        assert not page.locator("#download-csv").is_visible()  # nothing to download yet: no download boxes
        assert page.evaluate(CONTRAST_JS) == []  # every text at 4.5:1 or more, before ...
        if how == "example":  # one click on an example analyses it
            page.get_by_role("button", name="medley.flac").click()
        else:
            page.locator("input[type=file]").first.set_input_files(str(MEDLEY))
            page.locator("audio, wave, .waveform-container, [data-testid=waveform-Recording]").first.wait_for(
                state="attached", timeout=30_000)
            page.get_by_role("button", name="Analyse").click()
        page.locator("#ranking dl").first.wait_for(timeout=90_000)
        page.locator("#label-plot .main-svg").first.wait_for(timeout=30_000)
        page.locator("#download-csv").wait_for(state="visible", timeout=30_000)
        page.wait_for_function("document.querySelector('#segments')?.innerText.includes('%')", timeout=30_000)

        ranking = page.locator("#ranking dl").all_inner_texts()  # gr.Label: one row (name, confidence) per instrument
        assert len(ranking) >= 5 and "%" in ranking[0] and "100%" not in ranking[0]
        assert page.locator("#ranking [data-testid=label-output-value]").inner_text() == ranking[0].split("\n")[0]
        assert "whole recording" in page.locator("#ranking-note").inner_text()  # what the ranking's numbers are
        assert "segment mean" in page.locator("#segments").inner_text()  # ... and the table's
        rows = page.eval_on_selector_all(  # the grid's cells, row by row
            "#segments [role=gridcell]", "cells => Object.values(cells.reduce((rows, c) => "
            "((rows[c.dataset.row] ??= []).push(c.innerText.trim()), rows), {}))")
        assert rows and all(len(r) == 4 for r in rows), rows
        for name, start, end, conf in rows:  # times to 0.01 s, percentages with one decimal
            assert len(start.split(".")[1]) == 2 and len(end.split(".")[1]) == 2 and conf.endswith(" %")
        table_box = page.locator("#segments table").first.bounding_box()
        assert table_box["x"] + table_box["width"] <= width + 1  # the confidence column is not cut off
        assert page.evaluate(BROKEN_WORDS_JS, "#segments th") == []  # headers wrap between words ("confiden/ce")

        names = page.locator("#label-plot .annotation-text")
        assert names.count() >= 5
        for k in range(names.count()):
            assert names.nth(k).bounding_box()["height"] >= 10  # legible on a phone
        fill = names.first.evaluate("e => getComputedStyle(e).fill")
        assert (_luminance(fill) > 0.6) == (scheme == "dark")  # the plot follows the theme
        words = page.locator("#timeline-text").inner_text()
        assert "In words:" in words and "s;" in words

        for button in ("#download-csv", "#download-audacity"):
            with page.expect_download() as download:
                page.locator(button).click()
            text = Path(download.value.path()).read_text()
            assert text.count("\n") >= len(rows)

        page.screenshot(path=str(DOCS / f"screenshot-{width}-{scheme}.png"), full_page=True)
    finally:
        context.close()


def _speech(folder: Path) -> Path:
    path = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Good morning. This is a short recording of someone speaking, "
                    "with no music at all. The meeting starts at ten."], check=True)
    return path


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_a_new_upload_replaces_the_results_and_speech_says_no_instrument(browser, page_url, tmp_path):
    """After an analysis, clearing the recording and uploading another removes the old results before Analyse is
    pressed; speech then gets "No instrument detected" in the ranking itself, and no empty lanes."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(page_url, wait_until="load")
        page.locator("input[type=file]").first.set_input_files(str(MEDLEY))
        page.get_by_role("button", name="Analyse").click()
        page.locator("#ranking dl").first.wait_for(timeout=90_000)
        page.wait_for_function("document.querySelector('#segments')?.innerText.includes('%')", timeout=30_000)
        page.locator("#download-csv").wait_for(state="visible", timeout=30_000)

        page.locator("#recording").get_by_role("button", name="Clear").click()
        page.locator("#ranking dl").first.wait_for(state="detached", timeout=10_000)  # clearing alone empties them
        page.locator("input[type=file]").first.set_input_files(str(_speech(tmp_path)))
        page.locator("audio, wave, .waveform-container, [data-testid=waveform-Recording]").first.wait_for(
            state="attached", timeout=30_000)
        assert page.locator("#ranking dl").count() == 0  # before Analyse: nothing left of the medley
        assert "%" not in page.locator("#segments").inner_text()
        assert "In words" not in page.locator("#timeline-text").inner_text()
        assert not page.locator("#download-csv").is_visible()

        page.get_by_role("button", name="Analyse").click()
        heading = page.locator("#ranking [data-testid=label-output-value]")
        heading.filter(has_text="No instrument detected").wait_for(timeout=90_000)
        assert page.locator("#ranking dl").count() >= 1  # the strongest scores are still listed under it
        page.locator("#label-plot .main-svg").first.wait_for(timeout=30_000)
        names = page.eval_on_selector_all("#label-plot .annotation-text", "els => els.map(e => e.textContent)")
        assert len(names) == 1 and "No instrument detected" in names[0]  # one note, no empty lanes
        assert not page.locator("#download-csv").is_visible()
    finally:
        page.close()


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_the_first_screen_shows_one_microphone_the_examples_and_on_a_phone_the_ranking(browser, page_url, width, height):
    """The live view sits in its own tab (one microphone widget in sight); the examples are above the fold on a
    laptop; on a phone the ranking starts within the first screen."""
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(page_url, wait_until="load")
        page.get_by_role("button", name="Analyse").wait_for()
        example = page.get_by_role("button", name="medley.flac")
        example.wait_for(state="visible")
        page.evaluate("document.fonts.ready")
        audio_widgets = [w.inner_text() for w in page.locator("[data-testid=block-label]").all()
                         if w.is_visible() and w.inner_text() in ("Recording", "Microphone (live)")]
        assert audio_widgets == ["Recording"]  # one microphone in sight, not the live one above it
        box = example.bounding_box()
        if width >= 1024:
            assert box["y"] + box["height"] <= height, box  # examples visible without scrolling
        else:
            assert page.locator("#ranking").bounding_box()["y"] < height, page.locator("#ranking").bounding_box()
        page.get_by_role("tab", name="Listen live").click()  # the live view is one tap away
        page.locator("#live-now").wait_for(state="visible")
        assert page.get_by_text("Microphone (live)").first.is_visible() and not page.locator("#recording").is_visible()
    finally:
        page.close()


FORMATS = {  # what README and the page promise, as ffmpeg writes them from the medley
    "wav": [], "flac": [], "mp3": [], "m4a": [], "ogg": ["-c:a", "libvorbis"], "opus": [], "webm": [],
}


@pytest.fixture(scope="module")
def medley_formats(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (scripts/install.sh)")
    folder = tmp_path_factory.mktemp("formats")
    out = {}
    for ext, args in FORMATS.items():
        out[ext] = folder / f"medley.{ext}"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(MEDLEY), *args, str(out[ext])], check=True)
    return out


def test_every_format_uploads_in_the_browser(browser, page_url, medley_formats):
    """WebM (which Chromium types video/webm), Ogg, Opus, M4A, MP3, FLAC and WAV upload through the file input and are
    analysed; the ranking names the medley's instruments each time."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(page_url, wait_until="load")
        for ext, path in medley_formats.items():
            page.locator("input[type=file]").first.set_input_files(str(path))
            page.locator("audio, wave, .waveform-container, [data-testid=waveform-Recording]").first.wait_for(
                state="attached", timeout=30_000)
            assert "Invalid file type" not in page.locator("body").inner_text(), ext
            page.get_by_role("button", name="Analyse").click()
            page.locator("#ranking dl").first.wait_for(timeout=90_000)
            names = page.locator("#ranking dl").all_inner_texts()
            assert any("Saxophone" in n for n in names[:3]) and any("Acoustic guitar" in n for n in names[:3]), (ext, names)
            assert "Not analysed" not in page.locator("#refusal").inner_text(), ext
            page.locator("#recording").get_by_role("button", name="Clear").click()
            page.locator("#ranking dl").first.wait_for(state="detached", timeout=10_000)
    finally:
        page.close()


def test_a_dropped_webm_file_is_taken(browser, page_url, medley_formats):
    """Drag and drop takes the same path: a WebM dropped on the recording widget (typed video/webm, as browsers do)
    is loaded and analysed, not silently dropped."""
    import base64

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(page_url, wait_until="load")
        page.get_by_role("button", name="Analyse").wait_for()
        data = base64.b64encode(medley_formats["webm"].read_bytes()).decode()
        page.evaluate("""(data) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const files = new DataTransfer();
            files.items.add(new File([bytes], 'medley.webm', {type: 'video/webm'}));
            const zone = document.querySelector('#recording [aria-label="Drop an audio file here to upload"]');
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true}));
        }""", data)
        page.locator("audio, wave, .waveform-container, [data-testid=waveform-Recording] canvas").first.wait_for(
            state="attached", timeout=30_000)
        page.get_by_role("button", name="Analyse").click()
        page.locator("#ranking dl").first.wait_for(timeout=90_000)
        assert any("Saxophone" in n for n in page.locator("#ranking dl").all_inner_texts()[:3])
    finally:
        page.close()
