"""InstruSense as a package: the wheel, installed into a fresh venv outside the checkout, gives the
`instrusense` command with the shipped model inside, the same records as `python -m instrusense`, and with
the `[app]` extra the app serves.

The fresh venv sees the dependencies already installed in this one (a `.pth` file), so the test downloads
nothing, while pip still checks that the wheel's declared requirements and extras are met (`--no-index`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.flac"))
pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "INSTRUSENSE_", "VIRTUAL_ENV"))}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def pip(venv: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "-q",
                    "--disable-pip-version-check", *args], check=True, env=clean_env())


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, env=clean_env())
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel_dir) -> Path:
    root = tmp_path_factory.mktemp("fresh")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps-of-the-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip(env, "install", "--no-index", "--find-links", str(wheel_dir), "instrusense")
    return env


def test_the_wheel_carries_the_library_the_command_and_the_model(wheel_dir):
    import zipfile

    names = zipfile.ZipFile(next(wheel_dir.glob("instrusense-*.whl"))).namelist()
    assert "instrusense/cli/__init__.py" in names and "instrusense/shipped_model/model.safetensors" in names
    assert not any(n.startswith(("finetune/", "tests/", "app")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "instrusense = instrusense.cli:main" in zipfile.ZipFile(next(wheel_dir.glob("*.whl"))).read(entry_points).decode()


def test_the_installed_command_gives_the_records_of_the_checkout(venv, tmp_path):
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import instrusense, instrusense.settings as s; "
                                "print(instrusense.__file__); print(s.DEFAULT_MODEL)"],
                               cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True).stdout.split("\n")
    assert installed[0].startswith(str(venv)) and installed[1].startswith(str(venv))  # not the checkout's copy
    ours = subprocess.run([str(venv / "bin" / "instrusense"), "analyze", "--json", *EXAMPLES], cwd=tmp_path,
                          env=clean_env(), capture_output=True, text=True, timeout=300)
    assert ours.returncode == 0, ours.stderr[-2000:]
    checkout = subprocess.run([sys.executable, "-m", "instrusense", "analyze", "--json", *EXAMPLES], cwd=REPO,
                              env=clean_env(), capture_output=True, text=True, timeout=300)
    assert checkout.returncode == 0, checkout.stderr[-2000:]
    assert json.loads(ours.stdout) == json.loads(checkout.stdout)
    assert [r["error"] for r in json.loads(ours.stdout)] == [None] * len(EXAMPLES)


def test_the_app_extra_serves_app_py_on_the_installed_library(venv, wheel_dir, tmp_path):
    from gradio_client import Client, handle_file

    pip(venv, "install", "--no-index", "--find-links", str(wheel_dir), "instrusense[app]")
    for face in ("app.py", "app_live.py", "space_guards.py"):  # the faces beside the installed library, away from the checkout
        shutil.copy(REPO / face, tmp_path / face)
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env=clean_env(INSTRUSENSE_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False"))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("the app did not serve within 180 s")
        result = Client(url, verbose=False).predict(handle_file(EXAMPLES[0]), api_name="/analyze")
        record = next(r for r in result if isinstance(r, dict) and "labels" in r)
        cli = json.loads(subprocess.run([str(venv / "bin" / "instrusense"), "analyze", "--json", EXAMPLES[0]],
                                        env=clean_env(), capture_output=True, text=True, check=True).stdout)[0]
        assert record["labels"] == cli["labels"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
