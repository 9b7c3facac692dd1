"""The model card (README.md beside the weights): what the model is, how it was made, how well it does.

The evaluation table is filled in between markers by `python -m finetune.evaluate --card ...`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from finetune.augment import AMPLIFIED_NAMES
from finetune.records import last_trained, read_record
from instrusense.taxonomy import FAMILIES

CARD_START, CARD_END = "<!-- eval:start -->", "<!-- eval:end -->"


def _command(argv: list[str]) -> str:
    return "python -m finetune.train " + shlex.join(argv)


def _earlier_stages(run: dict) -> list[dict]:
    """The runs this one continued from (`--init_from`), oldest first; a weight average
    (`finetune.average`, ``{"averaged": [...]}``) is one stage that ends the walk."""
    stages, parent = [], run.get("parent")
    while parent:
        stages.insert(0, parent)
        parent = None if "averaged" in parent else parent.get("parent")
    return stages


def _run_key(run: dict) -> str:
    """One training run's identity: records copy a shared stage into every lineage that contains it."""
    return json.dumps([run.get("argv"), run["train"].get("output_dir")])


def _trained_runs(record: dict) -> list[dict]:
    """Every training run behind a record (its own, its stages', every averaged model's), each once."""
    found: dict[str, dict] = {}

    def walk(r: dict | None) -> None:
        if not r:
            return
        if "averaged" in r:
            for a in r["averaged"]:
                walk(a.get("run"))
            return
        walk(r.get("parent"))
        found.setdefault(_run_key(r), r)

    walk(record)
    return list(found.values())


def _stage_text(s: dict) -> str:
    if "averaged" in s:
        parts = []
        for a in s["averaged"]:
            run = a.get("run")
            about = _stage_text(run) if run else "no training record"
            if run and (n := len(_earlier_stages(run))):
                about += f", after {n} earlier stage{'s' if n > 1 else ''}"
            parts.append(f"`{a['path']}` ({about})")
        return f"the uniform average of the weights of {len(parts)} models (`finetune.average`): {', '.join(parts)}"
    data = f" on `{s['data']['dataset']}`" if s.get("data", {}).get("dataset") else ""
    return (f"{s['train']['max_steps']} steps (seed {s['train']['seed']}, head lr {s['train']['head_lr']:g}, "
            f"encoder lr {s['train']['encoder_lr']:g}; its step {s.get('step')} kept){data}")


def _stage_commands(s: dict, written_to: str | None = None) -> list[str]:
    """The commands that made a stage: a run's own; for an average, every averaged run's stages and then
    the average (shared earlier stages once). An average's output directory is the one it recorded, else
    ``written_to`` (where the stage after it found it), else ``DIR``."""
    if "averaged" not in s:
        return [_command(s["argv"])] if s.get("argv") else []
    out = []
    for a in s["averaged"]:
        if a.get("run"):
            out += _chain_commands(a["run"])
    out.append(f"python -m finetune.average --out {shlex.quote(s.get('out') or written_to or 'DIR')} "
               + " ".join(shlex.quote(a["path"]) for a in s["averaged"]))
    return list(dict.fromkeys(out))


def _chain_commands(run: dict, own: bool = True) -> list[str]:
    """A run's earlier stages' commands (and its own unless ``own`` is false); a stage's output is where
    the next one's ``--init_from`` read it."""
    stages = _earlier_stages(run)
    out = []
    for stage, after in zip(stages, [*stages[1:], run]):
        out += _stage_commands(stage, after["model"].get("init_from"))
    return out + (_stage_commands(run) if own else [])


def _stages_text(stages: list[dict]) -> str:
    if not stages:
        return ""
    done = "; ".join(_stage_text(s) for s in stages)
    return (f"\n\nTrained in {len(stages) + 1} stages. Each later stage starts from the weights the stage before"
            " saved (`--init_from`)\ninstead of a fresh head, with a new warm-up and cosine schedule (a warm"
            f" restart). Earlier stages: {done}.\nThe recipe above is the last stage's. In the commands, `--init_from`"
            " names where the model of the stage before was\nwhen the stage ran (`models/instrusense` while it was"
            " the shipped one).")


def _average_text(average: dict) -> str:
    return (f"\n\nThe shipped weights are {_stage_text(average)}. The recipe, stages and training curve above"
            " are those of the\nlast of them; the evaluation below is the average's. Paths name where each model"
            " was when its command ran\n(`models/instrusense`: the model shipped at the time).")


