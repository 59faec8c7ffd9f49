"""Write one sweep of a store as a compact folder (Parquet, zstd) with a manifest.

The store may be written by a running sweep: it is first copied with SQLite's backup API
(one consistent snapshot; copying the file itself is not safe while it is written), and every
table is read from that copy. The folder is built beside the target and swapped into place,
so an interrupted export never leaves a half-written sweep.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ponder.builtin.reader import FILES, FORMAT, FORMAT_VERSION, MANIFEST
from ponder.errors import InputError, StoreError
from ponder.store import Store


def snapshot(store_path: Path) -> sqlite3.Connection:
    """An in-memory copy of the store at one moment (SQLite backup API, read-only source)."""
    with Store(store_path, create=False, readonly=True):
        pass  # a clear error for a missing, foreign or newer store
    source = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
    except sqlite3.Error as exc:
        copy.close()
        raise StoreError(f"{store_path}: cannot read the store ({exc})") from exc
    finally:
        source.close()
    return copy


def _arrow_table(rows: Sequence[tuple[Any, ...]], types: dict[str, str], where: Path) -> Any:
    import pyarrow as pa

    arrow = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bytes": pa.binary()}
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in types]
    arrays = []
    for (name, kind), values in zip(types.items(), columns, strict=True):
        try:
            arrays.append(pa.array(list(values), type=arrow[kind]))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InputError(f"values are not {kind}: {exc}", path=where, field=name) from exc
    return pa.Table.from_arrays(arrays, names=list(types))


def _git_commit() -> str | None:
    """The commit of the source checkout ponder runs from (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _models(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each model of the spec with the sha256 of its weights when they are pinned."""
    from ponder.models.registry import MODELS

    out: dict[str, dict[str, Any]] = {}
    for model in spec.get("models") or []:
        options = model.get("options") or {}
        pinned = MODELS.get(str(options.get("model", model.get("name"))))
        out[str(model.get("name"))] = {
            "backend": model.get("backend"),
            "weights": None if pinned is None else pinned.filename,
            "sha256": None if pinned is None else pinned.sha256,
        }
    return out


def export_sweep(
    store_path: Path,
    sweep_id: str,
    out: Path,
    *,
    command: str | None = None,
    balanced: bool = False,
) -> dict[str, Any]:
    """Write the sweep ``sweep_id`` of the store into the folder ``out``; returns the manifest.

    Only the sweep's own runs (source ``sweep:<id>``) are written: their outcome rows with
    the signal columns, the problems they refer to, the runs and the chains. ``balanced``
    keeps only problems that every model has reached alike (the same modes and samples), so
    a snapshot of a running sweep compares the models on the same problems.
    """
    from ponder import __version__
    from ponder.store.schema import PROBLEM_STORE_COLUMNS
    from ponder.store.sqlite import CHAIN_COLUMNS, SWEEP_OUTCOME_COLUMNS

    conn = snapshot(store_path)
    try:
        spec_row = conn.execute(
            "SELECT spec_json FROM sweeps WHERE sweep_id = ?", (sweep_id,)
        ).fetchone()
        if spec_row is None:
            known = [r[0] for r in conn.execute("SELECT sweep_id FROM sweeps ORDER BY 1")]
            raise InputError(
                f"no sweep {sweep_id!r} in this store; sweeps in it: {', '.join(known) or 'none'}",
                path=store_path,
            )
        spec = json.loads(spec_row[0])
        run_rows = conn.execute(
            f"SELECT {', '.join(FILES['runs.parquet'])} FROM runs WHERE source = ? ORDER BY run_id",
            (f"sweep:{sweep_id}",),
        ).fetchall()
        run_ids = [r[0] for r in run_rows]
        conn.execute("CREATE TEMP TABLE chosen (run_id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO chosen VALUES (?)", [(r,) for r in run_ids])
        outcome_rows = conn.execute(
            f"SELECT {', '.join(SWEEP_OUTCOME_COLUMNS)} FROM outcomes "
            "WHERE run_id IN (SELECT run_id FROM chosen) ORDER BY rowid"
        ).fetchall()
        if not outcome_rows:
            raise InputError(f"sweep {sweep_id!r} has no outcome rows yet", path=store_path)
        problem_rows = conn.execute(
            f"SELECT {', '.join('p.' + c for c in PROBLEM_STORE_COLUMNS)} FROM problems p "
            "WHERE EXISTS (SELECT 1 FROM outcomes o WHERE o.dataset = p.dataset AND "
            "o.problem_id = p.problem_id AND o.run_id IN (SELECT run_id FROM chosen)) "
            "ORDER BY p.dataset, p.problem_id"
        ).fetchall()
        chain_rows = conn.execute(
            f"SELECT {', '.join(CHAIN_COLUMNS)} FROM chains "
            "WHERE run_id IN (SELECT run_id FROM chosen) ORDER BY chain_id"
        ).fetchall()
        items = dict(
            conn.execute(
                "SELECT status, COUNT(*) FROM work_items WHERE sweep_id = ? GROUP BY status",
                (sweep_id,),
            ).fetchall()
        )
    finally:
        conn.close()
    dropped = 0
    dropped_slots: list[list[Any]] = []
    if balanced:
        n_models = len({r[1] for r in run_rows})
        kept = _balanced_problems(outcome_rows, n_models)
        slots = _complete_slots(outcome_rows, n_models)
        every = {(str(r[1]), str(r[2])) for r in outcome_rows}
        if slots and len(every) > len(kept):
            # More problems survive by dropping the (mode, sample) slots some model has not
            # reached everywhere yet (e.g. the sampled pass while the greedy one is complete):
            # power comes from problems, so keep them all and only the complete slots.
            at = _outcome_index()
            present = {(r[at["mode"]], r[at["sample_idx"]]) for r in outcome_rows}
            dropped_slots = sorted([m, i] for m, i in present - slots)
            outcome_rows = [
                r for r in outcome_rows if (r[at["mode"]], r[at["sample_idx"]]) in slots
            ]
            chains_kept = {r[at["chain_id"]] for r in outcome_rows}
            chain_rows = [r for r in chain_rows if r[0] in chains_kept]
            runs_kept = {r[at["run_id"]] for r in outcome_rows}
            run_rows = [r for r in run_rows if r[0] in runs_kept]
        else:
            dropped = len(every) - len(kept)
            outcome_rows = [r for r in outcome_rows if (r[1], r[2]) in kept]
            problem_rows = [r for r in problem_rows if (r[0], r[1]) in kept]
            chain_rows = [r for r in chain_rows if (r[2], r[3]) in kept]
        if not outcome_rows:
            raise InputError(
                f"sweep {sweep_id!r} has no problem that every model has reached yet "
                "(export without --balanced)",
                path=store_path,
            )
    assert list(FILES["outcomes.parquet"]) == list(SWEEP_OUTCOME_COLUMNS)
    assert list(FILES["chains.parquet"]) == list(CHAIN_COLUMNS)
    tables = {
        "outcomes.parquet": outcome_rows,
        "problems.parquet": problem_rows,
        "runs.parquet": run_rows,
        "chains.parquet": chain_rows,
    }
    return _write_folder(
        out,
        tables,
        manifest={
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sweep": sweep_id,
            "spec": spec,
            "counts": {
                **_counts(outcome_rows, problem_rows, run_rows, chain_rows, items),
                "work_items_planned": planned_items(spec),
                "balanced": balanced,
                "problems_dropped_unbalanced": dropped,
                "slots_dropped_unbalanced": dropped_slots,
            },
            "produced": {
                "ponder_version": __version__,
                "git_commit": _git_commit(),
                "engine": {"llama-cpp-python": _version("llama-cpp-python")},
                "models": _models(spec),
                "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": command,
                "sweep_command": f"ponder sweep run <spec of {sweep_id}> --store <store>",
            },
        },
        store_path=store_path,
    )


def _outcome_index() -> dict[str, int]:
    names = list(FILES["outcomes.parquet"])
    columns = ("dataset", "problem_id", "model", "mode", "sample_idx", "chain_id", "run_id")
    return {c: names.index(c) for c in columns}


def _complete_slots(outcomes: Sequence[tuple[Any, ...]], n_models: int) -> set[tuple[Any, Any]]:
    """(mode, sample) slots that every model has reached on every problem."""
    at = _outcome_index()
    problems = {(r[at["dataset"]], r[at["problem_id"]]) for r in outcomes}
    reached: dict[tuple[Any, Any], set[tuple[Any, ...]]] = {}
    for row in outcomes:
        slot = (row[at["mode"]], row[at["sample_idx"]])
        reached.setdefault(slot, set()).add(
            (row[at["dataset"]], row[at["problem_id"]], row[at["model"]])
        )
    need = len(problems) * n_models
    return {slot for slot, seen in reached.items() if len(seen) == need}


def _balanced_problems(outcomes: Sequence[tuple[Any, ...]], n_models: int) -> set[tuple[str, str]]:
    """Problems whose every (mode, sample) has rows of all ``n_models`` models."""
    at = _outcome_index()
    models: dict[tuple[Any, ...], set[str]] = {}
    for row in outcomes:
        key = (row[at["dataset"]], row[at["problem_id"]], row[at["mode"]], row[at["sample_idx"]])
        models.setdefault(key, set()).add(row[at["model"]])
    complete: dict[tuple[str, str], bool] = {}
    for (dataset, problem, _, _), seen in models.items():
        pair = (str(dataset), str(problem))
        complete[pair] = complete.get(pair, True) and len(seen) == n_models
    return {pair for pair, ok in complete.items() if ok}


def planned_items(spec: dict[str, Any]) -> int | None:
    """Work items of the whole sweep, from its recorded spec, when every problem source is
    generated (so the problem count is known without the files); else None."""
    problems = 0
    for source in spec.get("problems") or []:
        options = source.get("options") or {}
        if source.get("kind") != "generated":
            return None
        count = len(options.get("levels") or []) * int(options.get("per_level") or 0)
        limit = source.get("limit")
        problems += count if limit is None else min(count, int(limit))
    per_mode = {"think": len(spec.get("strategies") or []), "no-think": 1}
    modes = sum(per_mode.get(str(m), 0) for m in spec.get("modes") or [])
    samples = sum(int(s.get("samples", 1)) for s in spec.get("sampling") or [])
    return problems * len(spec.get("models") or []) * modes * samples


def _counts(
    outcomes: Sequence[tuple[Any, ...]],
    problems: Sequence[tuple[Any, ...]],
    runs: Sequence[tuple[Any, ...]],
    chains: Sequence[tuple[Any, ...]],
    items: dict[str, int],
) -> dict[str, Any]:
    names = list(FILES["outcomes.parquet"])
    model_at, mode_at = names.index("model"), names.index("mode")
    per: dict[str, dict[str, int]] = {}
    for row in outcomes:
        modes = per.setdefault(str(row[model_at]), {})
        modes[str(row[mode_at])] = modes.get(str(row[mode_at]), 0) + 1
    return {
        "outcomes": len(outcomes),
        "problems": len(problems),
        "runs": len(runs),
        "chains": len(chains),
        "work_items_done": int(items.get("done", 0)),
        "work_items_error": int(items.get("error", 0)),
        "outcomes_per_model_mode": {m: dict(sorted(v.items())) for m, v in sorted(per.items())},
    }


def _write_folder(
    out: Path,
    tables: Mapping[str, Sequence[tuple[Any, ...]]],
    *,
    manifest: dict[str, Any],
    store_path: Path,
) -> dict[str, Any]:
    import pyarrow.parquet as pq

    out = out.resolve()
    staging = out.with_name(f".{out.name}.{os.getpid()}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        files: dict[str, dict[str, Any]] = {}
        for name, rows in tables.items():
            table = _arrow_table(rows, FILES[name], store_path)
            path = staging / name
            pq.write_table(table, path, compression="zstd", compression_level=19)
            raw = path.read_bytes()
            files[name] = {
                "sha256": hashlib.sha256(raw).hexdigest(),
                "bytes": len(raw),
                "rows": len(rows),
            }
        manifest = {**manifest, "files": files, "bytes": sum(f["bytes"] for f in files.values())}
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        if out.exists():
            if not (out / MANIFEST).is_file() and any(out.iterdir()):
                raise InputError(
                    "exists and is not a sweep folder: refusing to replace it", path=out
                )
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
