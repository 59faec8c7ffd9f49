"""`ponder claims` as a user runs it: list, check the built-in sweep, write the report, and
fail with one clear line on bad input."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ponder.claims import claim_ids

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def builtin_store(ponder: Runner, tmp_path: Path) -> Path:
    from ponder.builtin import builtin_folder

    store = tmp_path / "s.sqlite"
    ponder("import", str(builtin_folder()), store=store, check_ok=True)
    return store


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_list_names_every_claim_in_suite_order(ponder: Runner) -> None:
    result = ponder("claims", "--list", "--json", check_ok=True)
    listed = json.loads(result.stdout)
    assert [c["id"] for c in listed] == claim_ids()
    assert [c["number"] for c in listed] == sorted(c["number"] for c in listed)
    assert all(c["hypothesis"] and c["needs"] for c in listed)
    text = ponder("claims", "--list", check_ok=True).stdout
    assert "overthinking" in text and "needs:" in text


def test_claims_on_the_builtin_sweep_give_verdicts_and_a_report(
    ponder: Runner, builtin_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "claims.html"
    result = ponder(
        "claims",
        "-c",
        "overthinking",
        "-c",
        "tier-or-difficulty",
        "--n-boot",
        "200",
        "-o",
        str(out),
        "--json",
        store=builtin_store,
        check_ok=True,
    )
    payload = json.loads(result.stdout)
    findings = payload["findings"]
    assert {f["claim"] for f in findings} == {"overthinking", "tier-or-difficulty"}
    assert {f["dataset"] for f in findings} == {"arith"}
    for f in findings:
        assert f["verdict"] in {"supported", "contradicted", "inconclusive", "insufficient"}
        if f["verdict"] != "insufficient":
            e = f["effect"]
            assert e["low"] <= e["value"] <= e["high"]
            assert f["n_problems"] >= 20
            assert f["protocol"]
    assert payload["settings"]["n_boot"] == 200
    html = out.read_text(encoding="utf-8")
    assert '<h2 id="claims">' in html
    assert 'id="claim-overthinking"' in html and 'id="claim-tier-or-difficulty"' in html
    tested = [f for f in findings if f["verdict"] != "insufficient"]
    assert tested, "the built-in sweep should test at least one of these claims"
    assert all(f["verdict"] in html for f in tested)

    table = ponder(
        "claims", "-c", "overthinking", "--n-boot", "200", store=builtin_store, check_ok=True
    ).stdout
    assert "5. " in table and "arith" in table
    assert "intervals)" in table.splitlines()[-1]

    markdown = ponder(
        "claims",
        "-c",
        "overthinking",
        "--n-boot",
        "200",
        "--markdown",
        store=builtin_store,
        check_ok=True,
    ).stdout
    assert markdown.startswith("### 5. Overthinking")
    rows = [line for line in markdown.splitlines() if line.startswith("| arith")]
    overthinking = [f for f in findings if f["claim"] == "overthinking" and f["effect"]]
    assert len(rows) == len(overthinking)
    for line, f in zip(rows, overthinking, strict=True):
        assert f"**{f['verdict']}**" in line and f["scope"] in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-c", "overthinkng"), "unknown claim 'overthinkng' (did you mean 'overthinking'?)"),
        (("-d", "aime42"), "aime42"),
        (("--model-facts", "missing.json"), "model facts file not found"),
        (("--ci", "1.5"), None),
    ],
)
def test_bad_input_fails_with_one_line(
    ponder: Runner, builtin_store: Path, args: tuple[str, ...], message: str | None
) -> None:
    result = ponder("claims", *args, store=builtin_store)
    if message is None:  # a usage error from the option parser
        assert result.returncode == 2
        assert "--ci" in result.stderr
        return
    assert result.returncode == 1
    assert message in _error_line(result.stderr)


def test_claims_on_a_missing_store_fail_without_creating_it(ponder: Runner, tmp_path: Path) -> None:
    store = tmp_path / "none.sqlite"
    result = ponder("claims", store=store)
    assert result.returncode == 1
    assert not store.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("overthinking", "-m", "m"), "has no experiment to run"),
        (("search-rounds", "-m", "m", "--positions", "2"), "--positions does not apply"),
        (("forking-tokens", "-m", "m", "--draws", "2"), "its options: --positions"),
        (("forking-tokens", "-m", "m", "-d", "arith"), "no think-greedy chains of model 'm'"),
        (("nope", "-m", "m"), "unknown claim 'nope'"),
    ],
)
def test_experiment_bad_input_fails_before_any_model_loads(
    ponder: Runner, builtin_store: Path, args: tuple[str, ...], message: str
) -> None:
    before = builtin_store.stat().st_mtime_ns
    result = ponder("experiment", *args, store=builtin_store)
    assert result.returncode == 1
    assert message in _error_line(result.stderr)
    assert builtin_store.stat().st_mtime_ns == before  # nothing written


def test_export_routing_writes_thinkless_jsonl(
    ponder: Runner, builtin_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "routing.jsonl"
    args = ("claims", "--export-routing", str(out), "-d", "arith", "-m", "qwen2.5-coder-1.5b")
    result = ponder(*args, "--json", store=builtin_store, check_ok=True)
    summary = json.loads(result.stdout)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == summary["written"] == summary["no_think"] + summary["think"] > 0
    for line in lines:
        user, assistant = line["messages"]
        assert user["role"] == "user" and user["content"]
        assert assistant["content"].startswith(line["control_token"])
        assert line["control_token"] == ("<short>" if line["mode"] == "no-think" else "<think>")
        assert line["model"] == "qwen2.5-coder-1.5b" and line["dataset"] == "arith"
    assert summary["written"] + summary["unsolved"] + summary["without_text"] == 160


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-d", "arith"), "--export-routing needs --model"),
        (("-m", "qwen2.5-coder-1.5b"), "exactly one dataset"),
        (("-d", "arith", "-m", "gpt-9"), "gpt-9"),
    ],
)
def test_export_routing_bad_input_writes_nothing(
    ponder: Runner, builtin_store: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "routing.jsonl"
    result = ponder("claims", "--export-routing", str(out), *args, store=builtin_store)
    assert result.returncode == 1
    assert message in _error_line(result.stderr)
    assert not out.exists()