def render_card(run: dict, best_step: int | None, history: list[dict], command: str) -> str:
    """``run``: a training run's record, or a weight average's (``{"averaged": [...]}``), whose recipe and
    curve are those of its last averaged model (``history``, ``best_step`` and ``command`` are that run's)."""
    average = run if "averaged" in run else None
    if average:
        run = last_trained(average)
        if run is None:
            raise ValueError("none of the averaged models has a training record")
    m, d, t = run["model"], run["data"], run["train"]
    stages = _earlier_stages(run)
    if average:
        commands = _stage_commands(average)
    else:
        commands = [*_chain_commands(run, own=False), command]
    command = "\n".join(commands)
    wall = history[-1]["elapsed_s"] if history else float("nan")
    others = [r for r in _trained_runs(average or run) if _run_key(r) != _run_key(run)]
    earlier = [r["elapsed_s"] for r in others if "elapsed_s" in r]
    init = "the first stage initialises the projector" if stages else "the projector is initialised"
    span = "for this stage" if stages or average else "for the whole run"
    what = "all the averaged models' stages" if average else "the earlier stages"
    total = f" ({(wall + sum(earlier)) / 60:.0f} min with {what})" if others and len(earlier) == len(others) else ""
    kept = "the one kept for the average" if average else "the one shipped"
    lead = (f"The shipped weights are the uniform average of {len(average['averaged'])} fine-tuned models (named at the"
            " end of this section);\nthe data, recipe and training curve below are the last one's.\n\n" if average else "")
    families = "\n".join(f"| {fam} | {', '.join(labels)} |" for fam, labels in FAMILIES.items())
    ema = (f" Evaluated and shipped: an exponential moving average of the weights (decay {t['ema_decay']:g})."
           if t.get("ema_decay") else "")
    mixing = (f"\n{d['mix_fraction']:.0%} of the examples get crops of 1–2 other training clips mixed in, each"
              " 0–10 dB down,\nlabelled with the union of their instruments (polyphony beyond the rendered"
              " mixtures)." if d.get("mix_fraction") else "")
    specaug = ("\nSpecAugment: in every example's log-mel spectrogram two frequency bands (up to 12 bins) and two"
               " time spans\n(up to 10 %) are set to the example's mean." if d.get("spec_augment") else "")
    shift = d.get("pitch_shift", 0.0)
    which = "every example" if d.get("pitch_shift_drums", True) else "every example without drums"
    varispeed = (f"\nVarispeed: {which} is played up to {shift:g} semitones faster or slower (pitch and"
                 " formants together,\nas a slightly smaller or bigger instrument)." if shift else "")
    amp = (f"\nAmplifier: {d['amp']:.0%} of the examples holding only electric instruments ({AMPLIFIED_NAMES})\n"
           "first go through a random tone stack, soft-clipping preamp and speaker cabinet." if d.get("amp") else "")
    filt = (f"\nFilterAugment: {d['filter_augment']:.0%} of the log-mel spectrograms get a random filter over the"
            " whole spectrum\n(3–6 bands of up to ±6 dB, flat per band or interpolated between band edges)."
            if d.get("filter_augment") else "")
    fam = t.get("family_loss", 0.0)
    family_bce = (f" plus {fam:g}× a BCE over the {len(FAMILIES)} families (a family's logit: logsumexp of its"
                  " labels')" if fam else "")
    curve_note = "; the loss includes the family term" if fam else ""
    decay = t.get("encoder_lr_decay", 1.0)
    llrd = (f" Layer-wise decay {decay:g}: each encoder block learns at {decay:g}× the rate of the block above it,"
            " and the\nconvolutional front-end one factor below the first block." if decay != 1.0 else "")
    pull = t.get("base_decay", 0.0)
    anchored = (f" Each step also moves every encoder weight lr×{pull:g} of the way back to its pretrained"
                " value\n(L2-SP in AdamW's decoupled form), so the encoder stays near what pretraining learned."
                if pull else "")
    curve = "\n".join(
        f"| {h['step']} | {h['loss']:.4f} | {h.get('validation', {}).get('top1', float('nan')):.3f} | "
        f"{h.get('validation', {}).get('mAP', float('nan')):.3f} | {h.get('real', {}).get('top1', float('nan')):.3f} | "
        f"{h.get('real', {}).get('mAP', float('nan')):.3f} |" for h in history)
    return f"""---
license: mit
library_name: transformers
pipeline_tag: audio-classification
base_model: openai/whisper-base
tags: [audio-classification, musical-instruments, instrusense]
---

# InstruSense instrument tagger

Multi-label classifier over the 28 instruments of the InstruSense taxonomy, fine-tuned from OpenAI
Whisper-base's encoder (MIT licence; imported offline from the CTranslate2 copy on PyPI by
`finetune/import_whisper.py`). It scores {m['window_seconds']:g} s windows; the InstruSense app slides it over
a recording for the timeline.

```python
from transformers import pipeline
tagger = pipeline("audio-classification", model="models/instrusense")
tagger("clip.wav", top_k=3)     # sigmoid confidences (multi-label)
```

or `python -m instrusense analyze clip.wav` for a whole recording with segments (on CPUs the app and
the CLI run the linear layers in dynamic int8 by default, about twice as fast: the int8 rows below).

| family | labels (`id2label`) |
|---|---|
{families}

## Model

`WhisperForAudioClassification`: the first {m['encoder_layers'] or 'all'} encoder blocks of Whisper-base (deeper
blocks specialise in speech and transfer worst to instruments; dropping them also makes inference
cheaper), the positional table cut to {m['window_seconds']:g} s, a learned weighted sum of the kept hidden states,
a {m['projector_size']}-wide projector, mean pooling over time and a sigmoid per label
(`problem_type = multi_label_classification`). Weights are stored in {t['save_dtype']} safetensors.

## Training

{lead}Data: `{d['dataset']}` (see its dataset card): held and isolated notes, phrases, chords, drum grooves,
drum one-shots and 2–4 instrument mixtures rendered from FluidR3 GM, MuseScore General, TimGM6mb,
freepats and the two multi-sampled acoustic kits of AVL Drumkits; the csound GM bank is held out for
validation; the real-recording split is never used for training. Every example is a
random {m['window_seconds']:g} s crop with on-the-fly recording effects (`finetune/augment.py`: synthetic-room
reverb, EQ, phone/laptop band-limiting, background noise at random SNR, gain, compression);
{d['short_fraction']:.0%} are cut to 0.5–{m['window_seconds']:g} s and zero-padded, as the app pads short recordings.{mixing}{specaug}{varispeed}{amp}{filt}

Recipe: {init} from data (standardised principal axes of the pooled hidden
states) and the classifier bias at the label priors; then the whole model is fine-tuned with AdamW
(head lr {t['head_lr']:g}, encoder lr {t['encoder_lr']:g}, warm-up {t['warmup_fraction']:.0%}, cosine decay), multi-label
BCE{family_bce}, batch {t['batch_size']}, {t['max_steps']} steps, seed {t['seed']}.{llrd}{anchored}{ema} The checkpoint with the best validation
mAP (step {best_step}) is {kept}.{_stages_text(stages)}{_average_text(average) if average else ""}

```bash
{command}
```

Wall time: {wall / 60:.0f} min {span} including periodic evaluation{total}, on the 2-core CPU
described in the evaluation section (no GPU).

Training curve (evaluation every {t['eval_every']} steps; validation limited to {d['eval_limit']} clips{curve_note}):

| step | loss | validation top-1 | validation mAP | real top-1 | real mAP |
|---|---|---|---|---|---|
{curve}

{CARD_START}
## Evaluation

Run `python -m finetune.evaluate --card models/instrusense/README.md ...` to fill in this section.
{CARD_END}

## Limitations

Trained only on rendered sample-library audio (General MIDI SoundFonts; the drum kits include two
multi-sampled acoustic kits): real recordings differ (room, microphones, playing technique), and the
gap shows in the real-recording rows and the per-label F1 above. The real-recording split covers only
the instruments with free real samples on the build machine; the other labels are measured on the
held-out SoundFont alone. Voices, synthesizers and ensembles are broad classes.
"""


