"""End-to-end training smoke test: tiny base, tiny data, a few steps, a loadable model out."""

import json
import re

import datasets
import numpy as np
import pytest

from conftest import tone
from finetune.schema import features
from finetune.train import DataArguments, ModelArguments, TrainArguments, family_logits, family_targets, train
from instrusense.taxonomy import FAMILIES, LABEL_INDEX, LABELS


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-data")
    rows = {"audio": [], "labels": [], "source": [], "kind": [], "activity": []}
    for i, (label, freq) in enumerate([("flute", 880.0), ("cello", 110.0), ("piano", 440.0), ("tuba", 55.0)] * 3):
        rows["audio"].append({"array": tone(4.0, 16000, freq=freq)[:, 0], "sampling_rate": 16000})
        rows["labels"].append([label])
        rows["source"].append("synthetic")
        rows["kind"].append("note")
        rows["activity"].append([[1.0] * 40])
    ds = datasets.Dataset.from_dict(rows, features=features())
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(4))}).save_to_disk(str(out))
    return str(out)


def test_training_writes_a_pipeline_loadable_model(tiny_whisper, tiny_dataset, tmp_path):
    out = tmp_path / "model"
    result = train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                   DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                   TrainArguments(output_dir=str(out), run_dir=str(tmp_path / "run"), max_steps=4, batch_size=4,
                                  eval_every=2))
    assert [h["step"] for h in result["history"]] == [2, 4]
    assert np.isfinite(result["history"][-1]["loss"])
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(LABELS))] == list(LABELS)
    assert config["problem_type"] == "multi_label_classification"
    assert (out / "preprocessor_config.json").is_file() and (out / "model.safetensors").is_file()

    from transformers import pipeline
    classify = pipeline("audio-classification", model=str(out))
    top = classify(tone(3.0, 16000)[:, 0], top_k=3)
    assert len(top) == 3 and {t["label"] for t in top} <= set(LABELS)

    # resuming a finished run does no further steps
    again = train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                  DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                  TrainArguments(output_dir=str(out), run_dir=str(tmp_path / "run"), max_steps=4, batch_size=4,
                                 eval_every=2))
    assert len(again["history"]) == 2


def test_a_resumed_run_reports_wall_time_for_the_whole_run(tiny_whisper, tiny_dataset, tmp_path):
    import torch

    def run(max_steps):
        return train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                     DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                     TrainArguments(output_dir=str(tmp_path / "model"), run_dir=str(tmp_path / "run"),
                                    max_steps=max_steps, batch_size=4, eval_every=2))

    run(2)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["history"][-1]["elapsed_s"] = 10_000.0  # as if the first part had taken hours
    torch.save(state, ckpt)
    history = run(4)["history"]
    assert [h["step"] for h in history] == [2, 4]
    assert history[-1]["elapsed_s"] > 10_000.0
    card = (tmp_path / "model" / "README.md").read_text()
    assert int(re.search(r"Wall time: (\d+) min", card).group(1)) >= 167


