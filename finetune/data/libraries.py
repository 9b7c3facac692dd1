"""Real sample libraries: the manifest (``libraries.json``) and fetching them at their pinned commits.

    python -m finetune.data.libraries fetch --mirrors /work/.mirror --out cache/libraries

extracts every library of the manifest from a bare git mirror (``OWNER+NAME/repo`` under ``--mirrors``, or
its ``.git`` where the snapshot is a clone with a work tree) with ``git archive COMMIT``, or, without
``--mirrors``, from a shallow clone of its GitHub repository. A library from a Debian package (``repo``
``debian:PACKAGE``, ``commit`` the package version) is downloaded with ``apt-get download`` and unpacked with
``dpkg-deb``. A library already extracted at its commit is skipped. A blob missing from a mirror (very large
files may be absent) is skipped with a warning.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from finetune.data.sources import LibrarySpec, Source
from instrusense.taxonomy import LABEL_INDEX

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).with_name("libraries.json")
ROLES = ("train", "heldout")
STAMP = ".instrusense-commit"  # written after a complete extraction: the commit it holds


def load_manifest(path: str | Path | None = None) -> tuple[LibrarySpec, ...]:
    """The manifest's entries (default :data:`MANIFEST`), checked: taxonomy labels, known roles, unique
    names, sfz, folder or unpack given."""
    path = MANIFEST if path is None else path
    raw = json.loads(Path(path).read_text())["libraries"]
    specs = []
    for e in raw:
        e = dict(e)
        where = f"{path}: library {e.get('name')!r}"
        if e.get("label") not in LABEL_INDEX:
            raise ValueError(f"{where}: {e.get('label')!r} is not a taxonomy label; valid: {sorted(LABEL_INDEX)}")
        if e.get("role") not in ROLES:
            raise ValueError(f"{where}: role {e.get('role')!r} is not one of {ROLES}")
        if not e.get("sfz") and not e.get("folder") and not e.get("unpack"):
            raise ValueError(f"{where}: give the .sfz file(s), a folder or an unpack")
        folder = e.get("folder") or {}
        if folder and not ({"path", "glob"} <= set(folder) and ({"note_regex", "chord_regex"} & set(folder))):
            raise ValueError(f"{where}: a folder needs path, glob, and note_regex or chord_regex")
        e["sfz"] = tuple(e.get("sfz", ()))
        e["include"] = tuple(e.get("include", ()))
        e["drum_map"] = {int(k): int(v) for k, v in e.get("drum_map", {}).items()}
        specs.append(LibrarySpec(**e))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate library names {sorted({n for n in names if names.count(n) > 1})}")
    return tuple(specs)


def library_root(spec: LibrarySpec, root: Path) -> Path:
    return Path(root) / spec.checkout


def library_sources(root: str | Path, specs: tuple[LibrarySpec, ...] | None = None) -> dict[str, Source]:
    """name -> :class:`~finetune.data.sources.Source` (engine "sfz", origin "real") of every manifest
    library, played from its checkout under ``root`` (the ``fetch --out`` folder)."""
    return {s.name: Source(s.name, str(library_root(s, Path(root))), "sfz", s.lineage,
                           f"{s.description} ({s.repo} @ {s.commit[:12]}, {s.licence})", origin="real",
                           library=s)
            for s in (load_manifest() if specs is None else specs)}


# ------------------------------------------------------------------------------------------ fetch
def _git(*args: str, cwd: Path | None = None, binary: bool = False):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=not binary).stdout


def _included(path: str, spec: str) -> bool:
    """Whether ``path`` is under the folder ``spec`` or matches it as a glob, as ``git archive``'s pathspecs do."""
    return path == spec or path.startswith(spec.rstrip("/") + "/") or fnmatch.fnmatchcase(path, spec)


def extract_from_mirror(git_dir: Path, commit: str, include: tuple[str, ...], dest: Path) -> int:
    """Extract ``commit`` (only ``include`` paths if given) into ``dest``; returns how many blobs were missing."""
    try:
        data = _git("--git-dir", str(git_dir), "archive", "--format=tar", commit, *include, binary=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")
        return 0
    except subprocess.CalledProcessError:
        pass  # a blob is absent: fall back to file by file
    listing = _git("--git-dir", str(git_dir), "ls-tree", "-r", "-z", commit)
    missing = 0
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind != "blob" or (include and not any(_included(path, p) for p in include)):
            continue
        try:
            blob = _git("--git-dir", str(git_dir), "cat-file", "blob", sha, binary=True)
        except subprocess.CalledProcessError:
            log.warning("%s: %s is missing from the mirror, skipped", git_dir, path)
            missing += 1
            continue
        out = dest / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)
    return missing


