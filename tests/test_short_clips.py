"""finetune.evaluation.short_clips: the loudest cut of a clip, and the table over real clips cut short."""

import numpy as np

from finetune.evaluation.short_clips import loudest, main


def test_loudest_cut_is_where_the_energy_is_and_a_short_wave_stays_whole():
    wave = np.zeros(16000, np.float32)
    wave[9000:9800] = 0.5  # a 50 ms burst
    cut = loudest(wave, 0.1)
    assert len(cut) == 1600 and np.abs(cut).sum() == np.abs(wave).sum()  # the whole burst is inside
    assert loudest(wave[:800], 0.1).shape == (800,)
    assert len(loudest(wave, 0.25)) == 4000


def test_command_prints_one_row_per_model_and_split(eval_dataset, tiny_whisper, capsys):
    assert main(["--models", tiny_whisper, "--dataset", eval_dataset, "--splits", "real", "--seconds", "0.1", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "0.1 s: top-1 / heard | 0.5 s: top-1 / heard | whole: top-1 / heard" in out
    assert out.count(f"| {tiny_whisper} | real |") == 1
    assert main(["--models", tiny_whisper, "--dataset", eval_dataset, "--splits", "nonexistent"]) == 2
