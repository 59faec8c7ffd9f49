"""CPU that ``ponder serve`` spends on one passed-through request, against the floor.

Starts three processes on loopback: a minimal OpenAI-compatible upstream (a raw ASGI app on
uvicorn, canned replies, no model), ``python -m ponder serve`` in front of it (upstream ``up``
passed through), and a bare forwarder of ~30 lines (raw ASGI on uvicorn + one
``httpx.AsyncClient``: the body in, the reply out, nothing parsed), what a straightforward
Python proxy on this stack pays. Then, in rounds that alternate the proxies so that other
load on the machine hits them alike, it sends ``max_tokens=1`` chat completions to each:

- ``seq``     N sequential non-streamed requests;
- ``seq-sse`` N sequential streamed requests (three events and ``[DONE]``; ponder also gets
              and drops the usage event it asks the upstream for);
- ``c8``      N non-streamed requests from 8 concurrent clients;
- ``c8-sse``  N streamed requests from 8 concurrent clients.

For each cell it prints the proxy process's CPU time (user + system, from ``/proc/<pid>/stat``)
per request: the median over rounds for each proxy, and ponder's over the bare forwarder's.
CPU time is what background load moves least (wall time on a busy 2-core box moves by
milliseconds); only figures from one run should be compared.

``--baseline DIR`` also runs ``ponder serve`` from another checkout (its ``src/`` first on
``PYTHONPATH``, e.g. ``git worktree add /tmp/before HEAD~1``), so that before and after are
measured in the same run.

Run: ``.venv/bin/python benchmarks/bench_serve_cpu.py [-n 300] [--rounds 3] [--baseline DIR]
[--json]`` (about a minute with the defaults; Linux only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from servers import free_port, stop, wait_until_up

MODEL = "up"
CELLS = ("seq", "seq-sse", "c8", "c8-sse")
Asgi = Callable[..., Awaitable[None]]


# -- the upstream and the bare forwarder (each run as its own process) -------------------------


def _reply(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """(content type, body) of the upstream's canned answer to a chat completion."""
    head = {"id": "cmpl-1", "created": 1700000000, "model": body.get("model", MODEL)}
    usage = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "Blue"}
        choice = {"index": 0, "message": message, "finish_reason": "length", "logprobs": None}
        data = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        return b"application/json", json.dumps(data).encode()
    chunk = {**head, "object": "chat.completion.chunk"}
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": "Blue"}, None)]
    events = [
        {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": f}]}
        for d, f in [*deltas, ({}, "length")]
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**chunk, "choices": [], "usage": usage})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return b"text/event-stream", text.encode()


