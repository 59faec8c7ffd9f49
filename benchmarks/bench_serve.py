"""What ``ponder serve`` costs in front of an engine: added latency, throughput, first byte.

One run starts a real engine (llama-cpp-python's server on SmolLM2-135M, one thread, loopback)
and ``python -m ponder serve`` in front of it, the upstream passed through under its own name,
then measures, always alternating direct and proxied calls so that other load on the machine
hits both alike:

- latency    N pairs of one non-streamed request with ``max_tokens=1``, direct then proxied
             or proxied then direct in turn; p50/p99 of each, and of (proxied - direct) per
             pair. Targets: the added latency <= 2 ms at p50, <= 10 ms at p99. The CPU time
             of the proxy and of the engine per request over those pairs is printed too:
             other load on the machine moves it much less than wall time;
- throughput requests/s of 1, 8 and 32 concurrent clients (``max_tokens=1``) for a fixed time
             per cell, run in ABBA slices (direct, proxied, proxied, direct), and the ratio
             proxied / direct. Target >= 0.95. The engine serves one request at a time;
- streaming  a streamed pass-through (``max_tokens=32``) in alternating pairs: p50 of the
             time to the first event, to the first content token and to the stream's end.

``max_tokens=1`` on a repeated prompt (the engine reuses its cached prefix) is the engine's
least work per request, a few milliseconds: the proxy's share of the time is at its largest,
so these are worst-case ratios for a pass-through.

Figures are noisy on a small machine shared with other work (a 2-core box running a sweep in
the background moves them by milliseconds): the load average at the start and the end is
printed with them, and only figures from the same run should be compared.

Run: ``PONDER_MODELS_DIR=DIR .venv/bin/python benchmarks/bench_serve.py [--pairs 200]
[--seconds 10] [--stream-pairs 20] [--json]``, the model from ``ponder models pull
smollm2-135m``; about two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from servers import engine_and_proxy

from ponder import paths

MODEL = "smollm2-135m"
MESSAGES = [{"role": "user", "content": "Name one colour."}]
TARGETS = {"added_p50_ms": 2.0, "added_p99_ms": 10.0, "throughput_ratio": 0.95}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Servers:
    """The engine and the proxy in front of it: base URLs (``.../v1``) and pids."""

    direct: str
    proxied: str
    engine_pid: int
    proxy_pid: int


@contextmanager
def servers(model_path: Path, workdir: Path) -> Iterator[Servers]:
    """Start the engine, then the proxy; both stopped by pid on leaving."""
    with engine_and_proxy(model_path, MODEL, 512, ",engine=llamacpp", [], workdir) as run:
        yield Servers(run.engine_url, run.proxy_url, run.engine_pid, run.proxy_pid)


def body(max_tokens: int, stream: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


async def one_call(client: httpx.AsyncClient, url: str, max_tokens: int = 1) -> float:
    """Seconds of one non-streamed completion; raises on a failure."""
    started = time.perf_counter()
    response = await client.post(f"{url}/chat/completions", json=body(max_tokens))
    seconds = time.perf_counter() - started
    response.raise_for_status()
    if not response.json().get("choices"):
        raise RuntimeError(f"no choices from {url}: {response.text[:200]}")
    return seconds


async def latency(run: Servers, pairs: int) -> dict[str, Any]:
    """Alternating pairs; warm-up pairs (connections, the engine's prompt cache) not kept.

    CPU time of each process over the kept pairs, per request it handled, is a figure that
    other load on the machine moves much less than wall time."""
    direct, proxied = run.direct, run.proxied
    direct_s: list[float] = []
    proxied_s: list[float] = []
    cpu_start: tuple[float | None, float | None] = (None, None)
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(10 + pairs):
            if i == 10:
                cpu_start = (cpu_seconds(run.proxy_pid), cpu_seconds(run.engine_pid))
            if i % 2 == 0:
                d = await one_call(client, direct)
                p = await one_call(client, proxied)
            else:
                p = await one_call(client, proxied)
                d = await one_call(client, direct)
            if i >= 10:
                direct_s.append(d)
                proxied_s.append(p)
    cpu_end = (cpu_seconds(run.proxy_pid), cpu_seconds(run.engine_pid))
    added = [p - d for d, p in zip(direct_s, proxied_s, strict=True)]
    cpu: dict[str, float | None] = {"proxy_ms_per_request": None, "engine_ms_per_request": None}
    (proxy_0, engine_0), (proxy_1, engine_1) = cpu_start, cpu_end
    if pairs and None not in (proxy_0, engine_0, proxy_1, engine_1):
        assert proxy_0 is not None and proxy_1 is not None
        assert engine_0 is not None and engine_1 is not None
        cpu = {
            "proxy_ms_per_request": 1000 * (proxy_1 - proxy_0) / pairs,
            "engine_ms_per_request": 1000 * (engine_1 - engine_0) / (2 * pairs),
        }

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50_ms": 1000 * percentile(values, 50), "p99_ms": 1000 * percentile(values, 99)}

    return {
        "pairs": pairs,
        "direct": ms(direct_s),
        "proxied": ms(proxied_s),
        "added": ms(added),
        "cpu": cpu,
    }


async def load_slice(
    url: str, concurrency: int, seconds: float, max_tokens: int
) -> tuple[int, int]:
    """(requests completed within `seconds`, failures) of `concurrency` looping clients."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        deadline = time.perf_counter() + seconds
        done = failed = 0

        async def worker() -> None:
            nonlocal done, failed
            while time.perf_counter() < deadline:
                try:
                    await one_call(client, url, max_tokens)
                except (httpx.HTTPError, RuntimeError, ValueError):
                    failed += 1
                    continue
                if time.perf_counter() <= deadline:
                    done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, failed


async def throughput(
    direct: str, proxied: str, seconds: float, max_tokens: int
) -> list[dict[str, Any]]:
    cells = []
    for concurrency in (1, 8, 32):
        counts = {"direct": [0, 0], "proxied": [0, 0]}
        for side in ("direct", "proxied", "proxied", "direct"):
            done, failed = await load_slice(
                direct if side == "direct" else proxied, concurrency, seconds / 2, max_tokens
            )
            counts[side][0] += done
            counts[side][1] += failed
        direct_rps = counts["direct"][0] / seconds
        proxied_rps = counts["proxied"][0] / seconds
        cells.append(
            {
                "concurrency": concurrency,
                "direct_rps": direct_rps,
                "proxied_rps": proxied_rps,
                "ratio": proxied_rps / direct_rps if direct_rps else float("nan"),
                "errors": counts["direct"][1] + counts["proxied"][1],
            }
        )
    return cells


async def first_byte(client: httpx.AsyncClient, url: str) -> tuple[float, float, float]:
    """Seconds to the first event, to the first content token and to the end of one stream."""
    started = time.perf_counter()
    first_event: float | None = None
    first_token: float | None = None
    async with client.stream("POST", f"{url}/chat/completions", json=body(32, True)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            now = time.perf_counter() - started
            if first_event is None:
                first_event = now
            data = line[5:].strip()
            if first_token is None and data != "[DONE]":
                choices = json.loads(data).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first_token = now
    if first_event is None or first_token is None:
        raise RuntimeError(f"a stream from {url} sent no content")
    return first_event, first_token, time.perf_counter() - started


async def streaming(direct: str, proxied: str, pairs: int) -> dict[str, Any]:
    times: dict[str, list[tuple[float, float, float]]] = {"direct": [], "proxied": []}
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(2 + pairs):
            order = ("direct", "proxied") if i % 2 == 0 else ("proxied", "direct")
            for side in order:
                measured = await first_byte(client, direct if side == "direct" else proxied)
                if i >= 2:
                    times[side].append(measured)
    out: dict[str, Any] = {"pairs": pairs}
    for side, values in times.items():
        out[side] = {
            "first_event_p50_ms": 1000 * percentile([v[0] for v in values], 50),
            "first_token_p50_ms": 1000 * percentile([v[1] for v in values], 50),
            "whole_p50_ms": 1000 * percentile([v[2] for v in values], 50),
        }
    return out


def print_table(result: dict[str, Any]) -> None:
    lat, cells, stream = result["latency"], result["throughput"], result["streaming"]
    load = result["load_average"]
    print(
        f"ponder serve overhead, {result['date']}, {result['cores']} cores, "
        f"load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end"
    )
    print(f"\nlatency, max_tokens=1, {lat['pairs']} alternating pairs")
    print(f"  {'':<22} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("direct", "proxied"):
        print(f"  {name:<22} {lat[name]['p50_ms']:>8.2f} {lat[name]['p99_ms']:>8.2f}")
    added = lat["added"]
    print(
        f"  {'added (proxied-direct)':<22} {added['p50_ms']:>8.2f} {added['p99_ms']:>8.2f}"
        f"   target <= {TARGETS['added_p50_ms']:g} / <= {TARGETS['added_p99_ms']:g}"
    )
    cpu = lat["cpu"]
    if cpu["proxy_ms_per_request"] is not None:
        print(
            f"  CPU per request: proxy {cpu['proxy_ms_per_request']:.2f} ms, "
            f"engine {cpu['engine_ms_per_request']:.2f} ms"
        )
    tokens = result["throughput_tokens"]
    print(f"\nthroughput, max_tokens={tokens}, {result['seconds']:g} s per cell (ABBA slices)")
    print(f"  {'clients':>7} {'direct/s':>9} {'proxied/s':>10} {'ratio':>6} {'errors':>7}")
    for c in cells:
        print(
            f"  {c['concurrency']:>7} {c['direct_rps']:>9.1f} {c['proxied_rps']:>10.1f} "
            f"{c['ratio']:>6.3f} {c['errors']:>7}"
        )
    print(f"  target ratio >= {TARGETS['throughput_ratio']:g}")
    print(f"\nstreamed pass-through, max_tokens=32, {stream['pairs']} alternating pairs, p50")
    print(f"  {'':<8} {'first event ms':>15} {'first token ms':>15} {'whole stream ms':>16}")
    for name in ("direct", "proxied"):
        s = stream[name]
        print(
            f"  {name:<8} {s['first_event_p50_ms']:>15.2f} {s['first_token_p50_ms']:>15.2f} "
            f"{s['whole_p50_ms']:>16.2f}"
        )


async def measure(run: Servers, args: argparse.Namespace) -> dict[str, Any]:
    lat = await latency(run, args.pairs)
    return {
        "latency": lat,
        "throughput": await throughput(
            run.direct, run.proxied, args.seconds, args.throughput_tokens
        ),
        "streaming": await streaming(run.direct, run.proxied, args.stream_pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200, help="latency pairs")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per throughput cell")
    parser.add_argument("--stream-pairs", type=int, default=20, help="streamed pairs")
    parser.add_argument(
        "--throughput-tokens",
        type=int,
        default=1,
        help="max_tokens of the throughput requests (1: the proxy's worst case)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    model_path = paths.models_dir() / f"{MODEL}.gguf"
    if not model_path.is_file():
        raise SystemExit(f"no model at {model_path}: ponder models pull {MODEL}")
    started = time.perf_counter()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, servers(model_path, Path(tmp)) as run:
        figures = asyncio.run(measure(run, args))
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "seconds": args.seconds,
        "throughput_tokens": args.throughput_tokens,
        "targets": TARGETS,
        **figures,
        "wall_s": time.perf_counter() - started,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
        print(f"\nwall time {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
