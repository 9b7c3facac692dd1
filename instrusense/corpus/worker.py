"""One analysing process: a loaded model and the source, turning items into the CLI's JSON records."""

from __future__ import annotations

import logging
from dataclasses import replace

from instrusense.audio import AudioError
from instrusense.export import error_record
from instrusense.model import tagger_or_reason
from instrusense.records import file_record
from instrusense.settings import Settings

from instrusense.corpus.sources import Item, Source, item_file, value_file

log = logging.getLogger(__name__)


class Analyser:
    """The model loaded once (with `threads` torch threads) and the per-file record around it (`file_record`,
    as the CLI writes it).

    A model that cannot be loaded is a failure of the job, not of each file: every call then raises
    `ModelUnavailableError` instead of filling the table with error rows that a rerun would skip.
    """

    def __init__(self, settings: Settings, source: Source | None, threads: int):
        self.settings = replace(settings, threads=threads)
        self.source = source
        self.tagger, self.model_error = tagger_or_reason(self.settings)

    def __call__(self, item: Item) -> dict:
        return self._analyse(item.file, lambda: item_file(self.source, item))

    def value(self, value: object, name: str) -> dict:
        """Record for a `datasets` audio value ({bytes, path} or a path)."""
        return self._analyse(name, lambda: value_file(value, name))

    def _analyse(self, name: str, open_file) -> dict:
        if self.model_error is not None:
            raise self.model_error
        try:
            with open_file() as path:
                record, _ = file_record(path, self.tagger, self.settings, name)
        except AudioError as exc:
            return error_record(name, str(exc))
        except Exception as exc:  # a broken dataset row must not stop the job
            log.exception("unexpected failure on %s", name)
            return error_record(name, f"Internal error while reading the item: {type(exc).__name__}: {exc}")
        return record


def quiet_file_notices() -> None:
    """In a worker process: per-file notices (silence, NaN samples) and decoders' own C-level messages stay
    off the terminal that shows the progress bar; the table holds what matters."""
    from instrusense.native_output import route_native_output_to_log

    for name in ("instrusense.records", "instrusense.audio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    route_native_output_to_log()