def write_model_card(model_dir: Path, run: dict, best_step: int | None, history: list[dict], argv: list[str]) -> Path:
    """Write README.md next to the weights, keeping an existing evaluation section."""
    card = model_dir / "README.md"
    text = render_card(run, best_step, history, _command(argv))
    if card.is_file():
        old = card.read_text()
        if CARD_START in old and CARD_END in old:
            kept = old[old.index(CARD_START):old.index(CARD_END)]
            text = text[:text.index(CARD_START)] + kept + text[text.index(CARD_END):]
    card.write_text(text)
    return card


def main() -> None:
    """Rewrite the card of an existing model from its run directory (`runs/NAME`)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m finetune.model_card")
    ap.add_argument("--model", default="models/instrusense")
    ap.add_argument("--run", required=True,
                    help="the run directory of finetune.train (for an average: of the last averaged model)")
    ap.add_argument("--argv", default=None, help="the training command's arguments, if the run did not record them")
    args = ap.parse_args()
    run_dir, model_dir = Path(args.run), Path(args.model)
    info = read_record(model_dir)
    last = last_trained(info) if info else None
    if last is None:
        raise SystemExit(f"{model_dir} has no training record (training_run.json or averaged_from.json)")
    history = json.loads((run_dir / "history.json").read_text())
    argv = shlex.split(args.argv) if args.argv else (last.get("argv") or [])
    write_model_card(model_dir, info, last.get("step"), history, argv)


if __name__ == "__main__":
    main()
