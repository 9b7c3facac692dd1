"""finetune.evaluation.real_mixtures: mixtures of held-out real clips, their levels, the figures, the command."""

import json

import numpy as np
import pytest
import soundfile as sf

from finetune.data.clips import Clips, load_clips
from finetune.data.schema import FPS, SAMPLE_RATE
from finetune.evaluation.real_mixtures import (GROUPS, active_rms, alone_scores, example_figures, example_mix,
                                               group_figures, main, make_mixtures, mixture_figures, parts_as_clips,
                                               select_parts)
from instrusense.taxonomy import LABEL_INDEX, LABELS
from conftest import label_scores

SECONDS = 2.0
HOP = SAMPLE_RATE // FPS


def _wave(freq: float, level: float, sounding: float = SECONDS, seed: int = 0, tail: float = 0.05,
          seconds: float = SECONDS) -> np.ndarray:
    """A harmonic tone of `level` peak for the first `sounding` seconds of a `seconds` clip, then a room's noise
    `tail` times as loud (above the level gate, but not the instrument sounding)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    x = x + np.random.default_rng(seed).normal(0, 0.01, t.size)
    x = x / np.abs(x).max() * level
    n = int(sounding * SAMPLE_RATE)
    x[n:] = np.random.default_rng(seed + 1).normal(0, tail * level, t.size - n)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """A tiny DatasetDict whose real_heldout split has five labels (piano and organ from one library, so they
    may never meet in a mixture), two sources for cello, parts that sound only for a while, longer flute clips
    (cut to their partner's length), and a two-label clip (never a part)."""
    import datasets

    from finetune.data.schema import features

    out = tmp_path_factory.mktemp("heldout-data")
    rows = {"audio": [], "labels": [], "source": [], "kind": [], "activity": [], "origin": []}

    def add(labels, wave, source, sounding=SECONDS):
        rows["audio"].append({"array": wave, "sampling_rate": SAMPLE_RATE})
        rows["labels"].append(labels)
        rows["source"].append(source)
        rows["kind"].append("phrase")
        rows["activity"].append([[1.0 if i < sounding * FPS else 0.0 for i in range(len(wave) // HOP)]
                                 for _ in labels])
        rows["origin"].append("real")

    for k, (label, freq, source) in enumerate([("piano", 440.0, "keys_lib"), ("organ", 330.0, "keys_lib"),
                                               ("cello", 110.0, "cello_a"), ("cello", 123.0, "cello_b"),
                                               ("flute", 880.0, "flute_lib"), ("tuba", 55.0, "tuba_lib")]):
        seconds = 3.0 if label == "flute" else SECONDS
        for j, (level, sounding) in enumerate([(0.8, seconds), (0.1, 1.0)]):  # loud and whole; quiet, half silent
            add([label], _wave(freq, level, sounding, seed=10 * k + j, seconds=seconds), source, sounding)
    add(["flute", "cello"], _wave(880.0, 0.3) + _wave(110.0, 0.3), "mixed_lib")
    split = datasets.Dataset.from_dict(rows, features=features())
    datasets.DatasetDict({"real_heldout": split}).save_to_disk(str(out))
    return str(out)


def test_mixtures_are_deterministic_with_different_labels_and_sources(heldout):
    clips = load_clips(heldout, "real_heldout")
    first, again = make_mixtures(clips, duos=5, trios=3, seed=0), make_mixtures(clips, duos=5, trios=3, seed=0)
    assert len(first) == len(again) > 0
    for a, b in zip(first, again):
        assert a.labels == b.labels and a.clips == b.clips and a.offsets_db == b.offsets_db
        assert np.array_equal(a.wave, b.wave)
    other = make_mixtures(clips, duos=5, trios=3, seed=1)
    assert [m.clips for m in other] != [m.clips for m in first]
    groups = [m.group for m in first]
    assert set(groups) == set(GROUPS) and groups.count("duos 0 dB") == groups.count("duos ±12 dB")
    for m in first:
        assert len(set(m.labels)) == len(m.labels) and len(set(m.sources)) == len(m.sources)
        assert all(len(clips.labels[i]) == 1 and clips.labels[i][0] == lab for i, lab in zip(m.clips, m.labels))
        assert {"piano", "organ"} - set(m.labels)  # one library: never together
        assert np.allclose(np.sum(m.parts, axis=0), m.wave, atol=1e-6) and np.abs(m.wave).max() <= 1.0


def test_the_levels_are_what_they_claim(heldout):
    clips = load_clips(heldout, "real_heldout")
    mixtures = make_mixtures(clips, duos=6, trios=4, seed=0)
    for m in mixtures:
        # measured here, independently: the RMS over the frames the dataset marks as sounding
        sounding = [np.repeat(np.asarray(a) > 0, HOP)[:len(p)] for p, a in zip(m.parts, m.activity)]
        rms_db = [20 * np.log10(np.sqrt(np.mean(p[s].astype(np.float64) ** 2))) for p, s in zip(m.parts, sounding)]
        for r, off in zip(rms_db, m.offsets_db):
            assert r - max(rms_db) == pytest.approx(off, abs=0.01)
        assert max(m.offsets_db) == 0.0
        spread = max(m.offsets_db) - min(m.offsets_db)
        names = {2: {0: "duos 0 dB", 6: "duos ±6 dB", 12: "duos ±12 dB"}, 3: {0: "trios equal", 12: "trios −12 dB"}}
        assert m.group == names[len(m.parts)][spread]
        assert (m.quieter is None) == (spread == 0)
        assert len(m.wave) == min(len(clips.waves[i]) for i in m.clips)
    # a duo's two clips are cut the same way at every level: only the gains differ
    duos = [m for m in mixtures if len(m.parts) == 2]
    assert any(len(clips.waves[i]) > len(m.wave) for m in duos for i in m.clips)  # some part was cut
    for a, b in zip(duos[::3], duos[1::3]):
        assert a.clips == b.clips
        for pa, pb, aa in zip(a.parts, b.parts, a.activity):
            assert np.allclose(pa / active_rms(pa, aa), pb / active_rms(pb, aa), atol=1e-5)
    # active, not whole-clip RMS: a part that sounds for half its length is levelled on that half
    half = _wave(440.0, 0.5, 1.0)
    assert active_rms(half, [1.0] * 10 + [0.0] * 10) == pytest.approx(np.sqrt(np.mean(half[:SAMPLE_RATE] ** 2)))
    silent_tail = _wave(440.0, 0.5, 1.0, tail=0.0)  # without activity frames: the level gate finds the half
    assert active_rms(silent_tail) == pytest.approx(np.sqrt(np.mean(silent_tail[:SAMPLE_RATE] ** 2)), rel=1e-3)


def test_example_mix_is_summed_at_equal_gain():
    a, b = np.full(100, 0.2, np.float32), np.full(40, 0.3, np.float32)
    cropped, padded = example_mix([a, b], "cropped"), example_mix([a, b], "padded")
    assert len(cropped) == 40 and np.allclose(cropped, 0.5)
    assert len(padded) == 100 and np.allclose(padded[:40], 0.5) and np.allclose(padded[40:], 0.2)
    loud = example_mix([np.full(10, 0.9), np.full(10, 0.9)])
    assert np.allclose(loud, 0.99)  # scaled only because it would clip
    with pytest.raises(ValueError):
        example_mix([a, b], "looped")


def test_figures_on_hand_made_scores():
    labels = [["piano", "cello"], ["piano", "flute"], ["cello", "flute"], ["piano", "cello"]]
    offsets = [[0, 0], [0, -6], [-12, 0], [0, -12]]  # equal; flute, cello, cello quieter
    scores = label_scores([
        {"piano": 0.9, "cello": 0.6},  # both heard
        {"piano": 0.8, "flute": 0.4, "tuba": 0.7},  # the quieter flute missed, tuba heard though absent
        {"cello": 0.5, "flute": 0.95},  # both heard: 0.5 counts (at or above the threshold)
        {"piano": 0.3, "cello": 0.2, "drums": 0.6, "tuba": 0.55},  # nothing right, two extras
    ])
    f = mixture_figures(scores, labels, offsets, 0.5)
    assert f["mixtures"] == 4 and f["unequal"] == 3
    assert f["all_heard"] == pytest.approx(2 / 4)
    assert f["quieter_heard"] == pytest.approx(1 / 3)  # flute missed, cello heard, cello missed
    assert f["louder_heard"] == pytest.approx(2 / 3)  # piano heard, flute heard, piano missed
    assert f["extra"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert f["per_label_heard"] == pytest.approx({"piano": 2 / 3, "cello": 2 / 3, "flute": 1 / 2})
    # mAP over the labels present: every label's positives score above its negatives (0) -> AP 1 each
    assert f["mAP"] == pytest.approx(1.0)
    worse = scores.copy()
    worse[1, LABEL_INDEX["cello"]] = 0.7  # a mixture without cello ranked above every cello
    assert mixture_figures(worse, labels, offsets, 0.5)["mAP"] < 1.0
    one = mixture_figures(scores[:1], labels[:1], offsets[:1], 0.5)
    assert np.isnan(one["quieter_heard"]) and np.isnan(one["louder_heard"]) and one["all_heard"] == 1.0
    trio = mixture_figures(label_scores([{"piano": 0.9, "cello": 0.2, "flute": 0.8}]), [["piano", "cello", "flute"]],
                           [[0, 0, -12]], 0.5)
    assert trio["quieter_heard"] == 1.0 and trio["louder_heard"] == 0.0  # the quiet flute heard, a loud cello not
    ex = example_figures(label_scores([{"saxophone": 0.144, "acoustic_guitar": 0.999}])[0],
                         ["saxophone", "acoustic_guitar"], 0.5)
    assert ex == {"confidence": pytest.approx({"saxophone": 0.144, "acoustic_guitar": 0.999}), "named_all": False}


def test_alone_and_together_separate_recognition_from_masking(heldout):
    labels = [["piano", "cello"], ["piano", "flute"], ["cello", "flute"], ["piano", "cello"]]
    offsets = [[0, 0]] * 4
    together = label_scores([{"piano": 0.9, "cello": 0.6}, {"piano": 0.8, "flute": 0.2}, {"cello": 0.1, "flute": 0.9},
                             {"piano": 0.7, "cello": 0.7}])
    alone = [[True, True], [True, True], [False, True], [True, False]]  # the last: heard together, not alone
    f = mixture_figures(together, labels, offsets, 0.5, alone)
    assert f["parts_heard_alone"] == pytest.approx(6 / 8) and f["all_heard_alone"] == pytest.approx(2 / 4)
    assert f["kept"] == pytest.approx(1 / 2)  # of the two heard alone, the flute of the second is lost in the sum
    assert f["all_heard"] == pytest.approx(2 / 4)
    assert "kept" not in mixture_figures(together, labels, offsets, 0.5)
    # the parts as clips, in mixture order, each its own label; alone_scores reads their rows back per mixture
    mixtures = make_mixtures(load_clips(heldout, "real_heldout"), duos=2, trios=1, seed=0)
    parts = parts_as_clips(mixtures)
    assert len(parts) == sum(len(m.parts) for m in mixtures) == 2 * 2 * 3 + 3 * 2
    assert parts.labels[:2] == [[mixtures[0].labels[0]], [mixtures[0].labels[1]]]
    assert np.array_equal(parts.waves[1], mixtures[0].parts[1])
    scores = np.zeros((len(parts), len(LABELS)), np.float32)
    scores[1, LABEL_INDEX[mixtures[0].labels[1]]] = 0.9  # only the second part of the first mixture heard
    assert alone_scores(scores, mixtures)[:2] == [[0.0, pytest.approx(0.9)], [0.0, 0.0]]


def test_group_figures_keep_the_groups_apart(heldout):
    clips = load_clips(heldout, "real_heldout")
    mixtures = make_mixtures(clips, duos=3, trios=2, seed=0)
    y = np.zeros((len(mixtures), len(LABELS)), np.float32)
    for i, m in enumerate(mixtures):  # a perfect scorer for the equal mixtures, deaf to quiet parts
        for lab, off in zip(m.labels, m.offsets_db):
            y[i, LABEL_INDEX[lab]] = 0.9 if off == 0 else 0.1
    rows = group_figures(y, mixtures, 0.5)
    assert list(rows) == list(GROUPS)
    assert rows["duos 0 dB"]["all_heard"] == 1.0 and rows["trios equal"]["all_heard"] == 1.0
    assert rows["duos ±6 dB"]["all_heard"] == 0.0 and rows["duos ±12 dB"]["quieter_heard"] == 0.0
    assert rows["duos ±12 dB"]["louder_heard"] == 1.0 and rows["trios −12 dB"]["louder_heard"] == 1.0
    assert rows["duos ±6 dB"]["mixtures"] == 3 and rows["trios −12 dB"]["mixtures"] == 2


def test_command_runs_end_to_end_and_writes_its_table(heldout, tiny_whisper, tmp_path):
    sax, guitar = tmp_path / "saxophone.flac", tmp_path / "acoustic_guitar.flac"
    sf.write(str(sax), _wave(440.0, 0.7), SAMPLE_RATE)
    sf.write(str(guitar), _wave(196.0, 0.7)[: int(1.2 * SAMPLE_RATE)], SAMPLE_RATE)
    out = tmp_path / "out"
    assert main(["--dataset", heldout, "--model", f"tiny={tiny_whisper}", "--model", f"gone={tmp_path / 'nope'}",
                 "--duos", "3", "--trios", "2", "--examples", str(sax), str(guitar), "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert md.startswith("## Real mixtures\n\n`python -m finetune.evaluation.real_mixtures --dataset")
    assert "Machine:" in md and "| tiny | duos 0 dB | 3 |" in md and "| tiny | trios −12 dB | 2 |" in md
    assert "Not evaluated: gone" in md and "### Issue 38's checks" in md and "| tiny | cropped |" in md
    assert "### Alone and together" in md
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["mixtures"] == {"duos 0 dB": 3, "duos ±6 dB": 3, "duos ±12 dB": 3, "trios equal": 2,
                                           "trios −12 dB": 2}
    tiny = results["models"]["tiny"]
    assert set(tiny["groups"]) == set(GROUPS) and len(tiny["mixture_scores"]) == len(results["mixtures"]) == 13
    assert [list(s["alone"]) for s in tiny["mixture_scores"]] == [m["labels"] for m in results["mixtures"]]
    assert 0.0 <= tiny["groups"]["duos 0 dB"]["parts_heard_alone"] <= 1.0
    assert set(tiny["examples"]["cropped"]["confidence"]) == {"saxophone", "acoustic_guitar"}
    assert "gone" in results["skipped"]
    assert results["paired"] == {}  # one model scored: nothing to set against it
    # the same model twice (float and int8): each group's difference against the first, with its error
    assert main(["--dataset", heldout, "--model", f"tiny={tiny_whisper}", "--model", f"tiny8={tiny_whisper}:int8",
                 "--duos", "3", "--trios", "2", "--examples", str(sax), str(guitar), "--out", str(out)]) == 0
    paired = json.loads((out / "results.json").read_text())["paired"]
    assert set(paired) == {"tiny8"} and set(paired["tiny8"]) == set(GROUPS)
    assert paired["tiny8"]["duos 0 dB"]["mixtures"] == 3
    assert "### Against tiny: all heard" in (out / "results.md").read_text()


def test_paired_difference_is_the_mean_change_with_a_bootstrap_error():
    from finetune.evaluation.real_mixtures import paired_difference

    same = np.array([True, False] * 20)
    assert paired_difference(same, same) == (0.0, 0.0)
    better = same.copy()
    better[1:11:2] = True  # five more of forty
    d, se = paired_difference(same, better)
    assert d == pytest.approx(5 / 40) and 0.03 < se < 0.08  # binomial-like: sqrt(p(1-p)/n) = 0.052
    assert paired_difference(same, better) == (d, se)  # seeded


def test_parts_can_pair_by_label_for_a_split_from_one_source(heldout):
    clips = load_clips(heldout, "real_heldout")
    one_source = Clips(waves=clips.waves, labels=clips.labels, activity=clips.activity,
                       sources=["one_soundfont"] * len(clips), kinds=clips.kinds, origins=clips.origins)
    assert make_mixtures(one_source, duos=5, trios=3, seed=0) == []  # no two parts from different sources
    by_label = select_parts(one_source, pair_by="label")
    mixtures = make_mixtures(by_label, duos=10, trios=3, seed=0)  # every pair of the five labels
    assert mixtures and all(len(set(m.labels)) == len(m.labels) for m in mixtures)
    assert {"piano", "organ"} in [set(m.labels) for m in mixtures]  # one source in the split, yet paired

    only = select_parts(clips, labels=["cello", "flute"])
    assert {lab for labs in only.labels for lab in labs} == {"cello", "flute"}  # the two-label clip is kept
    assert {lab for m in make_mixtures(only, duos=4, trios=0, seed=0) for lab in m.labels} == {"cello", "flute"}
    with pytest.raises(ValueError):
        select_parts(clips, pair_by="library")
    for bad in (["--pair_by", "library"], ["--labels", "kazoo"]):  # refused by the parser, before any data is read
        with pytest.raises(SystemExit):
            main(["--dataset", "/nonexistent", *bad])
