"""`ponder serve` refuses bad flags before it binds anything: one line, exit status 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from ponder.decision import Config, Step
from ponder.errors import InputError
from ponder.policies.early_exit import ProbeEscalate
from ponder.policies.serialization import save_policy

UP = "small=http://127.0.0.1:9/v1"


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ponder", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """ponder's command line, in this process (its commands registered once)."""
    from ponder.cli import _register, app

    if not any(c.name == "serve" for c in app.registered_commands):
        _register()
    return app


@pytest.fixture
def policy_on_big(tmp_path: Path) -> Path:
    policy = ProbeEscalate(1e-3)
    step = Step(Config("big", "no-think-greedy", None))
    policy.set_state(
        {"steps": [step.to_dict()], "units": [], "train_accuracy": 0.5, "train_cost": 3.0,
         "reached": [1.0]}
    )  # fmt: skip
    policy.fingerprint_, policy.n_problems_fitted_ = "test", 0
    return save_policy(policy, tmp_path / "pe.json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "small"], "expected NAME=URL"),
        (["--upstream", "small=ftp://x"], "must be an http(s) URL"),
        (["--upstream", f"{UP},colour=red"], "bad option 'colour=red'"),
        (["--upstream", UP, "--upstream", UP], "upstream names must be unique"),
        (["--upstream", UP, "--fallback", "small=spare"], "--fallback 'small=spare'"),
        (["--upstream", UP, "--policy", "nowhere.json"], "no policy file"),
        (["--upstream", UP, "--reasoning-field", "thoughts"], "--reasoning-field"),
        (["--upstream", UP, "--explore", "0.1"], "--explore needs --store"),
    ],
)
def test_bad_flags_are_refused_before_anything_starts(
    cli: typer.Typer, args: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli, ["serve", *args, "--no-check"])
    assert isinstance(result.exception, InputError), result.output
    assert message in str(result.exception)


def test_a_public_host_without_keys_exits_with_one_line() -> None:
    result = _serve("--upstream", UP, "--host", "0.0.0.0", "--no-check")
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "loopback only" in lines[0]


def test_a_policy_needing_a_model_without_upstream_is_refused(policy_on_big: Path) -> None:
    result = _serve("--upstream", UP, "--policy", f"pe={policy_on_big}", "--no-check")
    assert result.returncode == 1
    assert "uses model(s) ['big']" in result.stderr and "--upstream" in result.stderr


def test_an_unreachable_upstream_is_refused_at_start() -> None:
    result = _serve("--upstream", f"{UP},max_retries=0")
    assert result.returncode == 1
    assert "upstream 'small' is unreachable" in result.stderr
