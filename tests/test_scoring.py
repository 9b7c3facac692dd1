"""One inference path: evaluation and training score a clip exactly as `python -m instrusense analyze` scores
a file holding it (finetune.scoring)."""

import numpy as np
import soundfile as sf

from conftest import tone
from finetune.scoring import score_clips
from instrusense.analysis import analyze_file
from instrusense.model import load_tagger, tagger_from
from instrusense.settings import Settings
from instrusense.taxonomy import LABEL_INDEX, LABELS


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    long = np.concatenate([tone(3.0, 16000, freq=220.0)[:, 0], np.zeros(48000, np.float32),
                           0.3 * rng.standard_normal(32000).astype(np.float32)])  # three parts: many windows
    return [tone(4.0, 16000, freq=440.0, level=0.2)[:, 0], long, tone(0.7, 16000, freq=880.0)[:, 0],
            np.zeros(32000, np.float32)]


def test_clip_scores_are_what_the_cli_reports_for_a_file_of_that_clip(tiny_whisper, tmp_path):
    tagger, settings = load_tagger(tiny_whisper), Settings()
    clips = _clips()
    scores = score_clips(tagger, clips, settings)
    assert scores.shape == (len(clips), len(LABELS))
    for i, wave in enumerate(clips):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, wave, 16000, subtype="FLOAT")
        analysis = analyze_file(path, tagger, settings)
        expected = np.zeros(len(LABELS), np.float32)
        for s in analysis.labels:
            expected[LABEL_INDEX[s.label]] = s.confidence
        np.testing.assert_allclose(scores[i], expected, atol=1e-6)
    assert not scores[3].any()  # a silent clip: the analysis skips its windows, as for a silent file


def test_a_model_in_memory_scores_as_the_same_model_loaded_from_disk(tiny_whisper):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(tiny_whisper).float().eval()
    extractor = AutoFeatureExtractor.from_pretrained(tiny_whisper)
    in_memory = tagger_from(model, extractor)
    loaded = load_tagger(tiny_whisper)
    assert in_memory.native_window_seconds == loaded.native_window_seconds
    np.testing.assert_allclose(score_clips(in_memory, _clips()), score_clips(loaded, _clips()), atol=1e-6)
