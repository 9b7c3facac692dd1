"""The Ray engine: the same job on Ray Data, from a laptop (a local Ray) to a cluster (`ray.init(address)`).

`map_batches` runs an actor pool; each actor holds one loaded model (an `Analyser`) and returns the CLI's
records as JSON text, which the driver turns into rows and writes through the same store as the local pool:
same schema, same resumability. On a cluster every node must read the files (shared storage, same paths)
and import `instrusense` with the model (the same checkout on every node, or `--model` a Hub id).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Iterator

from instrusense.settings import REPO_ROOT, Settings

from instrusense.corpus.sources import CorpusError, Item, Source
from instrusense.corpus.worker import Analyser, quiet_file_notices

RAY_MISSING = ("--ray needs Ray Data, which is not installed here: pip install 'ray[data]==2.60.0' "
               "(the version pinned in requirements-dev.txt).")
LOCAL = "local"
"""The --ray value that starts a Ray on this machine instead of joining a cluster."""
_LOCAL_OBJECT_STORE_BYTES = 256 << 20  # records are small; the default (30 % of RAM) would crowd a laptop


class _RayAnalyser:
    """A Ray Data actor: one loaded model, a batch of items in, their records (JSON text) out."""

    def __init__(self, settings: Settings, source: Source, threads: int):
        quiet_file_notices()
        self.analyser = Analyser(settings, source, threads)

    def __call__(self, batch: dict) -> dict:
        items = [Item(str(f), str(p), str(s), int(i))
                 for f, p, s, i in zip(batch["file"], batch["path"], batch["split"], batch["index"])]
        return {"record": [json.dumps(self.analyser(item), ensure_ascii=False) for item in items]}


def start_ray(address: str, cores: int):
    """`ray` connected to the cluster at `address`, or to a new local Ray with `cores` CPUs, and whether this
    call started it (then the job shuts it down)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CorpusError(RAY_MISSING) from None
    if ray.is_initialized():
        return ray, False
    if address == LOCAL:
        ray.init(num_cpus=cores, include_dashboard=False, object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
                 logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return ray, True


def ray_workers(ray, threads: int) -> int:
    """One actor per `threads` CPUs of the cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)


def run_on_ray(items: list[Item], settings: Settings, source: Source, address: str, workers: int, threads: int,
               cores: int, batch_size: int = 4) -> Iterator[list[dict]]:
    """Records of `items`, a batch at a time in the order they finish."""
    ray, started = start_ray(address, cores)
    try:
        yield from _analyse(ray, items, settings, source, workers or ray_workers(ray, threads), threads, batch_size)
    finally:
        if started:
            ray.shutdown()


def _analyse(ray, items: list[Item], settings: Settings, source: Source, workers: int, threads: int,
             batch_size: int) -> Iterator[list[dict]]:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the job shows one bar, with the rate and ETA
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no notices about the bars just switched off
    blocks = min(len(items), max(2 * workers, min(len(items) // batch_size, 64 * workers)))  # all actors busy
    ds = ray.data.from_items([asdict(item) for item in items], override_num_blocks=blocks)
    records = ds.map_batches(_RayAnalyser, batch_size=batch_size, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
                             fn_constructor_kwargs={"settings": settings, "source": source, "threads": threads})
    for batch in records.iter_batches(batch_size=None, batch_format="numpy"):
        yield [json.loads(text) for text in batch["record"]]
