"""The sweep spec: models x problem sets x modes x budgets x samples, validated up front.

A spec is YAML (see docs/sweeps.md) or the same built from command-line flags. Every mistake
is reported as one line naming the spec file, the line where YAML knows it, and the field
(``spec.yaml:7, field 'budgets.ladder': ...``) before any problem is loaded or any model is
started.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ponder.backends import BACKEND_KINDS
from ponder.backends.base import MODES, NO_THINK, THINK
from ponder.budgets import DEFAULT_RESERVE, check_rungs
from ponder.errors import InputError

STRATEGY_KINDS: tuple[str, ...] = ("ladder", "forced", "native")
PRESETS: dict[str, str] = {
    "gsm8k": "problem_sets/gsm8k_test.jsonl",
    "math500": "problem_sets/math500_test.jsonl",
}
_TOP_KEYS = (
    "name",
    "problems",
    "models",
    "modes",
    "budgets",
    "reserve",
    "budget_is_total",
    "sampling",
    "seed",
    "concurrency",
    "retries",
    "entropy",
)
_REQUIRED = ("name", "problems", "models")


@dataclass(frozen=True)
class ProblemSource:
    """One source of problems: ``generated`` (the arithmetic generator), ``file`` (JSONL or
    CSV with text / gold columns) or ``preset`` (a known public set, optionally with its file).
    """

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    preset: str | None = None
    dataset: str | None = None
    limit: int | None = None
    where: str = ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.options:
            out["options"] = dict(self.options)
        if self.path is not None:
            out["path"] = self.path.name
        for key in ("preset", "dataset", "limit"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class Strategy:
    """How thinking budgets are enforced for one work item: a whole ``ladder`` (one chain,
    every rung), ``forced`` at one budget (two-phase forcing), ``native`` at one budget (the
    engine's own parameter) or ``none`` (no-think)."""

    kind: str
    budgets: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return self.kind

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "budgets": list(self.budgets)}


NO_BUDGET = Strategy("none")


@dataclass(frozen=True)
class SamplingSpec:
    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p}


@dataclass(frozen=True)
class SweepSpec:
    name: str
    problems: tuple[ProblemSource, ...]
    models: tuple[ModelSpec, ...]
    modes: tuple[str, ...] = (THINK, NO_THINK)
    strategies: tuple[Strategy, ...] = (Strategy("ladder", (16, 32, 64, 128, 256)),)
    reserve: int = DEFAULT_RESERVE
    budget_is_total: bool = False
    sampling: tuple[SamplingSpec, ...] = (SamplingSpec(),)
    seed: int = 0
    concurrency: int = 1
    retries: int = 2
    entropy: bool = True
    source: str = "<flags>"
    base_dir: Path = field(default_factory=Path.cwd)

    def strategies_for(self, mode: str) -> tuple[Strategy, ...]:
        """No-think ignores budgets: one direct answer per sample."""
        return self.strategies if mode == THINK else (NO_BUDGET,)

    def to_json(self) -> str:
        """The spec as canonical JSON (recorded in the store's ``sweeps`` table)."""
        data = {
            "name": self.name,
            "problems": [p.describe() for p in self.problems],
            "models": [
                {"name": m.name, "backend": m.backend, "options": dict(m.options)}
                for m in self.models
            ],
            "modes": list(self.modes),
            "strategies": [s.describe() for s in self.strategies],
            "reserve": self.reserve,
            "budget_is_total": self.budget_is_total,
            "sampling": [asdict(s) for s in self.sampling],
            "seed": self.seed,
            "concurrency": self.concurrency,
            "retries": self.retries,
            "entropy": self.entropy,
        }
        return json.dumps(data, sort_keys=True, default=str)


# -- YAML with line numbers -------------------------------------------------------------------