def test_init_from_starts_from_a_saved_models_weights_and_refuses_another_architecture(tiny_whisper, tiny_dataset,
                                                                                       tmp_path):
    from safetensors.torch import load_file

    def run(name, projector_size=8, **kw):
        train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=projector_size, **kw),
              DataArguments(dataset=tiny_dataset, eval_splits="validation"),
              TrainArguments(output_dir=str(tmp_path / name), run_dir=str(tmp_path / f"run-{name}"), max_steps=2,
                             batch_size=4, eval_every=2, **({"head_lr": 0.0, "encoder_lr": 0.0} if kw else {})))
        return load_file(str(tmp_path / name / "model.safetensors"))

    first = run("first")
    # at zero learning rates the continued model is the one it started from, head included;
    # a fresh head would have been re-initialised from data
    again = run("again", init_from=str(tmp_path / "first"))
    assert set(again) == set(first)
    assert all(np.allclose(again[k].float().numpy(), first[k].float().numpy(), atol=1e-3) for k in first)
    record = json.loads((tmp_path / "again" / "training_run.json").read_text())
    assert record["parent"]["step"] == 2 and record["parent"]["elapsed_s"] > 0  # the card lists both stages
    assert "Trained in 2 stages" in (tmp_path / "again" / "README.md").read_text()
    with pytest.raises(ValueError, match="does not match"):
        run("other", projector_size=4, init_from=str(tmp_path / "first"))
    # a restart from a weight average records the averaged runs as its parent
    from finetune.average import average

    average([tmp_path / "first", tmp_path / "again"], tmp_path / "soup")
    run("from-soup", init_from=str(tmp_path / "soup"))
    record = json.loads((tmp_path / "from-soup" / "training_run.json").read_text())
    assert [a["run"]["step"] for a in record["parent"]["averaged"]] == [2, 2]
    assert "the uniform average of the weights of 2 models" in (tmp_path / "from-soup" / "README.md").read_text()
    # trained over the average it started from (as over models/instrusense): only the new record remains
    run("soup", init_from=str(tmp_path / "soup"))
    assert not (tmp_path / "soup" / "averaged_from.json").exists()
    assert "averaged" in json.loads((tmp_path / "soup" / "training_run.json").read_text())["parent"]


def test_base_decay_pulls_the_encoder_back_to_its_pretrained_weights(tiny_whisper, tiny_dataset, tmp_path):
    import torch
    from safetensors.torch import load_file

    from finetune.modeling import build_classifier

    def run(name, base_decay=0.0, init_from=None):
        train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8, init_from=init_from),
              DataArguments(dataset=tiny_dataset, eval_splits="validation"),
              TrainArguments(output_dir=str(tmp_path / name), run_dir=str(tmp_path / f"run-{name}"), max_steps=2,
                             batch_size=4, eval_every=2, encoder_lr=1e-2, save_dtype="float32", base_decay=base_decay))
        return load_file(str(tmp_path / name / "model.safetensors"))

    built = build_classifier(tiny_whisper, window_seconds=3.0, projector_size=8)[0]
    pretrained = built.state_dict()
    trainable = [k for k, p in built.named_parameters() if k.startswith("encoder.") and p.requires_grad]
    first = run("first")
    assert any(not torch.allclose(first[k], pretrained[k]) for k in trainable)  # fine-tuning moved the encoder
    # lr × strength ≥ 1: every step ends on the pretrained weights, even when starting from a fine-tuned model
    pulled = run("pulled", base_decay=1e9, init_from=str(tmp_path / "first"))
    assert all(torch.allclose(pulled[k], pretrained[k], atol=1e-6) for k in trainable)
    assert not torch.allclose(pulled["classifier.weight"], first["classifier.weight"])  # the head still trains


def test_weight_average_is_what_gets_evaluated_saved_and_resumed(tiny_whisper, tiny_dataset, tmp_path):
    import torch
    from safetensors.torch import load_file

    args = (ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
            DataArguments(dataset=tiny_dataset, eval_splits="validation"))
    run = tmp_path / "run"
    train(*args, TrainArguments(output_dir=str(tmp_path / "model"), run_dir=str(run), max_steps=4, batch_size=4,
                                eval_every=4, ema_decay=0.5, save_dtype="float32", encoder_lr=1e-2))
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    saved = load_file(tmp_path / "model" / "model.safetensors")
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    raw = state["model"]
    moved = [k for k in saved if k in raw and saved[k].is_floating_point() and not torch.equal(saved[k], raw[k])]
    assert moved, "the saved weights should be the average, not the last step's"
    assert all(torch.allclose(saved[k], averaged[k]) for k in saved if k in averaged)


def _tone_clips():
    from finetune.clips import Clips

    labels = ["flute", "cello", "piano", "tuba"]
    freqs = [880.0, 110.0, 440.0, 55.0]
    return Clips(waves=[tone(4.0, 16000, freq=f, level=0.1 * (k + 1))[:, 0] for k, f in enumerate(freqs)],
                 labels=[[lab] for lab in labels], activity=[[[1.0] * 40] for _ in labels],
                 sources=["synthetic"] * 4, kinds=["note"] * 4)


