"""`ponder compact` copies the store's rows into Parquet segments; the analyses then read the
segments and give the same figures; a second run copies nothing; a missing store is a clear
error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ponder.importers import import_paths
from ponder.store import Store


def test_compact_then_the_same_curves(ponder: Any, shared_data: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        import_paths(st, [shared_data / "reasoning_budget_sweep"])
        total = int(st.query("SELECT COUNT(*) FROM outcomes")[0][0])
        assert not st.has_segments()
    before = ponder("curves", "-d", "math500", "--json", store=store, check_ok=True).stdout
    listed = ponder("ls", "--json", store=store, check_ok=True).stdout

    result = ponder("compact", "--json", store=store, check_ok=True)
    copied = json.loads(result.stdout)
    assert copied["rows"] == total
    assert sorted(s["dataset"] for s in copied["segments"]) == ["aime24", "aime25", "math500"]
    assert sum(s["rows"] for s in copied["segments"]) == total
    with Store(store, readonly=True) as st:
        assert st.has_segments()

    assert ponder("curves", "-d", "math500", "--json", store=store, check_ok=True).stdout == before
    assert ponder("ls", "--json", store=store, check_ok=True).stdout == listed
    again = ponder("compact", store=store, check_ok=True)
    assert "already in a segment" in again.stdout


def test_compact_without_a_store_is_an_error(ponder: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sqlite"
    result = ponder("compact", store=missing)
    assert result.returncode != 0
    assert "no such store" in result.stderr and str(missing) in result.stderr
    assert not missing.exists()
