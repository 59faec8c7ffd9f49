"""`ponder serve`: the OpenAI-compatible proxy that applies fitted policies per request."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder.cli._common import err_console
from ponder.errors import InputError

if TYPE_CHECKING:
    from ponder.serve.dispatch import Served
    from ponder.serve.upstreams import UpstreamSpec

KEYS_ENV = "PONDER_API_KEYS"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _models_in(state: Any) -> set[str]:
    """Every model a fitted policy's saved plans name (configs anywhere in its state)."""
    found: set[str] = set()
    if isinstance(state, dict):
        if isinstance(state.get("model"), str) and "mode" in state:
            found.add(state["model"])
        for value in state.values():
            found |= _models_in(value)
    elif isinstance(state, list):
        for value in state:
            found |= _models_in(value)
    return found


def load_served(entries: list[str], decide_as: str | None) -> list[Served]:
    """`[NAME=]PATH` entries as served policies (NAME defaults to the file's stem)."""
    from ponder.policies.serialization import load_policy
    from ponder.serve.dispatch import Served

    out: list[Served] = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = Path(entry).stem, entry
        if not name or not Path(path).is_file():
            raise InputError(f"--policy {entry!r}: no policy file at {path!r}")
        policy = load_policy(path)
        if not policy.servable:
            raise InputError(f"--policy {name}: {policy.name} is an upper bound, not servable")
        out.append(Served(name, policy, decide_as))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise InputError(f"policy names must be unique (NAME=PATH to rename): {names}")
    return out


async def _check_upstreams(specs: list[UpstreamSpec]) -> None:
    """Each upstream answers and serves its model, before the server starts."""
    from ponder.serve.upstreams import Upstream

    for spec in specs:
        upstream = Upstream.open(spec)
        try:
            served = await upstream.models()
        except Exception as exc:
            raise InputError(f"--upstream {spec.name}: {getattr(exc, 'message', exc)}") from None
        finally:
            await upstream.aclose()
        if spec.model not in served:
            raise InputError(
                f"--upstream {spec.name}: {spec.base_url} does not serve model {spec.model!r} "
                f"(it serves: {', '.join(served) or 'nothing'}); add ,model=ID"
            )


def serve_command(
    upstream: Annotated[
        list[str],
        typer.Option(
            help="NAME=URL[,key=value...]: an OpenAI-compatible engine serving model NAME "
            "(repeatable). Options: model=ID (its name there), engine=vllm|sglang|llamacpp|"
            "ollama|openai|generic, api_key_env=VAR, timeout_s, max_retries, concurrency."
        ),
    ],
    policy: Annotated[
        list[str] | None,
        typer.Option(help="[NAME=]PATH of a fitted policy, served as model ponder/NAME."),
    ] = None,
    fallback: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=OTHER: when upstream NAME fails (unreachable, 5xx, timeout), serve "
            "the request on upstream OTHER (repeatable)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless keys are set).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    keys: Annotated[
        Path | None,
        typer.Option(help=f"API key file (JSON); or set ${KEYS_ENV} to comma-separated keys."),
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Log every request to this store (for recalibrate).")
    ] = None,
    explore: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of single-turn ponder/ requests whose plan also runs in full in the "
            "background, logged for `ponder recalibrate` (needs --store).",
        ),
    ] = 0.0,
    log_prompts: Annotated[
        bool, typer.Option("--log-prompts", help="Also store the prompts' text in the log.")
    ] = False,
    decide_as: Annotated[
        str | None, typer.Option(help="Dataset name policies see when deciding.")
    ] = None,
    reserve: Annotated[int, typer.Option(min=1, help="Answer reserve of plans (tokens).")] = 16,
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Largest request body accepted (413 beyond).")
    ] = 1_000_000,
    reasoning_field: Annotated[
        str, typer.Option(help="Field for reasoning text: reasoning_content or reasoning.")
    ] = "reasoning_content",
    check: Annotated[
        bool, typer.Option(help="Check at start that every upstream serves its model.")
    ] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve an OpenAI-compatible API that gives each request the compute its policy decides.

    Model `ponder/NAME` runs policy NAME's plan for the request (mode, budget, probes, early
    exit, escalation, votes) on the upstreams; any upstream NAME is passed through as is.
    Responses carry OpenAI `usage` (reasoning tokens included, summed over every internal
    call) and `x-ponder-*` headers. Without API keys the server binds to loopback only.

    \b
    Examples:
      ponder serve --upstream qwen=http://127.0.0.1:8080/v1 --policy pe=fitted.json
      ponder serve --upstream small=http://gpu1:8000/v1,engine=vllm,model=Qwen/Qwen3-1.7B \\
          --upstream large=http://gpu2:8000/v1,engine=vllm,model=Qwen/Qwen3-8B \\
          --policy cascade.json --keys keys.json --host 0.0.0.0 --store serve.sqlite
    """
    try:
        import uvicorn

        from ponder.serve.app import REASONING_FIELDS as _  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"ponder serve needs the serve extra ({exc.name} is missing): "
            "pip install 'ponder[serve]'"
        ) from None
    from ponder.serve.app import REASONING_FIELDS, ServeConfig, create_app
    from ponder.serve.limits import load_keys
    from ponder.serve.upstreams import parse_upstream

    if reasoning_field not in REASONING_FIELDS:
        raise InputError(f"--reasoning-field must be one of {', '.join(REASONING_FIELDS)}")
    specs = [parse_upstream(u) for u in upstream]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError(f"upstream names must be unique: {names}")
    fallbacks: dict[str, str] = {}
    for entry in fallback or []:
        name, sep, other = entry.partition("=")
        if not sep or name not in names or other not in names or name == other:
            raise InputError(
                f"--fallback {entry!r}: expected NAME=OTHER, two different upstream names "
                f"(upstreams: {', '.join(names)})"
            )
        fallbacks[name] = other
    served = load_served(policy or [], decide_as)
    for s in served:
        missing = sorted(_models_in(s.policy.get_state()) - set(names))
        if missing:
            raise InputError(
                f"policy {s.name} uses model(s) {missing}: add --upstream NAME=URL for each"
            )
    if explore > 0 and store is None:
        raise InputError("--explore needs --store (explored requests are logged there)")
    key_list = load_keys(keys, os.environ.get(KEYS_ENV))
    if not key_list and not _is_loopback(host):
        raise InputError(
            f"no API keys: ponder serve binds to loopback only (give --keys FILE or set "
            f"${KEYS_ENV} to serve on {host})"
        )
    if check:
        asyncio.run(_check_upstreams(specs))
    used: dict[str, int] = {}
    if store is not None and key_list:
        from ponder.serve.records import used_tokens

        used = used_tokens(store, key_list)
    config = ServeConfig(
        upstreams=specs,
        policies=served,
        keys=key_list,
        max_body_bytes=max_body_bytes,
        reserve=reserve,
        reasoning_field=reasoning_field,
        store=store,
        log_prompts=log_prompts,
        used_tokens=used,
        fallbacks=fallbacks,
        explore=explore,
    )
    models = [s.model_id for s in served] + names
    err_console.print(
        f"ponder serve on http://{host}:{port}/v1: models {', '.join(models)}; "
        f"keys: {len(key_list) or 'none (loopback only)'}",
        highlight=False,
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