def _line_map(text: str, source: str) -> dict[str, int]:
    """Dotted field path -> 1-based line, from YAML's node tree; duplicate keys are errors."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                if key in seen:
                    raise InputError(
                        "duplicate key", path=source, line=key_node.start_mark.line + 1, field=child
                    )
                seen.add(key)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, "")
    return lines


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec; relative problem files are relative to the spec."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("spec file not found", path=path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text, str(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = None if mark is None else mark.line + 1
        raise InputError(f"malformed YAML: {exc.problem}", path=path, line=line) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise InputError("a spec is a YAML mapping (name, problems, models, ...)", path=path)
    return parse_spec(data, source=str(path), base_dir=path.parent, lines=lines)


class _Fields:
    """Raises one-line errors naming the spec file, the line and the field."""

    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, field_name: str, message: str) -> InputError:
        # The line of the field, else of the nearest enclosing field YAML knows.
        probe = field_name
        while probe and probe not in self.lines:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        line = self.lines.get(probe) if probe else None
        return InputError(message, path=self.source, line=line, field=field_name)

    def keys(self, data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
        for key in data:
            if key not in known:
                name = f"{where}.{key}" if where else str(key)
                raise self.fail(name, f"unknown key; expected one of {', '.join(known)}")

    def integer(self, value: Any, where: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(where, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value: Any, where: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(where, f"must be a number, got {value!r}")
        return float(value)

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {value!r}")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"must be a non-empty list, got {value!r}")
        return value


def parse_spec(
    data: Mapping[str, Any],
    *,
    source: str = "<flags>",
    base_dir: Path | None = None,
    lines: Mapping[str, int] | None = None,
) -> SweepSpec:
    """Validate a spec given as plain data (parsed YAML, or built from flags)."""
    f = _Fields(source, lines or {})
    base = base_dir if base_dir is not None else Path.cwd()
    f.keys(data, _TOP_KEYS, "")
    for key in _REQUIRED:
        if key not in data:
            raise f.fail(key, "missing (a spec needs name, problems and models)")
    name = f.text(data["name"], "name")
    if "/" in name:
        raise f.fail("name", f"must not contain '/', got {name!r}")

    reserve = f.integer(data.get("reserve", DEFAULT_RESERVE), "reserve", minimum=1)
    budget_is_total = data.get("budget_is_total", False)
    if not isinstance(budget_is_total, bool):
        raise f.fail("budget_is_total", f"must be true or false, got {budget_is_total!r}")
    entropy = data.get("entropy", True)
    if not isinstance(entropy, bool):
        raise f.fail("entropy", f"must be true or false, got {entropy!r}")

    problems = tuple(
        _problem_source(f, item, f"problems[{i}]", base)
        for i, item in enumerate(f.items(data["problems"], "problems"))
    )
    models = tuple(
        _model(f, item, f"models[{i}]") for i, item in enumerate(f.items(data["models"], "models"))
    )
    names = [m.name for m in models]
    for i, model_name in enumerate(names):
        if names.index(model_name) != i:
            raise f.fail(f"models[{i}].name", f"model {model_name!r} is listed twice")

    modes_raw = f.items(data.get("modes", [THINK, NO_THINK]), "modes")
    modes: list[str] = []
    for i, mode in enumerate(modes_raw):
        if mode not in MODES:
            raise f.fail(f"modes[{i}]", f"unknown mode {mode!r}; expected one of {list(MODES)}")
        if mode in modes:
            raise f.fail(f"modes[{i}]", f"mode {mode!r} is listed twice")
        modes.append(mode)

    strategies = _strategies(f, data.get("budgets"), reserve, budget_is_total, THINK in modes)
    sampling = tuple(
        _sampling(f, item, f"sampling[{i}]")
        for i, item in enumerate(f.items(data.get("sampling", [{}]), "sampling"))
    )
    seen: dict[tuple[float, float], int] = {}
    for i, entry in enumerate(sampling):
        pair = (entry.temperature, entry.top_p)
        if pair in seen:
            raise f.fail(
                f"sampling[{i}]",
                f"same temperature and top_p as sampling[{seen[pair]}]; raise `samples` instead",
            )
        seen[pair] = i

    return SweepSpec(
        name=name,
        problems=problems,
        models=models,
        modes=tuple(modes),
        strategies=strategies,
        reserve=reserve,
        budget_is_total=budget_is_total,
        sampling=sampling,
        seed=f.integer(data.get("seed", 0), "seed", minimum=0),
        concurrency=f.integer(data.get("concurrency", 1), "concurrency", minimum=1),
        retries=f.integer(data.get("retries", 2), "retries", minimum=0),
        entropy=entropy,
        source=source,
        base_dir=base,
    )


def _problem_source(f: _Fields, item: Any, where: str, base: Path) -> ProblemSource:
    item = f.mapping(item, where)
    f.keys(item, ("generated", "file", "preset", "dataset", "limit"), where)
    limit = None if "limit" not in item else f.integer(item["limit"], f"{where}.limit", minimum=1)
    dataset = None if "dataset" not in item else f.text(item["dataset"], f"{where}.dataset")
    if "generated" in item:
        if "file" in item or "preset" in item:
            raise f.fail(where, "a source is `generated` or `file` / `preset`, not both")
        options = f.mapping(item["generated"] or {}, f"{where}.generated")
        f.keys(options, ("levels", "per_level", "seed"), f"{where}.generated")
        if dataset is not None:
            options = {**options, "dataset": dataset}
        return ProblemSource("generated", options, dataset=dataset, limit=limit, where=where)
    preset = None
    if "preset" in item:
        preset = f.text(item["preset"], f"{where}.preset")
        if preset not in PRESETS:
            raise f.fail(f"{where}.preset", f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if "file" in item:
        path = Path(f.text(item["file"], f"{where}.file"))
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise f.fail(f"{where}.file", f"problem file not found: {path}")
    elif preset is not None:
        from ponder.problems import find_problem_file

        found = find_problem_file(PRESETS[preset])
        if found is None:
            raise f.fail(
                f"{where}.preset",
                f"{PRESETS[preset]} not found in the data folders; give its `file:`",
            )
        path = found
    else:
        raise f.fail(where, "a problem source needs `generated`, `file` or `preset`")
    kind = "preset" if preset is not None else "file"
    return ProblemSource(
        kind, {}, path=path, preset=preset, dataset=dataset, limit=limit, where=where
    )


def _model(f: _Fields, item: Any, where: str) -> ModelSpec:
    item = f.mapping(item, where)
    f.keys(item, ("name", "backend", "options"), where)
    if "name" not in item:
        raise f.fail(f"{where}.name", "missing (the model name recorded with every outcome)")
    name = f.text(item["name"], f"{where}.name")
    backend = item.get("backend", "llamacpp")
    if backend not in BACKEND_KINDS:
        raise f.fail(
            f"{where}.backend",
            f"unknown backend {backend!r}; expected one of {sorted(BACKEND_KINDS)}",
        )
    options = f.mapping(item.get("options") or {}, f"{where}.options")
    return ModelSpec(name, str(backend), dict(options), where=where)


def _strategies(
    f: _Fields, budgets: Any, reserve: int, budget_is_total: bool, think: bool
) -> tuple[Strategy, ...]:
    if budgets is None:
        if think:
            raise f.fail(
                "budgets",
                "missing: think needs {ladder: [...]}, {forced: [...]} or {native: [...]}",
            )
        return ()
    budgets = f.mapping(budgets, "budgets")
    f.keys(budgets, STRATEGY_KINDS, "budgets")
    if not budgets:
        raise f.fail("budgets", "give `ladder`, `forced` or `native` budgets")
    out: list[Strategy] = []
    for kind in STRATEGY_KINDS:
        if kind not in budgets:
            continue
        where = f"budgets.{kind}"
        raw = budgets[kind]
        if not isinstance(raw, list) or not raw:
            raise f.fail(where, f"must be a non-empty list of token budgets, got {raw!r}")
        values = [f.integer(v, f"{where}[{i}]", minimum=1) for i, v in enumerate(raw)]
        if budget_is_total:
            low = [v for v in values if v <= reserve]
            if low:
                raise f.fail(
                    where,
                    f"budget {low[0]} is not above the answer reserve ({reserve}): with "
                    "budget_is_total the thinking budget is the budget minus the reserve",
                )
            values = [v - reserve for v in values]
        try:
            if kind == "ladder":
                out.append(Strategy(kind, check_rungs(values, reserve)))
            else:
                check_rungs(sorted(set(values)), reserve)
                if len(set(values)) != len(values):
                    raise ValueError(f"budgets repeat: {raw}")
                out.extend(Strategy(kind, (v,)) for v in values)
        except ValueError as exc:
            message = str(exc).replace("ladder rungs", "rungs")
            raise f.fail(where, message) from exc
    return tuple(out)


def _sampling(f: _Fields, item: Any, where: str) -> SamplingSpec:
    item = f.mapping(item, where)
    f.keys(item, ("temperature", "top_p", "samples"), where)
    temperature = f.number(item.get("temperature", 0.0), f"{where}.temperature")
    if temperature < 0:
        raise f.fail(f"{where}.temperature", f"must be >= 0, got {temperature}")
    top_p = f.number(item.get("top_p", 1.0), f"{where}.top_p")
    if not 0 < top_p <= 1:
        raise f.fail(f"{where}.top_p", f"must be in (0, 1], got {top_p}")
    samples = f.integer(item.get("samples", 1), f"{where}.samples", minimum=1)
    if temperature == 0 and samples > 1:
        raise f.fail(
            f"{where}.samples", f"greedy decoding (temperature 0) repeats itself: samples {samples}"
        )
    return SamplingSpec(temperature, top_p, samples)