def _clone(repo: str, commit: str, include: tuple[str, ...], dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _git("init", "-q", tmp)
        _git("fetch", "-q", "--depth", "1", f"https://github.com/{repo}.git", commit, cwd=Path(tmp))
        extract_from_mirror(Path(tmp) / ".git", commit, include, dest)


def extract_deb(deb: Path, include: tuple[str, ...], dest: Path) -> None:
    """Unpack a .deb's files (only the ``include`` paths, relative to its root, if given) into ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
        for rel in include or (".",):
            src = Path(tmp) / rel
            if not src.exists():
                raise FileNotFoundError(f"{deb.name} has no {rel}")
            if src.is_dir():
                shutil.copytree(src, dest / rel, dirs_exist_ok=True)
            else:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)


def _from_debian(package: str, version: str, include: tuple[str, ...], dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, check=True, capture_output=True)
        extract_deb(next(Path(tmp).glob("*.deb")), include, dest)


def fetch(specs: tuple[LibrarySpec, ...], out: Path, mirrors: Path | None = None) -> dict[str, str]:
    """Extract every repository of ``specs`` at its commit into ``out/OWNER+NAME``; returns {repo: status}."""
    by_repo: dict[str, list[LibrarySpec]] = {}
    for s in specs:
        by_repo.setdefault(s.repo, []).append(s)
    status = {}
    for repo, group in by_repo.items():
        commits = {s.commit for s in group}
        if len(commits) != 1:
            raise ValueError(f"{repo}: entries pin different commits {sorted(commits)}")
        commit = commits.pop()
        include = () if any(not s.include for s in group) else tuple(sorted({p for s in group for p in s.include}))
        dest = library_root(group[0], out)
        stamp = dest / STAMP
        if stamp.is_file() and stamp.read_text().strip() == commit:
            status[repo] = "present"
            continue
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        try:
            if group[0].debian_package:
                _from_debian(group[0].debian_package, commit, include, dest)
                missing = 0
            elif mirrors is not None:
                git_dir = Path(mirrors) / group[0].checkout / "repo"
                if (git_dir / ".git").is_dir():  # some snapshots are clones with a work tree
                    git_dir = git_dir / ".git"
                if not git_dir.is_dir():
                    log.warning("%s: no mirror at %s, skipped", repo, git_dir)
                    status[repo] = "no mirror"
                    continue
                missing = extract_from_mirror(git_dir, commit, include, dest)
            else:
                _clone(repo, commit, include, dest)
                missing = 0
        except (subprocess.CalledProcessError, FileNotFoundError, StopIteration) as e:
            log.warning("%s: could not extract %s (%s), skipped", repo, commit[:12],
                        (getattr(e, "stderr", None) or str(e))[-300:])
            status[repo] = "failed"
            continue
        stamp.write_text(commit + "\n")
        status[repo] = f"extracted ({missing} missing files)" if missing else "extracted"
        log.info("%s @ %s: %s", repo, commit[:12], status[repo])
    return status


def main(argv: list[str] | None = None) -> int:
    from instrusense.logs import configure_logging

    configure_logging("INFO")
    parser = argparse.ArgumentParser(prog="python -m finetune.data.libraries", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="extract every library of the manifest at its pinned commit")
    f.add_argument("--out", default="cache/libraries", help="folder to extract into (default: %(default)s)")
    f.add_argument("--mirrors", default=None, help="folder of bare mirrors OWNER+NAME/repo; none: clone from GitHub")
    f.add_argument("--manifest", default=str(MANIFEST), help="the library manifest (default: %(default)s)")
    args = parser.parse_args(argv)
    status = fetch(load_manifest(args.manifest), Path(args.out), Path(args.mirrors) if args.mirrors else None)
    for repo, s in status.items():
        print(f"{repo}: {s}")
    return 0 if all(s.startswith(("extracted", "present")) for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
