"""The Gradio app served on a free localhost port, called through gradio_client like any user."""


import numpy as np
import pytest
from gradio_client import Client, handle_file

from conftest import free_port, tone
from instrusense.settings import load_settings
from instrusense.taxonomy import LABELS, display_name


@pytest.fixture(scope="module")
def client(tiny_whisper):
    import app

    settings = load_settings({}, model=tiny_whisper, threshold=0.3, max_duration_seconds=6.0)
    demo = app.build_app(settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size="5mb")
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def _check_result(result, duration: float):
    ranking, plot, table, csv_file, audacity_file, record, notes = result
    assert list(record) == ["file", "duration", "labels", "segments", "timeline", "error"]
    assert record["error"] is None and record["duration"] == pytest.approx(duration)
    assert sorted(i["label"] for i in record["labels"]) == sorted(LABELS)
    assert record["segments"]
    # gr.Label's data: the strongest instrument heard as the heading, display names -> confidence over the clip
    assert isinstance(ranking, dict) and set(ranking) == {"label", "confidences"}
    scores = {c["label"]: c["confidence"] for c in ranking["confidences"]}
    assert len(scores) >= 5 and all(isinstance(c, float) and 0 < c <= 1 for c in scores.values())
    by_name = {display_name(i["label"]): i["confidence"] for i in record["labels"]}
    assert all(scores[name] == by_name[name] for name in scores)  # the JSON's numbers
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert ranking["label"] == next(iter(scores)) and scores[ranking["label"]] >= 0.3
    assert table["data"] and len(table["data"]) == len(record["segments"]) and len(table["data"][0]) == 4
    assert all(cell.count(".") == 1 and len(cell.split(".")[1]) == 2 for row in table["data"] for cell in row[1:3])
    assert open(csv_file).readline().startswith("label,instrument,start,end")
    assert open(audacity_file).readline().count("\t") == 2
    assert plot is not None


def test_upload(client, write_audio):
    path = write_audio("upload.flac", seconds=5.0, rate=44100, fmt="FLAC")
    _check_result(client.predict(handle_file(path), api_name="/analyze"), 5.0)


def test_microphone_style_recording(client, write_audio):
    # What a browser microphone sends: 48 kHz stereo 16-bit WAV.
    path = write_audio("audio.wav", seconds=4.0, rate=48000, channels=2, subtype="PCM_16")
    _check_result(client.predict(handle_file(path), api_name="/analyze"), 4.0)


def test_long_recording_is_cut_with_a_warning(client, write_audio):
    *_, record, notes = client.predict(handle_file(write_audio("long.wav", seconds=9.0)), api_name="/analyze")
    assert record["duration"] == pytest.approx(9.0)
    assert max(s["end"] for s in record["segments"]) <= 6.0
    assert "first 0:06 of 0:09" in notes


def test_silence_says_no_instrument(client, write_audio):
    path = write_audio("silence.wav", data=np.zeros((32000, 1), np.float32))
    ranking, _, _, csv_file, audacity_file, record, notes = client.predict(handle_file(path), api_name="/analyze")
    assert "No instrument detected" in notes and record["segments"] == []
    assert ranking["label"] == "No instrument detected"  # the ranking itself says it
    assert csv_file is None and audacity_file is None  # nothing to download: no download buttons


@pytest.mark.parametrize("name,payload,message", [
    ("empty.wav", b"", "empty"),
    ("notes.mp3", b"definitely not audio " * 100, "Could not decode"),
])
def test_bad_files_get_a_readable_error(client, tmp_path, name, payload, message):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(path)), api_name="/analyze")


def test_a_short_recording_is_analysed_through_the_api(client, write_audio):
    *_, record, notes = client.predict(handle_file(write_audio("one-shot.wav", seconds=0.15)), api_name="/analyze")
    assert record["error"] is None and record["duration"] == pytest.approx(0.15, abs=1e-3)
    assert len(record["labels"]) == len(LABELS) and record["timeline"]["starts"] == [0.0]


def test_too_short_and_nan_inputs(client, write_audio):
    with pytest.raises(Exception, match="too short"):
        client.predict(handle_file(write_audio("short.wav", seconds=0.05)), api_name="/analyze")
    data = tone(3.0, 16000)
    data[::5] = np.nan
    *_, record, notes = client.predict(handle_file(write_audio("nan.wav", data=data, subtype="FLOAT")),
                                       api_name="/analyze")
    assert record["error"] is None and "NaN" in notes


def test_no_recording_yet(client):
    with pytest.raises(Exception, match="Record or upload"):
        client.predict(None, api_name="/analyze")


def test_view_api_names_every_output(client):
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/analyze"]
    names = [r["label"] for r in endpoint["returns"]]
    assert names == ["Instruments heard", "Where each instrument plays", "Segments (every one, in time order)",
                     "Download segments (CSV)", "Download Audacity labels", "JSON record", "Notes"]
    assert endpoint["returns"][0]["component"] == "Label"
