"""Design study for issue 12: today's SQLite + pandas path against a Parquet mirror
aggregated by DuckDB or by pyarrow's Acero, on synthetic outcome rows.

Every measured step runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own;
``rss0`` is the bare interpreter and the ``baseline`` step shows what the imports (pandas,
pyarrow, duckdb, ponder.store) add. Steps at ``--rows`` (default 1e6):

- gen         synthetic rows (``benchmarks/synthetic.py``) to a CSV for ``ponder import`` and
              to one Parquet file in the mirror schema (setup, untimed in the ratios);
- import      ``import_paths`` of the CSV into a fresh SQLite store (today's import);
- pandas      ``Store.outcomes_frame()`` (load), then the per problem x configuration
              sufficient statistics as a pandas groupby of that frame, and the cell quantiles
              of output_tokens the cell table reports (median, p90);
- write       the same rows as Parquet partitioned by dataset/model (pyarrow write_dataset),
              then partitioned by dataset only, then as one file (all zstd);
- compact     SQLite -> the same partitioned Parquet, streamed in chunks (the mirror's path:
              DuckDB's sqlite scanner is a network-downloaded extension, see ``probes``);
- duckdb / acero  the sufficient-statistics GROUP BY over the Parquet dataset;
- lists       DuckDB: per (problem, configuration) the samples' correct, tokens and answers
              as lists ordered by sample_idx (what sequential policies replay);
- quantiles   DuckDB: per-cell quantile_cont of output_tokens, and the exact token histogram;
- csv         CSV -> partitioned Parquet through pyarrow.csv and DuckDB read_csv (no ponder
              validation: the reader speed an Arrow/DuckDB import would start from);
- probes      DuckDB's sqlite scanner offline, hive partition names with '/' and ' ', and
              the one-line errors both readers give for a bad CSV value;
- check       the engines' statistics compared with pandas' (integer-valued sums must be equal).

At ``--big-rows`` (default 1e7) only the out-of-core engines run: rows are generated in 1e6-row
chunks (model names prefixed per chunk, so problems x configurations grow with the rows) and
written chunk by chunk to partitioned Parquet; then duckdb, acero and lists run over it.

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_columnar_study.py [--rows N]
[--big-rows N | --skip-big] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHUNK_ROWS = 1_000_000  # rows per generated chunk of the big dataset
FETCH_ROWS = 1 << 16  # rows per SQLite fetch while compacting
PARTITION_KEYS = ("dataset", "model")
# The mirror's row schema (dataset and model become hive directories); SQLite's INTEGER
# columns become int32/int8, REAL stays float64, so every stored value round-trips.
MIRROR_TYPES: dict[str, str] = {
    "run_id": "string",
    "dataset": "string",
    "problem_id": "string",
    "model": "string",
    "mode": "string",
    "budget": "int32",
    "sample_idx": "int32",
    "prompt_tokens": "int32",
    "reasoning_tokens": "int32",
    "answer_tokens": "int32",
    "output_tokens": "int32",
    "latency_s": "float64",
    "truncated": "int8",
    "answered": "int8",
    "extracted_answer": "string",
    "correct": "float64",
    "n_runs": "int32",
    "budget_kind": "string",
}
CSV_COLUMNS = [*MIRROR_TYPES, "level"]
# One row of sufficient statistics per (problem, configuration, sample-or-aggregate).
STATS_KEYS = ["dataset", "model", "mode", "budget", "budget_kind", "problem_id", "sample"]
# name -> (aggregate, column): count of rows, of non-null values, sum, count of correct == 1.
STATS: dict[str, tuple[str, str]] = {
    "rows": ("size", "correct"),
    "correct_n": ("count", "correct"),
    "correct_sum": ("sum", "correct"),
    "hits": ("sum", "hit"),
    "out_n": ("count", "output_tokens"),
    "out_sum": ("sum", "output_tokens"),
    "prompt_sum": ("sum", "prompt_tokens"),
    "reasoning_sum": ("sum", "reasoning_tokens"),
    "answer_sum": ("sum", "answer_tokens"),
    "truncated_n": ("count", "truncated"),
    "truncated_sum": ("sum", "truncated"),
    "answered_n": ("count", "answered"),
    "answered_sum": ("sum", "answered"),
    "latency_n": ("count", "latency_s"),
    "latency_sum": ("sum", "latency_s"),
}
FLOAT_STATS = ("latency_sum",)  # not integer-valued: summation order may change the last bits
CELL = ["model", "dataset", "mode", "budget"]


# -- child side: one measured step ------------------------------------------------------------


def rss_mib() -> float:
    """Current resident set size."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Named wall-clock laps of one step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.info: dict[str, Any] = {}

    def lap(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        self.seconds[name] = time.perf_counter() - start
        return out


def mirror_schema() -> Any:
    import pyarrow as pa

    return pa.schema([(name, pa.type_for_alias(t)) for name, t in MIRROR_TYPES.items()])


def partitioning(keys: tuple[str, ...] = PARTITION_KEYS) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    return ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive")


def to_mirror(frame: Any) -> Any:
    """An outcome frame (numbers as float64 with NaN) as an Arrow table of the mirror schema."""
    import pyarrow as pa

    schema = mirror_schema()
    arrays = [pa.array(frame[f.name], from_pandas=True).cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_partitioned(
    data: Any,
    folder: Path,
    basename: str,
    schema: Any = None,
    keys: tuple[str, ...] = PARTITION_KEYS,
) -> None:
    """Rows (a table or an iterator of batches) as hive-partitioned, zstd Parquet files."""
    import pyarrow.dataset as ds

    ds.write_dataset(
        data,
        folder,
        schema=schema,
        format="parquet",
        partitioning=partitioning(keys),
        basename_template=basename + "-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        max_partitions=100_000,
    )


def step_gen(folder: Path, n: int, clock: Clock) -> None:
    import numpy as np
    import pyarrow.parquet as pq
    from synthetic import synthetic_outcomes

    frame = clock.lap("generate", lambda: synthetic_outcomes(n, seed=0))
    csv = frame[[c for c in CSV_COLUMNS if c in frame.columns]].copy()
    for name in ("budget", "prompt_tokens", "reasoning_tokens", "answer_tokens", "output_tokens"):
        csv[name] = csv[name].astype("Int64")
    csv["level"] = csv["level"].astype("Int64")
    csv["correct"] = csv["correct"].astype(np.int64)
    csv["truncated"] = csv["truncated"].astype(bool)
    csv["answered"] = csv["answered"].astype(bool)
    clock.lap("write_csv", lambda: csv.to_csv(folder / "sweep.csv", index=False))
    clock.lap("write_source", lambda: pq.write_table(to_mirror(frame), folder / "source.parquet"))
    clock.info["models"] = int(frame["model"].nunique())
    clock.info["configs"] = int(frame.groupby(CELL, dropna=False).ngroups)


def step_import(folder: Path, n: int, clock: Clock) -> None:
    from ponder.importers import import_paths
    from ponder.store.sqlite import Store

    with Store(folder / "store.sqlite") as store:
        items = clock.lap("import", lambda: import_paths(store, [folder / "sweep.csv"]))
        result = items[0].result
        assert result is not None and result.outcomes_added == n, result
    clock.info["sqlite_mib"] = (folder / "store.sqlite").stat().st_size / 2**20


def pandas_stats(frame: Any) -> Any:
    """The sufficient statistics as a pandas groupby of the outcome frame."""
    work = frame[[c for c in STATS_KEYS if c != "sample"]].copy()
    work["sample"] = (frame["n_runs"] == 1).to_numpy()
    for column in {col for _, col in STATS.values()} - {"hit"}:
        work[column] = frame[column]
    work["hit"] = (frame["correct"] == 1.0).astype("float64")
    grouped = work.groupby(STATS_KEYS, dropna=False, observed=True, sort=False)
    return grouped.agg(**{name: (col, how) for name, (how, col) in STATS.items()}).reset_index()


def pandas_quantiles(frame: Any) -> Any:
    """Median and p90 of output_tokens per cell, as ``ponder.curves.aggregate`` computes them."""
    tokens = frame.groupby(CELL, dropna=False, observed=True, sort=True)["output_tokens"]
    out = tokens.median().rename("median").to_frame()
    out["p90"] = tokens.quantile(0.9)
    return out.reset_index()


def step_pandas(folder: Path, n: int, clock: Clock) -> None:
    from ponder.store.sqlite import Store

    with Store(folder / "store.sqlite", readonly=True) as store:
        frame = clock.lap("load", store.outcomes_frame)
    assert len(frame) == n
    clock.info["rss_after_load_mib"] = peak_mib()
    clock.info["frame_mib"] = float(frame.memory_usage(deep=True).sum()) / 2**20
    stats = clock.lap("groupby", lambda: pandas_stats(frame))
    quantiles = clock.lap("quantiles", lambda: pandas_quantiles(frame))
    clock.info["groups"] = len(stats)
    stats.to_parquet(folder / "stats_pandas.parquet")
    quantiles.to_parquet(folder / "quantiles_pandas.parquet")


def step_write(folder: Path, n: int, clock: Clock) -> None:
    import pyarrow.parquet as pq

    table = clock.lap("read_source", lambda: pq.read_table(folder / "source.parquet"))
    assert table.num_rows == n
    clock.lap("write", lambda: write_partitioned(table, folder / "parquet", "part"))
    by_dataset = folder / "by_dataset"
    clock.lap(
        "write_by_dataset", lambda: write_partitioned(table, by_dataset, "part", None, ("dataset",))
    )
    single = folder / "single.parquet"
    clock.lap("write_one_file", lambda: pq.write_table(table, single, compression="zstd"))
    clock.info["parquet_mib"] = tree_mib(folder / "parquet")
    clock.info["files"] = sum(1 for _ in (folder / "parquet").rglob("*.parquet"))


def tree_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def sqlite_batches(path: Path) -> Iterator[Any]:
    """The stored outcomes joined with their run's budget kind, as mirror-schema batches."""
    import pyarrow as pa

    schema = mirror_schema()
    columns = ", ".join(f"r.{c}" if c == "budget_kind" else f"o.{c}" for c in MIRROR_TYPES)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute(
            f"SELECT {columns} FROM outcomes o JOIN runs r USING (run_id) ORDER BY o.rowid"
        )
        while rows := cursor.fetchmany(FETCH_ROWS):
            arrays = [
                pa.array(values, type=f.type)
                for f, values in zip(schema, zip(*rows, strict=True), strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    finally:
        conn.close()


def step_compact(folder: Path, n: int, clock: Clock) -> None:
    out = folder / "mirror"
    clock.lap(
        "compact",
        lambda: write_partitioned(
            sqlite_batches(folder / "store.sqlite"), out, "part", schema=mirror_schema()
        ),
    )
    clock.info["parquet_mib"] = tree_mib(out)


def parquet_sql(source: Path) -> str:
    """DuckDB's reader of a hive-partitioned mirror (partition values always text)."""
    return (
        f"read_parquet('{source}/**/*.parquet', hive_partitioning = true, "
        "hive_types = {'dataset': VARCHAR, 'model': VARCHAR})"
    )


def duckdb_connect() -> Any:
    import duckdb

    return duckdb.connect(config={"threads": 2})


def setting(conn: Any, name: str) -> Any:
    return conn.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]


def duckdb_stats_sql(source: Path) -> str:
    aggregates = {
        "size": "count(*)",
        "count": "count({c})",
        "sum": "sum({c})",
    }
    parts = []
    for name, (how, column) in STATS.items():
        if column == "hit":
            expr = "count_if(correct = 1)"
        else:
            expr = aggregates[how].format(c=column)
            if how == "sum" and MIRROR_TYPES[column].startswith("int"):
                expr += "::BIGINT"
        parts.append(f"{expr} AS {name}")
    keys = ", ".join(k if k != "sample" else "n_runs = 1 AS sample" for k in STATS_KEYS)
    return f"SELECT {keys}, {', '.join(parts)} FROM {parquet_sql(source)} GROUP BY ALL"


def step_duckdb(folder: Path, source: str, clock: Clock) -> None:
    import pyarrow.parquet as pq

    conn = duckdb_connect()
    sql = duckdb_stats_sql(folder / source)
    table = clock.lap("groupby", lambda: conn.sql(sql).to_arrow_table())
    clock.info["groups"] = table.num_rows
    clock.info["stats_mib"] = table.nbytes / 2**20
    clock.info["memory_limit"] = setting(conn, "memory_limit")
    pq.write_table(table, folder / f"stats_duckdb_{source}.parquet")


def acero_stats(dataset: Any) -> Any:
    """The sufficient statistics as a streaming Acero plan: scan -> project -> hash aggregate."""
    import pyarrow as pa
    import pyarrow.acero as ac
    import pyarrow.compute as pc

    inputs = sorted({col for _, col in STATS.values()} - {"hit"})
    projected = [pc.field(k) for k in STATS_KEYS if k != "sample"]
    projected.append(pc.equal(pc.field("n_runs"), 1))
    widen = {c: pa.int64() if MIRROR_TYPES[c].startswith("int") else None for c in inputs}
    projected += [pc.field(c).cast(t) if t else pc.field(c) for c, t in widen.items()]
    projected.append(pc.equal(pc.field("correct"), 1.0).cast(pa.int64()))
    names = [*STATS_KEYS, *inputs, "hit"]
    count_all, count_valid = pc.CountOptions("all"), pc.CountOptions("only_valid")
    options = {"size": count_all, "count": count_valid, "sum": None}
    kinds = {"size": "hash_count", "count": "hash_count", "sum": "hash_sum"}
    aggregates = [(col, kinds[how], options[how], name) for name, (how, col) in STATS.items()]
    columns = [*[k for k in STATS_KEYS if k not in (*PARTITION_KEYS, "sample")], "n_runs"]
    columns += [c for c in inputs if c not in columns]
    plan = ac.Declaration.from_sequence(
        [
            ac.Declaration("scan", ac.ScanNodeOptions(dataset, columns=columns)),
            ac.Declaration("project", ac.ProjectNodeOptions(projected, names=names)),
            ac.Declaration("aggregate", ac.AggregateNodeOptions(aggregates, keys=STATS_KEYS)),
        ]
    )
    return plan.to_table(use_threads=True)


def step_acero(folder: Path, source: str, clock: Clock) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dataset = ds.dataset(folder / source, format="parquet", partitioning=partitioning())
    table = clock.lap("groupby", lambda: acero_stats(dataset))
    clock.info["groups"] = table.num_rows
    pq.write_table(table, folder / f"stats_acero_{source}.parquet")


def step_lists(folder: Path, source: str, clock: Clock) -> None:
    conn = duckdb_connect()
    ordered = ", ".join(
        f"list({c} ORDER BY sample_idx) AS {c}" for c in ("correct", "output_tokens")
    )
    sql = (
        f"SELECT dataset, problem_id, model, mode, budget, {ordered}, "
        "list(extracted_answer ORDER BY sample_idx) AS answers "
        f"FROM {parquet_sql(folder / source)} WHERE n_runs = 1 GROUP BY ALL"
    )
    table = clock.lap("lists", lambda: conn.sql(sql).to_arrow_table())
    clock.info["groups"] = table.num_rows
    clock.info["lists_mib"] = table.nbytes / 2**20


def step_quantiles(folder: Path, source: str, clock: Clock) -> None:
    import pyarrow.parquet as pq

    conn = duckdb_connect()
    keys = ", ".join(CELL)
    read = parquet_sql(folder / source)
    sql = (
        f"SELECT {keys}, quantile_cont(output_tokens, 0.5) AS median, "
        f"quantile_cont(output_tokens, 0.9) AS p90 FROM {read} GROUP BY ALL"
    )
    table = clock.lap("quantile_cont", lambda: conn.sql(sql).to_arrow_table())
    pq.write_table(table, folder / "quantiles_duckdb.parquet")
    hist = f"SELECT {keys}, output_tokens, count(*) AS n FROM {read} GROUP BY ALL"
    histogram = clock.lap("histogram", lambda: conn.sql(hist).to_arrow_table())
    clock.info["histogram_rows"] = histogram.num_rows


def step_csv(folder: Path, n: int, clock: Clock) -> None:
    csv = folder / "sweep.csv"
    arrow_csv_to_parquet(csv, folder / "csv_arrow", n, clock)
    conn = duckdb_connect()
    copy = (
        f"COPY (SELECT * FROM read_csv('{csv}', header = true)) TO '{folder / 'csv_duck'}' "
        "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dataset, model))"
    )
    clock.lap("duckdb_copy", lambda: conn.execute(copy))


def arrow_csv_to_parquet(csv: Path, out: Path, n: int, clock: Clock) -> None:
    """pyarrow.csv with the mirror's column types, then the partitioned write."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    types = {c: t for c, t in mirror_schema_types().items() if c in CSV_COLUMNS}
    types["truncated"] = types["answered"] = pa.bool_()
    types["level"] = pa.int32()
    options = pcsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    table = clock.lap("pyarrow_read", lambda: pcsv.read_csv(csv, convert_options=options))
    assert table.num_rows == n
    clock.lap("pyarrow_write", lambda: write_partitioned(table, out, "part"))


def mirror_schema_types() -> dict[str, Any]:
    return {f.name: f.type for f in mirror_schema()}


def step_probes(folder: Path, n: int, clock: Clock) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pcsv

    conn = duckdb_connect()
    conn.execute("SET autoinstall_known_extensions = false")
    try:
        conn.execute("LOAD sqlite")
        clock.info["sqlite_scanner"] = "loads offline"
    except duckdb.Error as exc:
        clock.info["sqlite_scanner"] = "needs a download: " + str(exc).splitlines()[0][:120]
    odd = pa.table({"dataset": ["a"], "model": ["org/model x"], "v": [1]})
    write_partitioned(odd, folder / "odd", "part")
    back = conn.sql(f"SELECT model FROM {parquet_sql(folder / 'odd')}").fetchall()
    clock.info["partition_name_roundtrip"] = back == [("org/model x",)]
    bad = folder / "bad.csv"
    bad.write_text("problem_id,output_tokens\np1,12\np2,12\np3,twelve\n")
    try:
        conn.sql(
            f"SELECT * FROM read_csv('{bad}', columns = {{'problem_id': 'VARCHAR', "
            "'output_tokens': 'INTEGER'}, header = true)"
        ).fetchall()
    except duckdb.Error as exc:
        clock.info["duckdb_csv_error"] = " | ".join(str(exc).splitlines()[:3])[:300]
    options = pcsv.ConvertOptions(column_types={"output_tokens": pa.int32()})
    try:
        pcsv.read_csv(bad, convert_options=options)
    except pa.ArrowInvalid as exc:
        clock.info["pyarrow_csv_error"] = str(exc).splitlines()[0][:300]


def big_chunks(n: int, deep: bool) -> Iterator[tuple[int, Any]]:
    """1e6-row synthetic chunks. Wide: model names prefixed per chunk, so problems x
    configurations grow with the rows. Deep: the same models, sample_idx shifted per chunk, so
    the rows are more samples of the same problems x configurations."""
    from synthetic import synthetic_outcomes

    for chunk, start in enumerate(range(0, n, CHUNK_ROWS)):
        frame = synthetic_outcomes(min(CHUNK_ROWS, n - start), seed=chunk)
        if deep:
            frame["sample_idx"] += 16 * chunk  # synthetic draws at most 16 seeds
        else:
            prefix = f"c{chunk:03d}-"
            frame["model"] = prefix + frame["model"].astype(str)
            frame["run_id"] = prefix + frame["run_id"].astype(str)
        yield chunk, frame


def gen_chunks(folder: Path, n: int, clock: Clock, deep: bool) -> None:
    """Write the chunks one by one to the partitioned dataset (generation timed apart)."""
    generate = write = 0.0
    t0 = time.perf_counter()
    for chunk, frame in big_chunks(n, deep):
        table = to_mirror(frame)
        del frame
        t1 = time.perf_counter()
        write_partitioned(table, folder, f"chunk{chunk:03d}")
        t2 = time.perf_counter()
        generate, write = generate + t1 - t0, write + t2 - t1
        t0 = time.perf_counter()
    clock.seconds["generate"] = generate
    clock.seconds["write"] = write
    clock.info["parquet_mib"] = tree_mib(folder)
    clock.info["files"] = sum(1 for _ in folder.rglob("*.parquet"))


def step_gen_big(folder: Path, n: int, clock: Clock) -> None:
    gen_chunks(folder / "big", n, clock, deep=False)


def step_gen_deep(folder: Path, n: int, clock: Clock) -> None:
    gen_chunks(folder / "deep", n, clock, deep=True)


def step_duckdb_capped(folder: Path, source: str, clock: Clock) -> None:
    """The GROUP BY under a 512 MB memory limit (DuckDB spills to its temp directory)."""
    conn = duckdb_connect()
    conn.execute("SET memory_limit = '512MB'")
    conn.execute(f"SET temp_directory = '{folder / 'spill'}'")
    sql = duckdb_stats_sql(folder / source)
    out = folder / f"stats_capped_{source}.parquet"
    copy = f"COPY ({sql}) TO '{out}' (FORMAT parquet)"
    clock.lap("groupby_to_parquet", lambda: conn.execute(copy))
    clock.info["groups"] = conn.execute(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]


def normalized(path: Path) -> Any:
    """A stats table with float budgets, nulls as the pandas groupby gives them, sorted."""
    import pandas as pd

    frame = pd.read_parquet(path)
    frame["budget"] = frame["budget"].astype("float64")
    for name, (how, _) in STATS.items():
        values = frame[name].astype("float64")
        frame[name] = values.fillna(0.0) if how == "sum" else values
    for key in STATS_KEYS:
        if key not in ("budget", "sample"):
            frame[key] = frame[key].astype(str)
    frame["sample"] = frame["sample"].astype(bool)
    return frame.sort_values(STATS_KEYS, na_position="last").reset_index(drop=True)


def compare(reference: Path, other: Path) -> dict[str, Any]:
    """Which statistics equal the reference exactly, and the float ones' largest relative gap."""
    import numpy as np

    a, b = normalized(reference), normalized(other)
    if len(a) != len(b):
        return {"same_groups": False, "rows": [len(a), len(b)]}
    keys_equal = all(a[k].equals(b[k]) for k in STATS_KEYS)
    exact = {name: bool(np.array_equal(a[name], b[name])) for name in STATS}
    gaps = {}
    for name in FLOAT_STATS:
        x, y = a[name].to_numpy(), b[name].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            gaps[name] = float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-300)))
    integer_exact = all(v for k, v in exact.items() if k not in FLOAT_STATS)
    return {"same_groups": keys_equal, "integer_exact": integer_exact, "float_gap": gaps}