async def _read(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /v1/models`` and ``POST /v1/chat/completions``, canned and cheap."""
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/models"):
        kind, out = b"application/json", json.dumps({"data": [{"id": MODEL}]}).encode()
    else:
        kind, out = _reply(json.loads(await _read(receive)))
    headers = [(b"content-type", kind)]
    if kind == b"application/json":  # as engines answer: a length, not chunks
        headers.append((b"content-length", str(len(out)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def bare_forwarder(upstream: str) -> Asgi:
    """The floor: forward the body to the upstream, relay the reply (streamed when asked)."""
    client = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = await _read(receive)
        headers = {"content-type": "application/json"}
        request = client.build_request("POST", "/chat/completions", content=body, headers=headers)
        response = await client.send(request, stream=True)
        kind = response.headers.get("content-type", "application/json").encode()
        start = {"type": "http.response.start", "status": response.status_code}
        await send({**start, "headers": [(b"content-type", kind)]})
        try:
            async for piece in response.aiter_raw():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        finally:
            await response.aclose()
        await send({"type": "http.response.body", "body": b""})

    return app


def serve(app: Asgi, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- measuring ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def payload(stream: bool) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Name one colour."}]
    return {"model": MODEL, "messages": messages, "max_tokens": 1, "stream": stream}


async def one(client: httpx.AsyncClient, url: str, stream: bool) -> None:
    """One request, read to the end; raises unless it was whole."""
    async with client.stream("POST", f"{url}/chat/completions", json=payload(stream)) as reply:
        raw = await reply.aread()
    if reply.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {reply.status_code}: {raw[:200]!r}")
    if stream and not raw.rstrip().endswith(b"data: [DONE]"):
        raise RuntimeError(f"{url}: a stream without its end: {raw[-200:]!r}")
    if not stream and b'"choices"' not in raw:
        raise RuntimeError(f"{url}: no choices: {raw[:200]!r}")


async def cell(client: httpx.AsyncClient, url: str, pid: int, name: str, n: int) -> float:
    """CPU ms per request the process at `pid` spent on `n` requests of cell `name`."""
    stream = name.endswith("-sse")
    workers = 8 if name.startswith("c8") else 1
    left = n
    before = cpu_seconds(pid)

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(client, url, stream)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return 1000 * (cpu_seconds(pid) - before) / n


async def measure(proxies: dict[str, tuple[str, int]], n: int, rounds: int) -> dict[str, Any]:
    """Per cell and proxy, the CPU ms per request of every round (proxies alternate)."""
    figures: dict[str, dict[str, list[float]]] = {c: {p: [] for p in proxies} for c in CELLS}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for url, _ in proxies.values():  # warm-up: connections, imports, first-call caches
            for stream in (False, True) * 20:
                await one(client, url, stream)
        for r in range(rounds):
            order = list(proxies) if r % 2 == 0 else list(reversed(proxies))
            for name in CELLS:
                for proxy in order:
                    url, pid = proxies[proxy]
                    figures[name][proxy].append(await cell(client, url, pid, name, n))
    return figures


def report(figures: dict[str, dict[str, list[float]]], as_json: bool) -> None:
    medians = {c: {p: statistics.median(v) for p, v in f.items()} for c, f in figures.items()}
    if as_json:
        print(json.dumps({"rounds": figures, "median_ms": medians}, indent=2))
        return
    names = list(next(iter(figures.values())))
    head = "".join(f"{name + ' ms':>13}" for name in names)
    print(f"{'cell':<8}{head} {'ponder/bare':>12}   rounds ({' | '.join(names)})")
    for cell_name, by in medians.items():
        values = "".join(f"{by[name]:>13.3f}" for name in names)
        rounds = " | ".join(" ".join(f"{v:.2f}" for v in figures[cell_name][n]) for n in names)
        ratio = by["ponder"] / by["bare"]
        print(f"{cell_name:<8}{values} {ratio:>12.2f}   {rounds}")


def commands(ports: dict[str, int], baseline: Path | None) -> dict[str, list[str]]:
    """How to start each server; `baseline`: also ``ponder serve`` from that source tree."""
    upstream = f"http://127.0.0.1:{ports['upstream']}/v1"
    me = [sys.executable, __file__, "--port"]

    def ponder(port: int) -> list[str]:
        return [
            sys.executable, "-m", "ponder", "serve", "--upstream", f"{MODEL}={upstream}",
            "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip

    out = {
        "upstream": [*me, str(ports["upstream"]), "--role", "upstream"],
        "ponder": ponder(ports["ponder"]),
        "bare": [*me, str(ports["bare"]), "--role", "bare", "--upstream", upstream],
    }
    if baseline is not None:
        out["baseline"] = ponder(ports["baseline"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also measure `ponder serve` from this checkout (its src/ goes first on "
        "PYTHONPATH), e.g. a `git worktree` of an earlier commit: before and after in one run",
    )
    parser.add_argument("--role", choices=("upstream", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        return serve(upstream_app, args.port)
    if args.role == "bare":
        return serve(bare_forwarder(args.upstream), args.port)
    names = ["upstream", "ponder", "bare"] + (["baseline"] if args.baseline else [])
    ports = {name: free_port() for name in names}
    ready = {
        "upstream": "/v1/models",
        "ponder": "/health",
        "bare": "/health",
        "baseline": "/health",
    }
    env = {k: v for k, v in os.environ.items() if k != "PONDER_API_KEYS"}
    started: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pids = {}
            for name, command in commands(ports, args.baseline).items():
                log = Path(tmp) / f"{name}.log"
                own_env = env
                if name == "baseline":
                    src = str(args.baseline.resolve() / "src")
                    own_env = {
                        **env,
                        "PYTHONPATH": os.pathsep.join([src, env.get("PYTHONPATH", "")]),
                    }
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        command, stdout=out, stderr=subprocess.STDOUT, env=own_env
                    )
                started.append(proc)
                wait_until_up(proc, f"http://127.0.0.1:{ports[name]}{ready[name]}", log, name)
                pids[name] = proc.pid
            proxies = {
                name: (f"http://127.0.0.1:{ports[name]}/v1", pids[name])
                for name in names
                if name != "upstream"
            }
            load = os.getloadavg()[0]
            figures = asyncio.run(measure(proxies, args.n, args.rounds))
            if not args.json:
                print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; n={args.n}")
            report(figures, args.json)
        finally:
            for proc in reversed(started):
                stop(proc)


if __name__ == "__main__":
    main()