def _stack(waves, sampling_rate, return_tensors):
    import torch

    return {"input_values": torch.from_numpy(np.stack(waves))}


def _raw_batch(clips, **options):
    """Batch 0 of 64 unaugmented 3 s tone examples: (waves as numpy, targets)."""
    from finetune.train import TrainBatches

    inputs, targets = TrainBatches(clips, _stack, 48000, 64, do_augment=False, seed=3, **options).batch(0)
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
    assert np.isfinite(waves).all() and waves.shape == (64, 48000)
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


def test_spec_augment_masks_features_but_keeps_the_audio_stream(tiny_whisper):
    import torch
    from transformers import WhisperFeatureExtractor

    from finetune.train import TrainBatches

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    clips = _tone_clips()
    plain = TrainBatches(clips, extractor, 48000, 8, do_augment=True, seed=5, mix_fraction=0.5)
    masked = TrainBatches(clips, extractor, 48000, 8, do_augment=True, seed=5, mix_fraction=0.5, spec_augment=True)
    (p_in, p_tg), (m_in, m_tg) = plain.batch(7), masked.batch(7)
    assert torch.equal(p_tg, m_tg)
    a, b = p_in["input_features"], m_in["input_features"]
    changed = a != b
    assert changed.any() and changed.float().mean() < 0.5
    assert torch.equal(a[~changed], b[~changed])  # the same audio underneath: only masked cells differ


def test_filter_augment_colours_whole_spectra_but_keeps_the_audio_stream(tiny_whisper):
    import torch
    from transformers import WhisperFeatureExtractor

    from finetune.train import TrainBatches

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    clips = _tone_clips()
    plain = TrainBatches(clips, extractor, 48000, 8, do_augment=True, seed=5, mix_fraction=0.5)
    filtered = TrainBatches(clips, extractor, 48000, 8, do_augment=True, seed=5, mix_fraction=0.5,
                            filter_augment=1.0)
    (p_in, p_tg), (f_in, f_tg) = plain.batch(7), filtered.batch(7)
    assert torch.equal(p_tg, f_tg)
    offset_db = (f_in["input_features"] - p_in["input_features"]) * 40  # Whisper: log10 power / 4
    # the same audio underneath: each example moved by one curve over its mel bins, at most 6 dB
    assert torch.allclose(offset_db, offset_db[:, :, :1].expand_as(offset_db), atol=1e-3)
    assert 0.5 < offset_db.abs().max() <= 6.0 + 1e-3


def test_filter_augment_speaks_each_extractors_units():
    import math

    import torch
    from transformers import ASTFeatureExtractor, Wav2Vec2FeatureExtractor

    from finetune.train import _filter_spectrograms

    waves = [np.random.default_rng(i).standard_normal(16000).astype(np.float32) * 0.1 for i in range(3)]
    ast = ASTFeatureExtractor(max_length=100)
    inputs = dict(ast(waves, sampling_rate=16000, return_tensors="pt"))  # (batch, frames, mels)
    out = _filter_spectrograms(inputs, ast, torch.Generator().manual_seed(0), 1.0)
    offset_db = (out["input_values"] - inputs["input_values"]) * 2 * ast.std / (math.log(10) / 10)
    assert torch.allclose(offset_db, offset_db[:, :1, :].expand_as(offset_db), atol=1e-3)  # one curve per clip
    assert 0.5 < offset_db.abs().max() <= 6.0 + 1e-3
    raw = Wav2Vec2FeatureExtractor()
    with pytest.raises(ValueError, match="spectrogram"):
        _filter_spectrograms(dict(raw(waves, sampling_rate=16000, return_tensors="pt")), raw,
                             torch.Generator().manual_seed(0), 1.0)


def test_pitch_shift_plays_clips_faster_or_slower_and_keeps_the_labels():
    waves, s_tg = _raw_batch(_tone_clips(), pitch_shift=2.0)
    assert waves.shape == (64, 48000) and np.isfinite(waves).all()
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