def step_check(folder: Path, n: int, clock: Clock) -> None:
    import numpy as np
    import pandas as pd

    reference = folder / "stats_pandas.parquet"
    for name in ("duckdb_parquet", "duckdb_mirror", "acero_parquet"):
        path = folder / f"stats_{name}.parquet"
        if path.exists():
            clock.info[name] = compare(reference, path)
    q = [pd.read_parquet(folder / f"quantiles_{e}.parquet") for e in ("pandas", "duckdb")]
    for frame in q:
        frame["budget"] = frame["budget"].astype("float64")
    merged = q[0].merge(q[1], on=CELL, suffixes=("_pd", "_db"), how="outer")
    clock.info["quantile_cells"] = len(merged)
    for column in ("median", "p90"):
        same = np.asarray(merged[f"{column}_pd"]) == np.asarray(merged[f"{column}_db"])
        clock.info[f"{column}_cells_bit_equal"] = int(same.sum())


def step_check_big(folder: Path, n: int, clock: Clock) -> None:
    """Acero and the memory-capped DuckDB against DuckDB, on both big datasets."""
    pairs = {
        "acero_vs_duckdb_big": ("duckdb_big", "acero_big"),
        "capped_vs_duckdb_big": ("duckdb_big", "capped_big"),
        "acero_vs_duckdb_deep": ("duckdb_deep", "acero_deep"),
    }
    for name, (a, b) in pairs.items():
        paths = [folder / f"stats_{x}.parquet" for x in (a, b)]
        if all(p.exists() for p in paths):
            clock.info[name] = compare(*paths)


