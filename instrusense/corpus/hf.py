"""`analyze_dataset`: the analysis as new columns of a Hugging Face `datasets` dataset (`map`, batched).

Two passes: the first analyses every row into its JSON record (a text column, whose type never changes);
the second spreads the records into the corpus row's columns, typed by the records of the whole split. A
single pass cannot type them: `map` fixes its schema on the first batch, which may hold only failures (null
columns) that later rows could not be written into.
"""

from __future__ import annotations

import json

from instrusense.model import tagger_for
from instrusense.settings import load_settings

from instrusense.corpus.rows import record_row
from instrusense.corpus.sources import undecoded
from instrusense.corpus.worker import Analyser

_RECORD = "__instrusense_record"
_SCHEMA_CHUNK = 1024


def analyze_dataset(ds, audio_column: str = "audio", model: str | None = None, batch_size: int = 16,
                    num_proc: int | None = None):
    """`ds` (a Dataset or DatasetDict) with the corpus row's columns added: `duration`, a confidence per
    taxonomy label, `segments`, `timeline`, `error` (a row that cannot be analysed gets its error, never an
    exception). Raises `ModelUnavailableError` at once if the model cannot be loaded.
    """
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({name: analyze_dataset(split, audio_column, model, batch_size, num_proc)
                                     for name, split in ds.items()})
    if audio_column not in ds.column_names:
        raise ValueError(f"No column {audio_column!r}; the dataset has {ds.column_names}.")
    settings = load_settings(model=model)
    tagger_for(settings)  # fail here, not once per row

    def analyse(batch: dict, indices: list[int]) -> dict:
        analyser = Analyser(settings, None, settings.threads)  # the model is loaded once per process
        return {_RECORD: [json.dumps(analyser.value(value, f"[{i}]"), ensure_ascii=False)
                          for value, i in zip(batch[audio_column], indices)]}

    def spread(batch: dict) -> dict:
        rows = [_row(text) for text in batch[_RECORD]]
        return {name: [row.get(name) for row in rows] for name in added}

    recorded = undecoded(ds, audio_column).map(analyse, batched=True, batch_size=batch_size, with_indices=True,
                                               num_proc=num_proc, desc="analysing")
    added = _added_features(recorded)
    features = datasets.Features({**{k: v for k, v in recorded.features.items() if k != _RECORD}, **added})
    result = recorded.map(spread, batched=True, remove_columns=[_RECORD], features=features)
    return result.cast_column(audio_column, ds.features[audio_column])


def _row(text: str) -> dict:
    row = record_row(json.loads(text))
    del row["file"]  # the dataset row is its own identity
    return row


def _added_features(recorded):
    """Features of the row columns, unified over every record of the split."""
    import datasets
    import pyarrow as pa

    texts = recorded.select_columns([_RECORD])
    schemas = [pa.Table.from_pylist([_row(text) for text in texts[i:i + _SCHEMA_CHUNK][_RECORD]]).schema
               for i in range(0, len(texts), _SCHEMA_CHUNK)]
    if not schemas:
        return datasets.Features()
    return datasets.Features.from_arrow_schema(pa.unify_schemas(schemas, promote_options="permissive"))
