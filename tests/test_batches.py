"""The training batch stream (finetune.batches): mixing, varispeed and workers keep labels and reproducibility."""

import numpy as np
import pytest

from conftest import tone
from instrusense.taxonomy import LABELS


def _tone_clips():
    from finetune.data.clips import Clips

    labels = ["flute", "cello", "piano", "tuba"]
    freqs = [880.0, 110.0, 440.0, 55.0]
    return Clips(waves=[tone(4.0, 16000, freq=f, level=0.1 * (k + 1))[:, 0] for k, f in enumerate(freqs)],
                 labels=[[lab] for lab in labels], activity=[[[1.0] * 40] for _ in labels],
                 sources=["synthetic"] * 4, kinds=["note"] * 4)


def _stack(waves, sampling_rate, return_tensors):
    import torch

    return {"input_values": torch.from_numpy(np.stack(waves))}


def _raw_batch(clips, **options):
    """Batch 0 of 32 unaugmented 3 s tone examples: (waves as numpy, targets)."""
    from finetune.batches import TrainBatches

    inputs, targets = TrainBatches(clips, _stack, 48000, 32, seed=3, augment=False, **options).batch(0)
    return inputs["input_values"].numpy(), targets


def _peak_hz(waves: np.ndarray) -> np.ndarray:
    """The strongest frequency of each 16 kHz wave."""
    return np.fft.rfftfreq(waves.shape[1], 1 / 16000)[np.argmax(np.abs(np.fft.rfft(waves, axis=1)), axis=1)]


def test_mixing_sums_other_clips_and_their_labels():
    clips = _tone_clips()
    _, p_tg = _raw_batch(clips)
    waves, m_tg = _raw_batch(clips, mix_fraction=1.0)
    assert (p_tg.sum(1) == 1).all()
    assert (m_tg.sum(1) >= 1).all() and m_tg.sum(1).max() <= 3 and (m_tg.sum(1) >= 2).float().mean() > 0.5
    assert np.isfinite(waves).all() and waves.shape == (32, 48000)
    # the mixture keeps the level of the example it was built on, so loudness stays a training variable
    clip_peaks = np.array([np.abs(w).max() for w in clips.waves])
    peaks = np.abs(waves).max(1)
    assert (np.abs(peaks[:, None] / clip_peaks[None] - 1).min(1) < 0.05).all()
    # a mixed example really contains more than one tone: its spectrum has a peak at every labelled pitch
    freqs = np.fft.rfftfreq(48000, 1 / 16000)
    for wave, target in zip(waves, m_tg.numpy()):
        spectrum = np.abs(np.fft.rfft(wave))
        for label, f in [("flute", 880.0), ("cello", 110.0), ("piano", 440.0), ("tuba", 55.0)]:
            if target[LABELS.index(label)]:
                assert spectrum[np.argmin(abs(freqs - f))] > 10 * np.median(spectrum)


def test_pitch_shift_plays_clips_faster_or_slower_and_keeps_the_labels():
    waves, s_tg = _raw_batch(_tone_clips(), pitch_shift=2.0)
    assert waves.shape == (32, 48000) and np.isfinite(waves).all()
    assert (s_tg.sum(1) == 1).all()
    f0 = np.array([{"flute": 880.0, "cello": 110.0, "piano": 440.0, "tuba": 55.0}[LABELS[int(t.argmax())]]
                   for t in s_tg.numpy()])
    semitones = 12 * np.log2(_peak_hz(waves) / f0)
    assert np.abs(semitones).max() <= 2.05  # within the range asked for, and the tone still matches its label
    assert np.abs(semitones).max() > 0.5 and semitones.min() < 0 < semitones.max()  # really shifted, both ways


def test_pitch_shift_can_leave_drum_clips_alone():
    clips = _tone_clips()
    clips.labels[3] = ["drums"]  # the 55 Hz clip stands in for a kit
    waves, targets = _raw_batch(clips, pitch_shift=2.0, pitch_shift_drums=False)
    peaks = _peak_hz(waves)
    drums = targets[:, LABELS.index("drums")].numpy() == 1
    assert drums.any() and (~drums).any()
    assert np.allclose(peaks[drums], 55.0, atol=0.5)
    assert not np.allclose(peaks[~drums], peaks[~drums].round(-1), atol=0.5)  # the pitched clips still move


def test_workers_prepare_the_same_batch_stream_as_the_training_process(tiny_whisper):
    import torch
    from transformers import WhisperFeatureExtractor

    from finetune.batches import TrainBatches, batch_stream

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    batches = TrainBatches(_tone_clips(), extractor, 48000, 4, seed=3, augment=True, mix_fraction=0.5,
                           pitch_shift=2.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # workers compute with one thread each; float sums depend on the thread count
    try:
        inline = list(batch_stream(batches, 5, 11, workers=0))
    finally:
        torch.set_num_threads(threads)
    ahead = list(batch_stream(batches, 5, 11, workers=2))
    assert len(inline) == len(ahead) == 6
    for (a_in, a_tg), (b_in, b_tg) in zip(inline, ahead):  # same steps, same order, same augmentation draws
        assert torch.equal(a_tg, b_tg)
        assert torch.equal(a_in["input_features"], b_in["input_features"])
    assert not torch.equal(inline[0][0]["input_features"], inline[1][0]["input_features"])


def test_short_examples_go_down_to_a_tenth_of_a_second():
    waves, _ = _raw_batch(_tone_clips(), short_fraction=1.0)
    sounding = (np.abs(waves) > 0).sum(1) / 16000
    assert sounding.min() < 0.5 and sounding.min() >= 0.1 - 1e-3 and sounding.max() < 3.0