def test_layer_wise_decay_gives_lower_blocks_lower_rates(tiny_whisper):
    from finetune.modeling import build_classifier
    from finetune.train import _param_groups

    model, _ = build_classifier(tiny_whisper, window_seconds=3.0)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = _param_groups(model, head_lr=1e-3, encoder_lr=1e-4, weight_decay=0.0, encoder_lr_decay=0.5)
    rate = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert rate["classifier.weight"] == pytest.approx(1e-3)
    assert rate["encoder.layers.0.fc1.weight"] == pytest.approx(1e-4)  # the top (only) block
    assert rate["encoder.layer_norm.weight"] == pytest.approx(1e-4)
    assert rate["encoder.conv1.weight"] == pytest.approx(5e-5)  # the front-end, one block lower
    assert len(rate) == sum(p.requires_grad for p in model.parameters())
    flat = _param_groups(model, head_lr=1e-3, encoder_lr=1e-4, weight_decay=0.0)
    assert [g["lr"] for g in flat] == [1e-3, 1e-4]


def test_workers_prepare_the_same_batch_stream_as_the_training_process(tiny_whisper):
    import torch
    from transformers import WhisperFeatureExtractor

    from finetune.train import TrainBatches, batch_stream

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    batches = TrainBatches(_tone_clips(), extractor, 48000, 4, do_augment=True, seed=3, mix_fraction=0.5,
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


def test_family_scores_follow_the_taxonomy():
    import torch

    logits = torch.full((2, len(LABELS)), -20.0)
    logits[0, LABEL_INDEX["synthesizer"]] = 3.0
    logits[1, LABEL_INDEX["viola"]] = 1.0
    logits[1, LABEL_INDEX["cello"]] = 1.0  # two labels of one family: a higher family score than either
    fams = list(FAMILIES)
    scores = family_logits(logits)
    assert scores.shape == (2, len(FAMILIES))
    assert scores[0].argmax().item() == fams.index("electronic")
    assert scores[1, fams.index("bowed_string")].item() == pytest.approx(1.0 + np.log(2), abs=1e-5)
    targets = torch.zeros((1, len(LABELS)))
    targets[0, LABEL_INDEX["oboe"]] = targets[0, LABEL_INDEX["drums"]] = 1.0
    assert [fams[i] for i in np.flatnonzero(family_targets(targets)[0].numpy())] == ["woodwind", "percussion"]


def test_family_loss_adds_to_the_label_loss(tiny_whisper, tiny_dataset, tmp_path):
    def first_loss(weight: float) -> float:
        run = tmp_path / f"run-{weight}"
        result = train(ModelArguments(base=tiny_whisper, window_seconds=3.0, projector_size=8),
                       DataArguments(dataset=tiny_dataset, eval_splits="validation"),
                       TrainArguments(output_dir=str(run / "model"), run_dir=str(run), max_steps=1, batch_size=4,
                                      eval_every=1, family_loss=weight))
        return result["history"][0]["loss"]

    plain, with_families = first_loss(0.0), first_loss(1.0)
    assert np.isfinite(with_families) and with_families > plain + 0.01  # same weights and batch, one more term


def test_amp_goes_only_to_examples_of_electric_instruments(tiny_whisper):
    import torch
    from transformers import WhisperFeatureExtractor

    from finetune.train import TrainBatches

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)

    def features(clips, amp):
        return TrainBatches(clips, extractor, 48000, 8, do_augment=True, seed=2, amp=amp).batch(0)[0]["input_features"]

    acoustic = _tone_clips()
    assert torch.equal(features(acoustic, 0.0), features(acoustic, 1.0))  # no draw made, nothing changed
    electric = _tone_clips()
    electric.labels = [["bass_guitar"], ["electric_piano"], ["electric_guitar"], ["organ"]]
    assert not torch.equal(features(electric, 0.0), features(electric, 1.0))
