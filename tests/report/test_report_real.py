"""The budget panels on the recorded sweep: one per model, derived cells never on a line."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from ponder.curves import compute_curves
from ponder.report import plots


@pytest.mark.parametrize("dataset", ["aime24", "math500"])
def test_recorded_sweep_panels(shared_data: Path, tmp_path: Path, dataset: str) -> None:
    from ponder.importers import import_paths
    from ponder.store import Store

    with Store(tmp_path / "s.sqlite") as store:
        import_paths(store, [shared_data / "reasoning_budget_sweep"])
        frame = store.outcomes_frame(datasets=[dataset])
    cells = compute_curves(frame, n_boot=20, seed=0).cells
    # Panel titles: the model, with its mode unless it is the default thinking mode.
    cells["panel"] = [
        m if o in ("think", "default") else f"{m} ({o})"
        for m, o in zip(cells["model"], cells["mode"], strict=True)
    ]
    fig = plots.accuracy_curves_figure(cells, dataset)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    models = sorted(set(frame["model"]))
    assert len(panels) == len(models)
    n_derived = 0
    for ax in panels:
        own = cells[(cells["panel"] == ax.get_title()) & cells["budget"].notna()]
        recorded = set(own.loc[~own["derived"], "budget"])
        derived = set(own.loc[own["derived"], "budget"])
        assert recorded.isdisjoint(derived)
        for line in ax.get_lines():
            xs = set(line.get_xdata().tolist())
            if line.get_gid() == "derived":
                assert xs == derived
                assert line.get_linestyle() == "None"
                n_derived += len(xs)
            elif line.get_gid() == "recorded":
                assert xs == recorded
        # Grey context: the other models' recorded curves, none of their derived cells.
        context = sorted(
            len(line.get_xdata()) for line in ax.get_lines() if line.get_gid() == "context"
        )
        others = cells[
            (cells["dataset"] == dataset)
            & (cells["panel"] != ax.get_title())
            & cells["budget"].notna()
            & ~cells["derived"]
        ]
        sizes = others.groupby("panel").size()
        assert context == sorted(int(n) for n in sizes if n >= 2)
    assert n_derived == int(cells.loc[cells["dataset"] == dataset, "derived"].sum())
    plt.close(fig)
