from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SourceError
from harness.preparation.sources import SourceKind, detect_source
from harness.testing.fakes import write_genai_folder, write_hf_folder


def test_gguf_file(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF\x03\x00rest")
    assert detect_source(gguf).kind is SourceKind.GGUF


def test_hf_folder(tmp_path: Path) -> None:
    assert detect_source(write_hf_folder(tmp_path / "hf")).kind is SourceKind.HF_FOLDER


def test_genai_and_foundry_folders(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path / "onnx")
    assert detect_source(folder).kind is SourceKind.GENAI_FOLDER
    (folder / "inference_model.json").write_text('{"Name": "m"}', encoding="utf-8")
    assert detect_source(folder).kind is SourceKind.FOUNDRY_FOLDER


def _error(path: Path) -> str:
    with pytest.raises(SourceError) as excinfo:
        detect_source(path)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path: Path) -> None:
    assert "no such file or folder; accepted: a Hugging Face model folder" in _error(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    assert "the folder is empty" in _error(tmp_path)


def test_folder_of_something_else_lists_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    message = _error(tmp_path)
    assert "found model.gguf, notes.txt but no config.json or genai_config.json" in message
    assert f"pass the file itself: --model {tmp_path / 'model.gguf'}" in message


def test_file_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04")
    assert "a .gguf file without the GGUF header" in _error(fake)


def test_corrupt_genai_config(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path)
    (folder / "genai_config.json").write_text('{"model": ', encoding="utf-8")
    assert "genai_config.json is not valid JSON (Expecting value: line 1" in _error(folder)


def test_genai_config_naming_a_missing_onnx_file(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path)
    (folder / "model.onnx").unlink()
    assert "genai_config.json names model.onnx, which is not in the folder" in _error(folder)


def test_hf_folder_without_weights_or_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    message = _error(tmp_path)
    assert "without weights (*.safetensors or pytorch_model*.bin) and a tokenizer" in message


def test_default_model_is_the_embedded_smollm2() -> None:
    source = detect_source(None)
    assert source.is_default and source.kind is SourceKind.GGUF
    assert source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_bad_reference_is_named_as_the_reference(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^--reference .*nope: no such file or folder"):
        detect_source(tmp_path / "nope", "--reference")


def test_a_model_from_the_cache_is_named_by_a_short_hash(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path / ("5409cdfc2c5d970adcafa69caf4ef04c" * 2))
    assert detect_source(folder).name == "onnx-5409cdfc2c5d"
    assert detect_source(write_genai_folder(tmp_path / "my-model")).name == "my-model"
