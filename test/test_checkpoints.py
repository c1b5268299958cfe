"""Checkpoint resolution: local directories, the Hugging Face cache, and the not-found message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partseg_ros.backends.base import CheckpointNotFoundError
from partseg_ros.backends.checkpoints import hub_offline, looks_like_hub_id, resolve_checkpoint


def _write(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fake_hf_cache(cache: Path, repo_id: str, files: dict[str, str], commit: str = "0" * 40) -> Path:
    """The on-disk layout huggingface_hub itself writes: refs/main -> snapshots/<commit>/files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    _write(repo / "refs" / "main", commit)
    for name, text in files.items():
        _write(repo / "snapshots" / commit / name, text)
    return repo / "snapshots" / commit


def test_local_directory_with_required_files_resolves(tmp_path):
    _write(tmp_path / "m" / "config.json")
    _write(tmp_path / "m" / "model.safetensors", "x")
    got = resolve_checkpoint(str(tmp_path / "m"), what="thing", parameter="p",
                             required_files=("config.json", "pytorch_model.bin|model.safetensors"))
    assert got == (tmp_path / "m").resolve()


def test_local_directory_missing_a_file_names_the_file_and_the_parameter(tmp_path):
    _write(tmp_path / "m" / "config.json")
    with pytest.raises(CheckpointNotFoundError) as err:
        resolve_checkpoint(str(tmp_path / "m"), what="PISA head", parameter="checkpoint",
                           required_files=("config.json", "pisa_head.safetensors"))
    text = str(err.value)
    assert "PISA head" in text and "pisa_head.safetensors" in text and "backend_options.checkpoint" in text
    assert str((tmp_path / "m").resolve()) in text


def test_missing_hub_checkpoint_says_which_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as err:
        resolve_checkpoint("facebook/dinov2-base", what="PISA backbone (DINOv2)", parameter="backbone",
                           cache_dir=tmp_path / "hub")
    text = str(err.value)
    assert "PISA backbone (DINOv2)" in text and "'facebook/dinov2-base'" in text  # which
    assert str(tmp_path / "hub") in text  # where
    # a hub id is not a path relative to the working directory, so no such path is listed
    assert str(Path("facebook/dinov2-base").resolve()) not in text and "no such directory" not in text
    assert "not attempted" in text and "HF_HUB_OFFLINE" in text
    assert "hf download facebook/dinov2-base --local-dir" in text and "huggingface-cli download" in text  # how
    # named as the user sets it, on the node and on the evaluator
    assert "backend_options.backbone: /path/to/models/dinov2-base" in text
    assert "--backend-option backbone=/path/to/models/dinov2-base" in text
    assert "set the parameter" not in text
    assert isinstance(err.value, FileNotFoundError)


def test_hub_id_found_in_the_hugging_face_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _fake_hf_cache(tmp_path / "hub", "acme/tiny-net", {"config.json": json.dumps({"model_type": "x"})})
    got = resolve_checkpoint("acme/tiny-net", what="tiny", parameter="p", cache_dir=tmp_path / "hub")
    assert got == snapshot


def test_cached_snapshot_lacking_weights_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_hf_cache(tmp_path / "hub", "acme/tiny-net", {"config.json": "{}"})
    with pytest.raises(CheckpointNotFoundError, match="snapshot lacks model.safetensors"):
        resolve_checkpoint("acme/tiny-net", what="tiny", parameter="p", cache_dir=tmp_path / "hub",
                           required_files=("config.json", "model.safetensors"))


def test_no_source_configured_and_custom_hint():
    with pytest.raises(CheckpointNotFoundError, match="(?s)no checkpoint configured.*train one") as err:
        resolve_checkpoint(None, what="PISA head", parameter="checkpoint", how_to="train one first")
    assert "backend_options.checkpoint" in str(err.value) and "--backend-option checkpoint=" in str(err.value)


def test_local_path_that_is_not_a_hub_id_gets_a_directory_hint(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as err:
        resolve_checkpoint(str(tmp_path / "nowhere" / "model"), what="SAM", parameter="sam")
    assert "`backend_options.sam: /path/to/dir`" in str(err.value) and "--backend-option sam=" in str(err.value)
    assert "a directory containing config.json" in str(err.value)
    assert "no such directory" in str(err.value)  # a real path is listed where it was looked for
    assert "hf download" not in str(err.value)


def test_hub_id_syntax_and_offline_flag(monkeypatch):
    assert looks_like_hub_id("google/owlv2-base-patch16-ensemble")
    assert not looks_like_hub_id("/abs/path") and not looks_like_hub_id("./rel/x") and not looks_like_hub_id("a/b/c")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline()
