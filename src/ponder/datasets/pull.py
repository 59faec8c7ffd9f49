"""Fetch a dataset's files from a mirror or from the public upstream, and verify every byte.

Guarantees, because analyses silently built on a truncated or altered file are worse than none:
- a file reaches its final name only after its sha256 verified: it is written to `FILE.part`,
  fsynced, checked, then moved with `os.replace` (atomic); a failure deletes the `.part` and
  leaves any previous file untouched;
- a file already present with the right sha256 is not fetched again (no network at all);
- upstream files whose hash is not pinned are trusted on first use: the hash is recorded in
  `checksums.json` next to them and every later pull must match it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from ponder import __version__
from ponder.checksums import sha256_file
from ponder.datasets.registry import DatasetFile, DatasetSpec, default_dest, get_dataset
from ponder.errors import ChecksumError, DownloadError

MIRROR_ENV = "PONDER_DATA_MIRROR"
CHECKSUMS_FILE = "checksums.json"
RETRIES = 2
"""Extra attempts after a connection error, timeout, cut-off body or 5xx (not after a 4xx)."""
BACKOFF_SECONDS = 0.5
"""First retry delay; doubles on each further attempt."""
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_CHUNK = 1 << 16


class MirrorRequiredError(DownloadError):
    """The dataset exists upstream only in another format, and no mirror was given."""


@dataclass
class PullResult:
    """What a pull did: paths are `FOLDER/FILE`, relative to `dest`."""

    name: str
    dest: Path
    source: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    bytes_written: int = 0

    @property
    def folder(self) -> Path:
        """The dataset's folder under `dest` (what `find_dataset_dir` returns after a pull)."""
        return self.dest / get_dataset(self.name).folder

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dest": str(self.dest),
            "folder": str(self.folder),
            "source": self.source,
            "written": list(self.written),
            "skipped": list(self.skipped),
            "recorded": list(self.recorded),
            "bytes_written": self.bytes_written,
        }


@dataclass(frozen=True)
class _Source:
    """Where files come from: an HTTP(S) mirror, a local mirror folder, or upstream URLs."""

    kind: str  # "http", "local" or "upstream"
    base: str  # URL prefix, folder path, or "" for upstream
    label: str

    def locate(self, f: DatasetFile) -> str:
        if self.kind == "http":
            return f"{self.base}/{quote(f.path)}"
        if self.kind == "local":
            return str(Path(self.base, *f.path.split("/")))
        assert f.upstream_url is not None
        return f.upstream_url


def _resolve_source(spec: DatasetSpec, mirror: str | os.PathLike[str] | None) -> _Source:
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if mirror is None:
        if spec.needs_mirror:
            raise MirrorRequiredError(
                f"dataset {spec.name!r} needs a mirror: {spec.mirror_reason}; "
                f"pass --mirror URL_OR_DIR or set {MIRROR_ENV}"
            )
        return _Source("upstream", "", f"upstream {spec.upstream_repo}@{spec.upstream_commit[:12]}")
    text = os.fspath(mirror)
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("http", "https"):
        base = text.rstrip("/")
        return _Source("http", base, f"mirror {base}")
    if scheme == "file":
        folder = Path(unquote(urlsplit(text).path))
    elif scheme:
        raise DownloadError(f"unsupported mirror {text!r}: use an http(s):// URL or a folder")
    else:
        folder = Path(text).expanduser()
    if not folder.is_dir():
        raise DownloadError(f"mirror folder {folder} does not exist")
    return _Source("local", str(folder), f"mirror {folder}")