def step_baseline(folder: Path, n: int, clock: Clock) -> None:
    """Only the imports every step pays for, to read the other steps' RSS against."""
    import duckdb  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.dataset  # noqa: F401

    import ponder.store.sqlite  # noqa: F401


ROW_STEPS: dict[str, Callable[[Path, int, Clock], None]] = {
    "baseline": step_baseline,
    "gen": step_gen,
    "import": step_import,
    "pandas": step_pandas,
    "write": step_write,
    "compact": step_compact,
    "csv": step_csv,
    "probes": step_probes,
    "check": step_check,
    "gen_big": step_gen_big,
    "gen_deep": step_gen_deep,
    "check_big": step_check_big,
}
SOURCE_STEPS: dict[str, Callable[[Path, str, Clock], None]] = {
    "duckdb": step_duckdb,
    "acero": step_acero,
    "lists": step_lists,
    "quantiles": step_quantiles,
    "duckdb_capped": step_duckdb_capped,
}


def child(step: str, folder: Path, n: int, source: str) -> None:
    clock = Clock()
    clock.info["rss0_mib"] = rss_mib()
    if step in SOURCE_STEPS:
        SOURCE_STEPS[step](folder, source, clock)
    else:
        ROW_STEPS[step](folder, n, clock)
    clock.info["peak_mib"] = peak_mib()
    print("RESULT " + json.dumps({"seconds": clock.seconds, "info": clock.info}), flush=True)


