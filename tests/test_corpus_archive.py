"""A few hundred files: a job killed halfway goes on where it stopped, and `--ray` gives the same rows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus_files import make_corpus
from test_corpus import ENV, assert_rows_equal_records, cli_records, parquet_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_FILES = 300


@pytest.fixture(scope="module")
def archive(tiny_whisper, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The archive and the CLI's JSON record of each of its files."""
    root = tmp_path_factory.mktemp("archive")
    files = make_corpus(root, N_FILES)
    return root, cli_records(files, tiny_whisper)


def corpus_command(root: Path, out: Path, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "instrusense", "corpus", str(root), "--out", str(out), "--model", model, *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=900)


def test_a_job_killed_halfway_goes_on_without_redoing_finished_files(archive, tiny_whisper, tmp_path):
    root, records = archive
    out = tmp_path / "results.parquet"
    cmd = corpus_command(root, out, tiny_whisper, "--workers", "2", "--part-rows", "10")
    job = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    parts = out.with_name(out.name + ".parts")
    deadline = time.monotonic() + 300
    while len(list(parts.glob("part-*.parquet"))) < 5 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # the job, its fork server and its workers, with no chance to tidy up
    job.wait()
    assert not out.exists(), "the job finished before it could be killed"
    saved = sum(len(parquet_rows(p)) for p in parts.glob("part-*.parquet"))
    assert 0 < saved < N_FILES

    second = run(cmd)
    summary = re.search(r"(\d+) files listed, (\d+) already done, (\d+) analysed", second.stderr)
    assert summary, second.stderr[-2000:]
    assert tuple(map(int, summary.groups())) == (N_FILES, saved, N_FILES - saved)
    rows = parquet_rows(out)
    assert_rows_equal_records(rows, records)  # every file once, each equal to the CLI's JSON
    assert second.returncode == 1  # the archive holds broken files
    assert "Could not decode <file> as audio" in second.stderr


def test_ray_local_gives_the_same_rows(archive, tiny_whisper, tmp_path):
    pytest.importorskip("ray")
    root, records = archive
    out = tmp_path / "ray.parquet"
    proc = run(corpus_command(root, out, tiny_whisper, "--workers", "2", "--ray"))  # a local Ray, num_cpus=2
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"{N_FILES} rows in the output" in proc.stderr
    assert_rows_equal_records(parquet_rows(out), records)