def _load_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / CHECKSUMS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
        return {str(k): dict(v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChecksumError(
            f"{path}: unreadable recorded checksums ({exc}); delete it to record them again"
        ) from exc


def _save_checksums(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    data = {
        "about": "sha256 recorded on first download (trust on first use); later pulls must match",
        "files": dict(sorted(files.items())),
    }
    path = folder / CHECKSUMS_FILE
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_OnChunk = Callable[[int], None]
_OnTotal = Callable[[int | None], None]


def _write_stream(chunks: Iterator[bytes], part: Path, on_chunk: _OnChunk) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with part.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            h.update(chunk)
            n += len(chunk)
            on_chunk(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    return h.hexdigest(), n


def _copy_local(src: str, part: Path, on_total: _OnTotal, on_chunk: _OnChunk) -> tuple[str, int]:
    path = Path(src)
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise DownloadError(f"{path} not found in the mirror folder") from exc
    except OSError as exc:
        raise DownloadError(f"cannot read {path} from the mirror folder: {_one_line(exc)}") from exc
    with fh:
        on_total(os.fstat(fh.fileno()).st_size)
        return _write_stream(iter(lambda: fh.read(_CHUNK), b""), part, on_chunk)


def _download(
    client: httpx.Client, url: str, part: Path, on_total: _OnTotal, on_chunk: _OnChunk
) -> tuple[str, int]:
    """GET `url` into `part`; retry transient failures; any failure becomes a DownloadError."""
    for attempt in range(RETRIES + 1):
        last = attempt == RETRIES
        try:
            with client.stream("GET", url) as resp:
                if resp.status_code >= 500 and not last:
                    pass  # retried below, after the backoff
                elif resp.status_code != 200:
                    raise DownloadError(
                        f"HTTP {resp.status_code} {resp.reason_phrase} for {url}".strip()
                    )
                else:
                    length = resp.headers.get("content-length")
                    on_total(int(length) if length and length.isdigit() else None)
                    return _write_stream(resp.iter_bytes(_CHUNK), part, on_chunk)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise DownloadError(f"cannot fetch {url}: {_one_line(exc)}") from exc
        except httpx.TransportError as exc:  # connect/read errors, timeouts, body cut short
            if last:
                raise DownloadError(
                    f"cannot fetch {url}: {_one_line(exc)} (after {RETRIES + 1} attempts)"
                ) from exc
        on_chunk(0)
        time.sleep(BACKOFF_SECONDS * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class _Progress:
    """A rich progress bar with ETA on stderr, or nothing (tests, pipes, --no-progress)."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        if enabled:
            from ponder.download_bar import download_bar

            self._progress = download_bar(transient=False)

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, description: str, total: int | None) -> tuple[_OnTotal, _OnChunk]:
        if self._progress is None:
            return (lambda _total: None), (lambda _n: None)
        progress = self._progress
        task_id = progress.add_task(description, total=total)

        def on_total(value: int | None) -> None:
            if value is not None:
                progress.update(task_id, total=value)

        def on_chunk(n: int) -> None:
            if n:
                progress.advance(task_id, n)
            else:  # a retry starts over
                progress.reset(task_id)

        return on_total, on_chunk


def _expected(f: DatasetFile, source: _Source, recorded: dict[str, dict[str, Any]]) -> str | None:
    """The sha256 the file must have from this source; None means trust on first use."""
    if source.kind != "upstream" or f.upstream_verified:
        return f.sha256
    entry = recorded.get(f.path)
    return str(entry["sha256"]) if entry and "sha256" in entry else None


def pull(
    name: str,
    *,
    dest: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    progress: bool = True,
    client: httpx.Client | None = None,
    force: bool = False,
) -> PullResult:
    """Fetch dataset `name` into `dest/FOLDER/` (default: `<data dir>/datasets`).

    Source: `mirror` (an http(s) URL serving the `FOLDER/FILE` layout, a local folder, or a
    file:// URL), else `$PONDER_DATA_MIRROR`, else the commit-pinned upstream URLs. `progress`
    shows a bar only when stderr is a terminal. `force` re-fetches files already present.
    """
    spec = get_dataset(name)
    source = _resolve_source(spec, mirror)
    root = Path(dest) if dest is not None else default_dest()
    folder = root / spec.folder
    files = spec.mirror_files if source.kind != "upstream" else spec.upstream_files
    recorded = _load_checksums(folder) if source.kind == "upstream" else {}
    result = PullResult(name=spec.name, dest=root, source=source.label)

    todo: list[DatasetFile] = []
    for f in files:
        target = folder / f.name
        if not force and target.is_file():
            actual = sha256_file(target)
            expected = _expected(f, source, recorded)
            if actual == expected or (expected is None and actual == f.sha256):
                result.skipped.append(f.path)
                continue
        todo.append(f)
    if not todo:
        return result

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {folder}: {_one_line(exc)}") from exc
    own_client = client is None and source.kind != "local"
    http = client
    if own_client:
        http = httpx.Client(
            timeout=TIMEOUT,
            follow_redirects=True,
            headers={"User-Agent": f"ponder/{__version__}"},
        )
    try:
        with _Progress(progress and sys.stderr.isatty()) as bars:
            for f in todo:
                location = source.locate(f)
                target = folder / f.name
                part = target.with_name(target.name + ".part")
                part.unlink(missing_ok=True)  # a stale .part is never trusted nor resumed
                on_total, on_chunk = bars.task(f.name, f.size)
                try:
                    if source.kind == "local":
                        actual, nbytes = _copy_local(location, part, on_total, on_chunk)
                    else:
                        assert http is not None
                        actual, nbytes = _download(http, location, part, on_total, on_chunk)
                    expected = _expected(f, source, recorded)
                    if expected is not None and actual != expected:
                        raise ChecksumError(
                            f"checksum mismatch for {f.path} from {location}: expected sha256 "
                            f"{expected}, got {actual}; the download was discarded"
                        )
                    os.replace(part, target)
                    _fsync_dir(folder)
                except OSError as exc:  # the destination, not the source, failed
                    raise DownloadError(f"cannot write {target}: {_one_line(exc)}") from exc
                finally:
                    part.unlink(missing_ok=True)
                result.written.append(f.path)
                result.bytes_written += nbytes
                if expected is None:
                    recorded[f.path] = {
                        "sha256": actual,
                        "size": nbytes,
                        "url": location,
                        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    }
                    try:
                        _save_checksums(folder, recorded)
                    except OSError as exc:
                        raise DownloadError(
                            f"cannot record checksums in {folder}: {_one_line(exc)}"
                        ) from exc
                    result.recorded.append(f.path)
    finally:
        if own_client and http is not None:
            http.close()
    return result