# -- parent side: run the steps, print the table ----------------------------------------------


def run(step: str, folder: Path, n: int, source: str = "parquet") -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", step, "--dir", str(folder), "--rows", str(n)]
    proc = subprocess.run([*args, "--source", source], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    out: dict[str, Any] = json.loads(line[len("RESULT ") :])
    out["step"], out["n"], out["source"] = step, n, source
    return out


def show(result: dict[str, Any]) -> None:
    info = result["info"]
    laps = "  ".join(
        f"{k} {v:.2f}s ({result['n'] / v / 1e6:.2f} M rows/s)" for k, v in result["seconds"].items()
    )
    label = (
        f"{result['step']}[{result['source']}]"
        if result["step"] in SOURCE_STEPS
        else result["step"]
    )
    print(
        f"{result['n']:>9,} {label:<18} peak {info['peak_mib']:>6.0f} MiB "
        f"(rss0 {info['rss0_mib']:>4.0f})  {laps}"
    )
    extra = {k: v for k, v in info.items() if k not in ("peak_mib", "rss0_mib")}
    if extra:
        print(f"{'':>10}{json.dumps(extra)}")


def versions() -> str:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    load = os.getloadavg()[0]
    return (
        f"cpus={os.cpu_count()} load1={load:.1f} python={platform.python_version()} "
        f"sqlite={sqlite3.sqlite_version} pandas={pd.__version__} pyarrow={pa.__version__} "
        f"duckdb={duckdb.__version__}"
    )


def ratio(a: dict[str, Any], lap_a: str, b: dict[str, Any], lap_b: str) -> float:
    return float(a["seconds"][lap_a] / b["seconds"][lap_b])


def seconds(results: dict[str, dict[str, Any]], key: str, lap: str) -> float:
    return float(results[key]["seconds"][lap])


def peak(results: dict[str, dict[str, Any]], key: str) -> float:
    return float(results[key]["info"]["peak_mib"])


def ratio_lines(r: dict[str, dict[str, Any]]) -> list[tuple[str, float]]:
    """Today's path against the columnar one, at --rows."""
    duck = seconds(r, "duckdb_parquet", "groupby")
    load = seconds(r, "pandas", "load")
    return [
        (
            "SQLite import / Parquet write of the rows",
            seconds(r, "import", "import") / seconds(r, "write", "write"),
        ),
        (
            "dataset/model partitioned / one-file write",
            seconds(r, "write", "write") / seconds(r, "write", "write_one_file"),
        ),
        (
            "SQLite import / DuckDB CSV->Parquet",
            seconds(r, "import", "import") / seconds(r, "csv", "duckdb_copy"),
        ),
        (
            "compaction SQLite->Parquet / SQLite import",
            seconds(r, "compact", "compact") / seconds(r, "import", "import"),
        ),
        ("outcomes_frame load / DuckDB GROUP BY", load / duck),
        (
            "load + pandas groupby / DuckDB GROUP BY",
            (load + seconds(r, "pandas", "groupby")) / duck,
        ),
        ("pandas groupby alone / DuckDB GROUP BY", seconds(r, "pandas", "groupby") / duck),
        ("Acero / DuckDB GROUP BY", seconds(r, "acero_parquet", "groupby") / duck),
        ("peak RSS load+pandas / DuckDB", peak(r, "pandas") / peak(r, "duckdb_parquet")),
        ("peak RSS Acero / DuckDB", peak(r, "acero_parquet") / peak(r, "duckdb_parquet")),
    ]


def big_lines(r: dict[str, dict[str, Any]], big: dict[str, dict[str, Any]]) -> list[Any]:
    """How the out-of-core engines grow from --rows to --big-rows (wide and deep)."""
    lines = []
    for engine in ("duckdb", "acero"):
        for shape in ("big", "deep"):
            key = f"{engine}_{shape}"
            if key in big:
                small = f"{engine}_parquet"
                lines.append(
                    (
                        f"{engine} {shape}/small: time",
                        seconds(big, key, "groupby") / seconds(r, small, "groupby"),
                    )
                )
                lines.append((f"{engine} {shape}/small: peak RSS", peak(big, key) / peak(r, small)))
    if "acero_big" in big:
        lines.append(
            (
                "Acero / DuckDB GROUP BY, big",
                seconds(big, "acero_big", "groupby") / seconds(big, "duckdb_big", "groupby"),
            )
        )
    return lines


def print_ratios(r: dict[str, dict[str, Any]], big: dict[str, dict[str, Any]]) -> None:
    print("\nratios (one run):")
    for text, value in ratio_lines(r) + big_lines(r, big):
        print(f"  {text:<46} {value:6.2f}x")


BIG_PLAN: list[tuple[str, str]] = [
    ("gen_big", "big"),
    ("duckdb", "big"),
    ("acero", "big"),
    ("lists", "big"),
    ("duckdb_capped", "big"),
    ("gen_deep", "deep"),
    ("duckdb", "deep"),
    ("acero", "deep"),
    ("check_big", "big"),
]


def parent(args: argparse.Namespace) -> None:
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ponder-columnar-"))
    base.mkdir(parents=True, exist_ok=True)
    print(versions())
    small, big_dir = base / "small", base / "big"
    for folder in (small, big_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    n = args.rows
    results: dict[str, dict[str, Any]] = {}
    plan: list[tuple[str, str]] = [
        ("baseline", "parquet"),
        ("gen", "parquet"),
        ("import", "parquet"),
        ("pandas", "parquet"),
        ("write", "parquet"),
        ("compact", "parquet"),
        ("duckdb", "parquet"),
        ("duckdb", "mirror"),
        ("acero", "parquet"),
        ("lists", "parquet"),
        ("quantiles", "parquet"),
        ("csv", "parquet"),
        ("probes", "parquet"),
        ("check", "parquet"),
    ]
    for step, source in plan:
        result = run(step, small, n, source)
        key = f"{step}_{source}" if step in SOURCE_STEPS else step
        results[key] = result
        show(result)
    big: dict[str, dict[str, Any]] = {}
    if not args.skip_big:
        for step, source in BIG_PLAN:
            result = run(step, big_dir, args.big_rows, source)
            big[f"{step}_{source}" if step in SOURCE_STEPS else step] = result
            show(result)
    print_ratios(results, big)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--source", default="parquet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.dir), args.rows, args.source)
    else:
        parent(args)


if __name__ == "__main__":
    main()
