"""The Space deploy: front matter, pins and pyproject agree on Python; the weights go through Git LFS on a
git push (to a local bare repository here); the huggingface_hub upload route against a fake Hub."""

import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = "models/instrusense/model.safetensors"
sys.path.insert(0, str(REPO / "scripts"))

import deploy_space  # noqa: E402


def _front_matter() -> dict[str, str]:
    block = REPO.joinpath("README.md").read_text(encoding="utf-8").split("---\n")[1]
    return {k.strip(): v.strip().strip('"') for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)}


def test_front_matter_pins_and_pyproject_agree_on_python():
    space_python = _front_matter()["python_version"]
    requires = re.search(r'requires-python = "([^"]+)"', REPO.joinpath("pyproject.toml").read_text()).group(1)
    assert SpecifierSet(requires).contains(space_python)
    assert not SpecifierSet(requires).contains("3.10")  # the pins below need 3.11
    for line in REPO.joinpath("requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("==")[0]
            needed = metadata(name).get("Requires-Python")  # the installed pin's own requirement
            assert needed is None or SpecifierSet(needed).contains(space_python), (name, needed)


def test_gitattributes_send_every_weight_file_through_lfs():
    files = deploy_space.tracked_files(REPO)
    assert ".gitattributes" in files and WEIGHTS in files
    big = [f for f in files if (REPO / f).stat().st_size > 10 * 2**20]  # what a Space refuses as a plain object
    out = subprocess.run(["git", "check-attr", "filter", "--", *big, WEIGHTS], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert all(line.endswith(": filter: lfs") for line in out.splitlines()), out


@pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed")
def test_git_push_stores_the_weights_as_lfs_objects(tmp_path):
    bare = tmp_path / "space.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    deploy_space.push_with_git(bare.as_uri(), REPO)  # git-lfs pushes to local repositories by file:// URL
    pointer = subprocess.run(["git", "cat-file", "-p", f"main:{WEIGHTS}"], cwd=bare, capture_output=True,
                             text=True, check=True).stdout
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1")
    oid = re.search(r"oid sha256:([0-9a-f]{64})", pointer).group(1)
    assert oid == hashlib.sha256(REPO.joinpath(WEIGHTS).read_bytes()).hexdigest()
    assert (bare / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).is_file()  # the weights went with the push
    readme = subprocess.run(["git", "show", "main:README.md"], cwd=bare, capture_output=True, text=True).stdout
    assert "python_version:" in readme  # small files stay plain git objects


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the Hub's HTTP API for `create_repo` + `upload_folder` (the LFS route)."""

    log: list = []

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_POST(self):
        body, base = self._body(), f"http://{self.headers['Host']}"
        self.log.append(("POST", self.path))
        if self.path == "/api/repos/create":
            request = json.loads(body)
            return self._reply({"url": f"{base}/spaces/{request.get('organization')}/{request['name']}"})
        if self.path == "/api/validate-yaml":  # the Hub checks the README's front matter before the commit
            self.log.append(("YAML", json.loads(body)))
            return self._reply({"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            lfs_rules = [line.split()[0] for line in REPO.joinpath(".gitattributes").read_text().splitlines()
                         if "filter=lfs" in line]
            files = [{"path": f["path"], "shouldIgnore": False,
                      "uploadMode": "lfs" if any(fnmatch.fnmatch(Path(f["path"]).name, r) for r in lfs_rules)
                      or f["size"] > 10 * 2**20 else "regular"} for f in json.loads(body)["files"]]
            return self._reply({"files": files})
        if self.path.endswith("/info/lfs/objects/batch"):
            objects = [{"oid": o["oid"], "size": o["size"],
                        "actions": {"upload": {"href": f"{base}/lfs-upload/{o['oid']}"}}}
                       for o in json.loads(body)["objects"]]
            return self._reply({"transfer": "basic", "objects": objects})
        if "/commit/" in self.path:
            self.log.append(("COMMIT", [json.loads(line) for line in body.decode().splitlines() if line]))
            return self._reply({"commitUrl": f"{base}/spaces/someone/instrusense/commit/abc123", "commitOid": "abc123",
                                "pullRequestUrl": None})
        self._reply({"error": f"unexpected {self.path}"}, 404)

    def do_PUT(self):
        body = self._body()
        self.log.append(("PUT", self.path, hashlib.sha256(body).hexdigest()))
        self._reply({})


def test_upload_route_sends_the_tracked_files_and_the_weights_as_lfs(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the fake speaks the LFS protocol, not Xet
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # CI sets it; only the local fake is reached
    FakeHub.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = deploy_space.upload("someone/instrusense", REPO, token="hf_fake",
                                  endpoint=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert url.endswith("/commit/abc123")
    commit = next(entry[1] for entry in FakeHub.log if entry[0] == "COMMIT")
    plain = {op["value"]["path"] for op in commit if op["key"] == "file"}
    lfs = {op["value"]["path"]: op["value"]["oid"] for op in commit if op["key"] == "lfsFile"}
    assert set(lfs) == {WEIGHTS} and {"app.py", "README.md", ".gitattributes", "requirements.txt"} <= plain
    assert plain | set(lfs) == set(deploy_space.tracked_files(REPO))  # nothing untracked (venv, data, runs)
    assert any(entry[0] == "YAML" and "python_version" in json.dumps(entry[1]) for entry in FakeHub.log)
    uploaded = {entry[2] for entry in FakeHub.log if entry[0] == "PUT"}
    assert uploaded == {lfs[WEIGHTS]} == {hashlib.sha256(REPO.joinpath(WEIGHTS).read_bytes()).hexdigest()}
