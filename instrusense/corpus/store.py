"""Results on disk: `RESULTS.parquet` plus `RESULTS.parquet.parts/`, the parts a running job has written.

Each part is written to a temporary name and renamed, so a killed job leaves only whole parts; a rerun skips
every file found in the result or the parts. At the end the parts are merged into `RESULTS.parquet` (streamed
batch by batch, so memory stays bounded); their schemas are unified, so parts that hold only failures (null
columns) or records that gained a field merge with the rest.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from instrusense.corpus.sources import CorpusError

PART_GLOB = "part-*.parquet"


class ResultStore:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".parts")

    def _files(self) -> list[Path]:
        return ([self.out] if self.out.is_file() else []) + sorted(self.parts.glob(PART_GLOB))

    def done_files(self) -> set[str]:
        """Keys of every row already written (finished result and parts)."""
        import pyarrow.parquet as pq

        for stale in self.parts.glob("*.tmp"):  # a part the killed job was still writing
            stale.unlink()
        done: set[str] = set()
        for path in self._files():
            try:
                done.update(pq.read_table(path, columns=["file"]).column("file").to_pylist())
            except Exception as exc:
                raise CorpusError(f"{path} is not a readable corpus result ({exc}); move it away or choose "
                                  "another --out.") from exc
        return done

    def append(self, rows: list[dict]) -> None:
        """Write rows as one more part (atomically: whole or absent)."""
        if not rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts.mkdir(parents=True, exist_ok=True)
        final = self.parts / f"part-{time.time_ns():020d}-{os.getpid()}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, final)

    def finish(self) -> int:
        """Merge the result and its parts into `RESULTS.parquet`; returns its row count."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self._files()
        if not files:
            return 0
        if files == [self.out]:
            return pq.ParquetFile(self.out).metadata.num_rows
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
        tmp = self.out.with_name(self.out.name + ".tmp")
        rows = 0
        with pq.ParquetWriter(tmp, schema) as writer:
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches():
                    writer.write_table(conform(pa.Table.from_batches([batch]), schema))
                    rows += batch.num_rows
        os.replace(tmp, self.out)
        shutil.rmtree(self.parts, ignore_errors=True)
        return rows


def conform(table, schema):
    """`table` with `schema`'s columns, in its order: missing ones as nulls, others cast (null → typed)."""
    import pyarrow as pa

    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
