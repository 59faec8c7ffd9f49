"""API keys, token budgets and rate limits, on a hand-driven clock."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from ponder.errors import InputError
from ponder.serve.limits import KeyPolicy, KeyRing, Limiter, LimitError, hash_key, load_keys

SECRET = "sk-alpha-0123456789"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def policy(**kwargs: Any) -> KeyPolicy:
    return KeyPolicy(**{"name": "alice", "sha256": digest(SECRET), **kwargs})


def write_keys(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- key loading --------------------------------------------------------------------------


def test_load_keys_from_file_and_env(tmp_path: Path) -> None:
    path = write_keys(
        tmp_path,
        {
            "keys": [
                {"name": "alice", "key": SECRET, "token_budget": 5000, "requests_per_minute": 30},
                {"name": "bob", "sha256": digest("sk-bob-secret").upper(), "budget_period_s": 60},
            ]
        },
    )
    keys = load_keys(path, " sk-env-one , sk-env-two")
    assert [key.name for key in keys] == ["alice", "bob", "key-1", "key-2"]
    alice, bob, env1, env2 = keys
    assert alice.sha256 == digest(SECRET)
    assert (alice.token_budget, alice.requests_per_minute, alice.budget_period_s) == (
        5000,
        30.0,
        86400.0,
    )
    assert bob.sha256 == digest("sk-bob-secret")  # stored lower-case
    assert (bob.token_budget, bob.budget_period_s, bob.requests_per_minute) == (None, 60.0, None)
    assert env1.sha256 == digest("sk-env-one") and env2.sha256 == digest("sk-env-two")
    assert env1.token_budget is None and env1.requests_per_minute is None
    assert hash_key("sk-env-one") == env1.sha256


def test_no_sources_no_keys() -> None:
    assert load_keys(None, None) == []
    assert load_keys(None, "  ") == []


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "a", "key": "k1", "tokens": 5}, "keys[1]"),
        ({"key": "k1"}, "keys[1].name"),
        ({"name": "  ", "key": "k1"}, "keys[1].name"),
        ({"name": 7, "key": "k1"}, "keys[1].name"),
        ({"name": "a"}, "keys[1]"),
        ({"name": "a", "key": "k1", "sha256": "0" * 64}, "keys[1]"),
        ({"name": "a", "key": ""}, "keys[1].key"),
        ({"name": "a", "key": 123456}, "keys[1].key"),
        ({"name": "a", "key": "two words"}, "keys[1].key"),
        ({"name": "a", "sha256": "abc"}, "keys[1].sha256"),
        ({"name": "a", "sha256": "g" * 64}, "keys[1].sha256"),
        ({"name": "a", "key": "k1", "token_budget": -1}, "keys[1].token_budget"),
        ({"name": "a", "key": "k1", "token_budget": 1.5}, "keys[1].token_budget"),
        ({"name": "a", "key": "k1", "token_budget": True}, "keys[1].token_budget"),
        ({"name": "a", "key": "k1", "token_budget": "100"}, "keys[1].token_budget"),
        ({"name": "a", "key": "k1", "budget_period_s": 0}, "keys[1].budget_period_s"),
        ({"name": "a", "key": "k1", "budget_period_s": None}, "keys[1].budget_period_s"),
        ({"name": "a", "key": "k1", "requests_per_minute": -3}, "keys[1].requests_per_minute"),
        ({"name": "a", "key": "k1", "requests_per_minute": 0}, "keys[1].requests_per_minute"),
        ({"name": "a", "key": "k1", "requests_per_minute": "9"}, "keys[1].requests_per_minute"),
        ("k1", "keys[1]"),
    ],
)
def test_bad_entry_names_file_entry_and_field(tmp_path: Path, entry: Any, field: str) -> None:
    path = write_keys(tmp_path, {"keys": [{"name": "ok", "key": SECRET}, entry]})
    with pytest.raises(InputError) as info:
        load_keys(path, None)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert str(path) in str(info.value) and field in str(info.value)
    assert SECRET not in str(info.value)
    assert "k1" not in str(info.value) and "123456" not in str(info.value)


def test_duplicates_are_refused_without_echoing_keys(tmp_path: Path) -> None:
    same_name = write_keys(
        tmp_path, {"keys": [{"name": "a", "key": SECRET}, {"name": "a", "key": "other-key"}]}
    )
    with pytest.raises(InputError, match="duplicate name") as info:
        load_keys(same_name, None)
    assert info.value.field == "keys[1].name" and "keys[0]" in str(info.value)

    # the same key once as plain text and once as its digest
    same_key = write_keys(
        tmp_path, {"keys": [{"name": "a", "key": SECRET}, {"name": "b", "sha256": digest(SECRET)}]}
    )
    with pytest.raises(InputError, match="same key") as info:
        load_keys(same_key, None)
    assert info.value.field == "keys[1].sha256" and "keys[0]" in str(info.value)
    assert SECRET not in str(info.value)

    # a key both in the file and in the environment
    with pytest.raises(InputError, match="same key") as info:
        load_keys(write_keys(tmp_path, {"keys": [{"name": "a", "key": SECRET}]}), SECRET)
    assert info.value.path == "$PONDER_API_KEYS" and info.value.field == "key-1"
    assert SECRET not in str(info.value)

    # an environment key named like a file entry
    named = write_keys(tmp_path, {"keys": [{"name": "key-2", "key": SECRET}]})
    with pytest.raises(InputError, match="duplicate name") as info:
        load_keys(named, "sk-x,sk-y")
    assert info.value.field == "key-2"

    with pytest.raises(InputError, match="same key") as info:
        load_keys(None, "sk-x,sk-y,sk-x")
    assert info.value.field == "key-3" and "sk-x" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"entries": []}', "JSON object"),
        ('{"keys": [], "extra": 1}', "unknown top-level"),
        ('{"keys": {"name": "a"}}', "must be a list"),
    ],
)
def test_bad_file_shape(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        load_keys(path, None)
    assert info.value.path == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read") as info:
        load_keys(tmp_path / "absent.json", None)
    assert info.value.path == str(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("env", "field"), [("a,,b", "key-2"), ("a,b,", "key-3"), ("a,b c", "key-2")]
)
def test_bad_env_keys(env: str, field: str) -> None:
    with pytest.raises(InputError) as info:
        load_keys(None, env)
    assert info.value.path == "$PONDER_API_KEYS" and info.value.field == field
    assert "b c" not in str(info.value)


def test_key_policy_validates_itself() -> None:
    with pytest.raises(ValueError, match="sha256"):
        KeyPolicy("a", SECRET)  # a key where its digest belongs
    with pytest.raises(ValueError, match="requests_per_minute"):
        policy(requests_per_minute=0.0)
    with pytest.raises(ValueError, match="budget_period_s"):
        policy(budget_period_s=0.0)
    with pytest.raises(ValueError, match="token_budget"):
        policy(token_budget=-1)
    assert policy(requests_per_minute=3.0).burst == 1.0
    assert policy(requests_per_minute=120.0).burst == 20.0
    assert policy().burst is None


# --- authentication -----------------------------------------------------------------------


def test_no_keys_means_open() -> None:
    ring = KeyRing([])
    assert not ring.enabled
    assert ring.authenticate(None) is None
    assert ring.authenticate("Bearer anything") is None


def test_authenticate() -> None:
    alice, bob = policy(), KeyPolicy("bob", digest("sk-bob"))
    ring = KeyRing([alice, bob])
    assert ring.enabled
    assert ring.authenticate(f"Bearer {SECRET}") is alice
    assert ring.authenticate("bearer  sk-bob ") is bob
    for header in [None, "", "   ", SECRET, f"Basic {SECRET}", "Bearer", "Bearer a b"]:
        with pytest.raises(LimitError) as info:
            ring.authenticate(header)
        assert info.value.status == 401 and info.value.code == "invalid_api_key"
        assert info.value.retry_after is None
        assert SECRET not in str(info.value)


def test_wrong_key_of_the_same_length_goes_through_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)  # ponder.serve.limits calls it by module
    ring = KeyRing([policy(), KeyPolicy("bob", digest("sk-bob"))])
    wrong = SECRET[:-1] + ("0" if SECRET[-1] != "0" else "1")
    assert len(wrong) == len(SECRET)
    with pytest.raises(LimitError, match="invalid API key") as info:
        ring.authenticate(f"Bearer {wrong}")
    assert info.value.status == 401
    # every configured digest was compared, in constant time, against the digest presented
    assert len(calls) == 2
    assert all(a == hashlib.sha256(wrong.encode()).digest() for a, _ in calls)
    calls.clear()
    assert ring.authenticate(f"Bearer {SECRET}") is ring.keys[0]
    assert len(calls) == 2  # no early stop at the match


def test_key_ring_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="unique"):
        KeyRing([policy(), policy(name="other")])
    with pytest.raises(ValueError, match="unique"):
        KeyRing([policy(), policy(sha256=digest("x"))])


# --- limits -------------------------------------------------------------------------------


def limit_error(limiter: Limiter, key: KeyPolicy) -> LimitError:
    with pytest.raises(LimitError) as info:
        limiter.admit(key)
    assert info.value.status == 429
    return info.value


def test_unlimited_key_is_always_admitted() -> None:
    limiter, key = Limiter(clock=Clock()), policy()
    for _ in range(1000):
        limiter.admit(key)
    limiter.charge(key, 10**9)
    assert limiter.remaining(key) is None


def test_budget_exhaustion_overshoot_and_window_reset() -> None:
    clock = Clock(1000.0)
    limiter, key = Limiter(clock=clock), policy(token_budget=1000, budget_period_s=3600.0)
    assert limiter.remaining(key) == 1000
    limiter.admit(key)  # the window starts here, at t=1000
    limiter.charge(key, 600)
    assert limiter.remaining(key) == 400
    clock.now = 1500.0
    limiter.admit(key)  # 400 left: admitted, and it may overshoot
    limiter.charge(key, 700)
    assert limiter.remaining(key) == 0
    clock.now = 2000.0
    error = limit_error(limiter, key)
    assert error.code == "token_budget_exceeded"
    assert error.retry_after == pytest.approx(1000.0 + 3600.0 - 2000.0)
    assert "1300 of 1000" in error.message
    clock.now = 4599.0
    assert limit_error(limiter, key).retry_after == pytest.approx(1.0)
    clock.now = 4600.0  # the window has ended: a fresh budget
    assert limiter.remaining(key) == 1000
    limiter.admit(key)  # the next window starts at t=4600
    limiter.charge(key, 1000)
    clock.now = 4700.0
    assert limit_error(limiter, key).retry_after == pytest.approx(3500.0)


def test_window_starts_at_first_use_not_at_start_up() -> None:
    clock = Clock(0.0)
    limiter, key = Limiter(clock=clock), policy(token_budget=100, budget_period_s=60.0)
    clock.now = 500.0
    limiter.admit(key)
    limiter.charge(key, 100)
    clock.now = 559.0
    assert limit_error(limiter, key).retry_after == pytest.approx(1.0)


def test_restored_usage_counts_from_start_up() -> None:
    clock = Clock(100.0)
    key = policy(token_budget=1000, budget_period_s=60.0)
    limiter = Limiter(clock=clock, used={"alice": 1000, "bob": 10})
    assert limiter.remaining(key) == 0
    clock.now = 130.0
    assert limit_error(limiter, key).retry_after == pytest.approx(30.0)
    clock.now = 160.0
    limiter.admit(key)
    assert limiter.remaining(key) == 1000
    assert limiter.remaining(policy(name="bob", sha256=digest("b"), token_budget=50)) == 40
    with pytest.raises(ValueError, match="negative"):
        Limiter(clock=clock, used={"alice": -1})


def test_zero_budget_admits_nothing() -> None:
    clock = Clock()
    limiter, key = Limiter(clock=clock), policy(token_budget=0, budget_period_s=10.0)
    assert limit_error(limiter, key).retry_after == pytest.approx(10.0)


def test_rate_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock(0.0)
    key = policy(requests_per_minute=60.0)  # one per second, burst of ten
    limiter = Limiter(clock=clock)
    for _ in range(10):
        limiter.admit(key)
    error = limit_error(limiter, key)
    assert error.code == "rate_limit_exceeded" and error.retry_after == pytest.approx(1.0)
    clock.now = 0.25
    assert limit_error(limiter, key).retry_after == pytest.approx(0.75)
    clock.now = 1.0
    limiter.admit(key)  # refilled by exactly one
    assert limit_error(limiter, key).retry_after == pytest.approx(1.0)
    clock.now = 1000.0  # a long pause refills only up to the burst
    for _ in range(10):
        limiter.admit(key)
    limit_error(limiter, key)


def test_slow_rate_has_a_burst_of_one() -> None:
    clock = Clock(0.0)
    key = policy(requests_per_minute=2.0)
    limiter = Limiter(clock=clock)
    limiter.admit(key)
    assert limit_error(limiter, key).retry_after == pytest.approx(30.0)
    clock.now = 10.0
    assert limit_error(limiter, key).retry_after == pytest.approx(20.0)
    clock.now = 30.0
    limiter.admit(key)


def test_keys_have_separate_limits() -> None:
    clock = Clock(0.0)
    alice = policy(requests_per_minute=6.0, token_budget=10)
    bob = KeyPolicy("bob", digest("sk-bob"), requests_per_minute=6.0, token_budget=10)
    limiter = Limiter(clock=clock)
    limiter.admit(alice)
    limiter.charge(alice, 10)
    assert limit_error(limiter, alice).code == "token_budget_exceeded"
    limiter.admit(bob)
    assert limiter.remaining(bob) == 10
    assert limit_error(limiter, bob).code == "rate_limit_exceeded"


def test_spent_budget_does_not_take_a_rate_token() -> None:
    clock = Clock(0.0)
    key = policy(requests_per_minute=6.0, token_budget=5, budget_period_s=5.0)
    limiter = Limiter(clock=clock)
    limiter.admit(key)
    limiter.charge(key, 5)
    clock.now = 4.0
    assert limit_error(limiter, key).code == "token_budget_exceeded"
    clock.now = 10.0  # new window; the bucket refilled 1 request per 10 s
    limiter.admit(key)


def test_charge_refuses_negative_tokens() -> None:
    limiter = Limiter(clock=Clock())
    with pytest.raises(ValueError, match="negative"):
        limiter.charge(policy(token_budget=5), -1)
