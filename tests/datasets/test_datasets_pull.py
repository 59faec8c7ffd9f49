"""`pull` against loopback mirrors: verified writes, no-op re-runs, and every failure mode."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import LoopbackServer, pull_module
from ponder.datasets import DATASETS, MirrorRequiredError, get_dataset, pull
from ponder.errors import ChecksumError, DownloadError

pytestmark = pytest.mark.network_local

Serve = Callable[..., LoopbackServer]
MakeClient = Callable[[LoopbackServer], httpx.Client]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_part_files(folder: Path) -> bool:
    return not list(folder.rglob("*.part"))


def tampered_copy(shared: Path, tmp_path: Path, rel: str) -> Path:
    """A mirror folder holding `rel` from the shared folder with one byte changed."""
    root = tmp_path / "tampered"
    target = root / rel
    target.parent.mkdir(parents=True)
    data = bytearray((shared / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return root


@pytest.mark.parametrize("name", list(DATASETS))
def test_pull_each_dataset_from_loopback_mirror(
    name: str, shared: Path, serve: Serve, tmp_path: Path
) -> None:
    server = serve(shared)
    dest = tmp_path / "dest"
    result = pull(name, dest=dest, mirror=server.url, progress=False)
    spec = get_dataset(name)
    assert result.written == [f.path for f in spec.mirror_files]
    assert result.skipped == [] and result.recorded == []
    assert result.bytes_written == spec.size
    for f in spec.mirror_files:
        assert sha256(dest / f.path) == f.sha256
    assert sorted(server.requests) == sorted(f"/{f.path}" for f in spec.mirror_files)
    assert no_part_files(dest)
    assert not (dest / spec.folder / "checksums.json").exists()


def test_default_dest_is_the_user_data_dir(shared: Path, serve: Serve, isolated_env: Path) -> None:
    result = pull("math500", mirror=serve(shared).url, progress=False)
    assert result.folder == isolated_env / "datasets" / "problem_sets"
    assert (result.folder / "math500_test.jsonl").is_file()


def test_rerun_is_a_noop_without_any_request(shared: Path, serve: Serve, tmp_path: Path) -> None:
    server = serve(shared)
    pull("routellm_gsm8k", dest=tmp_path, mirror=server.url, progress=False)
    before = len(server.requests)
    again = pull("routellm_gsm8k", dest=tmp_path, mirror=server.url, progress=False)
    assert again.written == [] and again.bytes_written == 0
    assert again.skipped == [f.path for f in get_dataset("routellm_gsm8k").files]
    assert len(server.requests) == before


def test_rerun_makes_no_request_even_to_a_dead_mirror(shared: Path, tmp_path: Path) -> None:
    pull("gsm8k", dest=tmp_path, mirror=shared, progress=False)
    result = pull("gsm8k", dest=tmp_path, mirror=f"http://127.0.0.1:{free_port()}")
    assert result.skipped == ["problem_sets/gsm8k_test.jsonl"]


def test_tampered_file_raises_and_writes_nothing(
    shared: Path, serve: Serve, tmp_path: Path
) -> None:
    rel = "problem_sets/gsm8k_test.jsonl"
    server = serve(tampered_copy(shared, tmp_path, rel))
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as info:
        pull("gsm8k", dest=dest, mirror=server.url, progress=False)
    pinned = get_dataset("gsm8k").files[0].sha256
    assert pinned is not None
    message = str(info.value)
    assert rel in message and pinned in message
    assert sha256(tmp_path / "tampered" / rel) in message
    assert not (dest / rel).exists()
    assert no_part_files(dest)


def test_tampered_file_leaves_previous_good_file_intact(
    shared: Path, serve: Serve, tmp_path: Path
) -> None:
    rel = "problem_sets/math500_test.jsonl"
    dest = tmp_path / "dest"
    pull("math500", dest=dest, mirror=shared, progress=False)
    server = serve(tampered_copy(shared, tmp_path, rel))
    with pytest.raises(ChecksumError):
        pull("math500", dest=dest, mirror=server.url, progress=False, force=True)
    assert sha256(dest / rel) == get_dataset("math500").files[0].sha256
    assert no_part_files(dest)


def test_corrupt_local_file_is_replaced(shared: Path, serve: Serve, tmp_path: Path) -> None:
    rel = "matharena_aime2025_I/per_model_summary.csv"
    dest = tmp_path / "dest"
    (dest / rel).parent.mkdir(parents=True)
    (dest / rel).write_text("not the data\n")
    result = pull("matharena_aime2025_I", dest=dest, mirror=serve(shared).url, progress=False)
    assert rel in result.written
    assert sha256(dest / rel) == sha256(shared / rel)


def test_stale_part_file_is_discarded(shared: Path, serve: Serve, tmp_path: Path) -> None:
    rel = "problem_sets/matharena_competitions.jsonl"
    dest = tmp_path / "dest"
    (dest / rel).parent.mkdir(parents=True)
    stale = dest / (rel + ".part")
    stale.write_bytes((shared / rel).read_bytes()[:100])
    pull("matharena_competitions", dest=dest, mirror=serve(shared).url, progress=False)
    assert sha256(dest / rel) == sha256(shared / rel)
    assert not stale.exists()


def test_body_cut_short_raises_download_error(shared: Path, serve: Serve, tmp_path: Path) -> None:
    server = serve(shared, "truncate")
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        pull("gsm8k", dest=dest, mirror=server.url, progress=False)
    assert f"{server.url}/problem_sets/gsm8k_test.jsonl" in str(info.value)
    assert len(server.requests) == pull_module.RETRIES + 1  # a cut-off body is retried
    assert not (dest / "problem_sets" / "gsm8k_test.jsonl").exists()
    assert no_part_files(dest)


def test_404_raises_a_clear_download_error(serve: Serve, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    server = serve(empty)
    with pytest.raises(DownloadError) as info:
        pull("math500", dest=tmp_path / "dest", mirror=server.url, progress=False)
    message = str(info.value)
    assert "HTTP 404" in message
    assert f"{server.url}/problem_sets/math500_test.jsonl" in message
    assert len(server.requests) == 1  # a 4xx is not retried
    assert not (tmp_path / "dest" / "problem_sets" / "math500_test.jsonl").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_raises_download_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DownloadError) as info:
        pull("math500", dest=tmp_path, mirror=url, progress=False)
    assert url in str(info.value) and "ConnectError" in str(info.value)


def test_5xx_is_retried(shared: Path, serve: Serve, tmp_path: Path) -> None:
    server = serve(shared, "flaky")
    result = pull("routellm_gsm8k", dest=tmp_path, mirror=server.url, progress=False)
    assert len(result.written) == 2
    assert len(server.requests) == 4  # one 503 and one success per file


def test_needs_mirror_without_mirror_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MirrorRequiredError) as info:
        pull("mmlu_pro_math", dest=tmp_path, progress=False)
    message = str(info.value)
    assert "'mmlu_pro_math'" in message and "PONDER_DATA_MIRROR" in message
    assert "--mirror" in message
    assert not (tmp_path / "mmlu_pro_math").exists()


def test_mirror_from_environment(
    shared: Path, serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(shared)
    monkeypatch.setenv("PONDER_DATA_MIRROR", server.url + "/")
    result = pull("mmlu_pro_math", dest=tmp_path, progress=False)
    assert len(result.written) == 2 and server.requests


@pytest.mark.parametrize("as_url", [False, True])
def test_local_folder_mirror(shared: Path, tmp_path: Path, as_url: bool) -> None:
    mirror = shared.resolve().as_uri() if as_url else str(shared)
    result = pull("matharena_aime2025_I", dest=tmp_path, mirror=mirror, progress=False)
    assert result.source.startswith("mirror ")
    for f in get_dataset("matharena_aime2025_I").files:
        assert sha256(tmp_path / f.path) == f.sha256


def test_local_folder_mirror_missing_file(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DownloadError, match="not found in the mirror folder"):
        pull("gsm8k", dest=tmp_path / "dest", mirror=tmp_path / "mirror", progress=False)
    with pytest.raises(DownloadError, match="does not exist"):
        pull("gsm8k", dest=tmp_path / "dest", mirror=tmp_path / "nowhere", progress=False)


def test_local_folder_mirror_tampered(shared: Path, tmp_path: Path) -> None:
    rel = "routellm_gsm8k/contaminated_prompts.jsonl"
    mirror = tampered_copy(shared, tmp_path, rel)
    shutil.copy(shared / "routellm_gsm8k" / "gsm8k_responses.csv", mirror / "routellm_gsm8k")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match=rel):
        pull("routellm_gsm8k", dest=dest, mirror=mirror, progress=False)
    assert not (dest / rel).exists()


def test_progress_stays_quiet_when_stderr_is_not_a_terminal(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pull("gsm8k", dest=tmp_path, mirror=shared, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def upstream_tree(shared: Path, root: Path, name: str) -> None:
    """Lay out `root` like raw.githubusercontent.com for dataset `name`'s upstream files."""
    spec = get_dataset(name)
    for f in spec.upstream_files:
        assert f.upstream_url is not None
        target = root / f.upstream_url.removeprefix("https://raw.githubusercontent.com/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.in_mirror:
            shutil.copy(shared / f.path, target)
        else:  # the single upstream CSV: same columns as the two split files
            folder = shared / spec.folder
            aime = (folder / "reasoning_budget_sweep_aime.csv").read_text().splitlines(True)
            math = (folder / "reasoning_budget_sweep_math500.csv").read_text().splitlines(True)
            target.write_text("".join(aime + math[1:]))


def test_trust_on_first_use_records_then_verifies(
    shared: Path, serve: Serve, upstream_client: MakeClient, tmp_path: Path
) -> None:
    root = tmp_path / "upstream"
    upstream_tree(shared, root, "reasoning_budget_sweep")
    server = serve(root)
    client = upstream_client(server)
    dest = tmp_path / "dest"
    rel = "reasoning_budget_sweep/reasoning_budget_sweep.csv"

    first = pull("reasoning_budget_sweep", dest=dest, client=client, progress=False)
    assert first.source.startswith("upstream SamirHossain099/reasoning-budget-sweep@")
    assert first.written == [rel] and first.recorded == [rel]
    checksums = json.loads((dest / "reasoning_budget_sweep" / "checksums.json").read_text())
    recorded = checksums["files"][rel]["sha256"]
    assert recorded == sha256(dest / rel)
    assert checksums["files"][rel]["url"].startswith("https://raw.githubusercontent.com/")

    requests = len(server.requests)
    again = pull("reasoning_budget_sweep", dest=dest, client=client, progress=False)
    assert again.skipped == [rel] and again.recorded == []
    assert len(server.requests) == requests

    # upstream now serves different bytes: the recorded hash rejects them
    served = next(root.rglob("reasoning_budget_sweep.csv"))
    served.write_text(served.read_text() + "extra,row\n")
    with pytest.raises(ChecksumError) as info:
        pull("reasoning_budget_sweep", dest=dest, client=client, progress=False, force=True)
    assert recorded in str(info.value) and rel in str(info.value)
    assert sha256(dest / rel) == recorded


def test_upstream_pull_of_verified_files_checks_the_pin(
    shared: Path, serve: Serve, upstream_client: MakeClient, tmp_path: Path
) -> None:
    root = tmp_path / "upstream"
    upstream_tree(shared, root, "routellm_gsm8k")
    client = upstream_client(serve(root))
    result = pull("routellm_gsm8k", dest=tmp_path / "dest", client=client, progress=False)
    assert len(result.written) == 2 and result.recorded == []  # pinned, nothing to trust
    assert not (tmp_path / "dest" / "routellm_gsm8k" / "checksums.json").exists()

    bad = next(root.rglob("contaminated_prompts.jsonl"))
    bad.write_text(bad.read_text() + "{}\n")
    with pytest.raises(ChecksumError):
        pull("routellm_gsm8k", dest=tmp_path / "d2", client=client, progress=False)


def test_upstream_pull_of_unverified_file_records_its_hash(
    shared: Path, serve: Serve, upstream_client: MakeClient, tmp_path: Path
) -> None:
    root = tmp_path / "upstream"
    upstream_tree(shared, root, "math500")
    client = upstream_client(serve(root))
    dest = tmp_path / "dest"
    result = pull("math500", dest=dest, client=client, progress=False)
    assert result.recorded == ["problem_sets/math500_test.jsonl"]
    assert (
        sha256(dest / "problem_sets" / "math500_test.jsonl")
        == get_dataset("math500").files[0].sha256
    )
