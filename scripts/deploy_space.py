"""Deploy the app to a Hugging Face Space, from the files git tracks (nothing else: no venv, data or runs).

    python scripts/deploy_space.py YOUR_NAME/instrusense              # huggingface_hub upload (HF_TOKEN or login)
    python scripts/deploy_space.py --git https://huggingface.co/spaces/YOUR_NAME/instrusense

The upload route needs no git-lfs; the Hub stores the weights as large files itself. The git route builds a
fresh one-commit repository with Git LFS enabled in it alone (`.gitattributes` sends the weights through LFS,
as a Space requires for files over 10 MB) and pushes it; this repository keeps its weights as plain objects,
so a clone works without git-lfs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_files(root: Path = ROOT) -> list[str]:
    """The files a Space needs: what git tracks (committed or staged) in `root`."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def upload(repo_id: str, root: Path = ROOT, token: str | None = None, endpoint: str | None = None) -> str:
    """Create the Space if needed and upload the tracked files in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(root),
                               allow_patterns=tracked_files(root), commit_message="Deploy InstruSense")
    return str(commit.commit_url)


def push_with_git(remote: str, root: Path = ROOT, branch: str = "main") -> None:
    """Push the tracked files as one commit, weights through Git LFS, to `remote` (replacing its branch)."""
    if shutil.which("git-lfs") is None:
        raise SystemExit("git-lfs is not installed (apt-get install git-lfs); or use the upload route.")
    with tempfile.TemporaryDirectory(prefix="instrusense-space-") as tmp:
        repo = Path(tmp)

        def git(*args: str) -> None:
            subprocess.run(["git", *args], cwd=repo, check=True)

        git("init", "-q", "-b", branch)
        git("lfs", "install", "--local")  # LFS in this repository only; no global configuration changes
        for name in tracked_files(root):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, repo / name)
        git("add", "-A")
        git("-c", "user.name=InstruSense deploy", "-c", "user.email=deploy@instrusense.invalid", "commit", "-q",
            "-m", "Deploy InstruSense")
        git("push", "-q", "--force", remote, f"HEAD:{branch}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/deploy_space.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="Space id (YOUR_NAME/instrusense), or with --git a git remote URL")
    parser.add_argument("--git", action="store_true", help="push with git + git-lfs instead of the Hub upload")
    args = parser.parse_args(argv)
    if args.git:
        push_with_git(args.target)
    else:
        print(upload(args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
