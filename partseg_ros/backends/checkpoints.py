"""Find a model's weights on disk from a local directory or a Hugging Face hub id.

Robots often run without network, so resolution looks in the places weights
can already be (the given directory, the Hugging Face cache) before trying a
download, and a miss raises ``CheckpointNotFoundError`` naming which
checkpoint, where it looked, and how to provide it. Nothing here runs at import.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence

from partseg_ros.backends.base import CheckpointNotFoundError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE forbid network access (read at call time)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.startswith((".", "/", "~"))


def hf_cache_dir(cache_dir: Optional[str | Path] = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def where_to_set(parameter: str, value: str = "...") -> str:
    """How a user sets a backend option: the node's ``backend_options`` or the evaluator's ``--backend-option``.

    Why: errors used to say "set the parameter 'checkpoint'", which is not a
    name the user types anywhere; these two are.
    """
    return (f"set `backend_options.{parameter}: {value}` in the node's parameters (partseg.yaml), "
            f"or pass `--backend-option {parameter}={value}` to partseg_evaluate")


def _missing_files(directory: Path, required_files: Sequence[str]) -> list[str]:
    """Required entries not present; an entry 'a|b' is satisfied by either file."""
    missing = []
    for entry in required_files:
        if not any((directory / name).is_file() for name in entry.split("|")):
            missing.append(entry.replace("|", " or "))
    return missing


def resolve_checkpoint(
    source: Optional[str],
    *,
    what: str,
    parameter: str,
    required_files: Sequence[str] = ("config.json",),
    allow_download: Optional[bool] = None,
    cache_dir: Optional[str | Path] = None,
    how_to: Optional[str] = None,
) -> Path:
    """Return a local directory holding ``source``'s files, or raise ``CheckpointNotFoundError``.

    ``what`` names the checkpoint for humans ("PISA backbone (DINOv2)"),
    ``parameter`` is the option the user sets to point at it. Downloads happen
    only when allowed and the hub is not marked offline (``allow_download``
    defaults to "not offline").
    """
    looked: list[str] = []
    if not source:
        raise CheckpointNotFoundError(
            f"{what}: no checkpoint configured: {where_to_set(parameter, '<local directory or hub id>')}."
            + (f" {how_to}" if how_to else "")
        )
    source = str(source)
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            looked.append(f"{local.resolve()} (exists but is not a directory)")
        else:
            missing = _missing_files(local, required_files)
            if not missing:
                return local.resolve()
            looked.append(f"{local.resolve()} (directory exists but lacks {', '.join(missing)})")
    elif not looks_like_hub_id(source):  # a hub id is not a path relative to the working directory
        looked.append(f"{local.resolve()} (no such directory)")

    if looks_like_hub_id(source):
        from huggingface_hub import snapshot_download

        cache = hf_cache_dir(cache_dir)
        try:
            cached = Path(snapshot_download(source, cache_dir=cache, local_files_only=True))
            missing = _missing_files(cached, required_files)
            if not missing:
                return cached
            looked.append(f"Hugging Face cache {cached} (snapshot lacks {', '.join(missing)})")
        except Exception as exc:  # huggingface_hub raises several types for "not cached"
            looked.append(f"Hugging Face cache {cache} (no snapshot of {source}: {type(exc).__name__})")

        if allow_download is None:
            allow_download = not hub_offline()
        if allow_download and not hub_offline():
            try:
                fetched = Path(snapshot_download(source, cache_dir=cache))
                missing = _missing_files(fetched, required_files)
                if not missing:
                    return fetched
                looked.append(f"hub download of {source} (lacks {', '.join(missing)})")
            except Exception as exc:  # no network, unknown repo, gated repo ...
                first_line = str(exc).splitlines()[0][:160]
                looked.append(f"hub download of {source} failed ({type(exc).__name__}: {first_line})")
        else:
            reason = "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set" if hub_offline() else "downloads disabled"
            looked.append(f"hub download of {source} not attempted ({reason})")

    raise CheckpointNotFoundError(_not_found_message(source, what, parameter, required_files, looked, how_to))


def _not_found_message(
    source: str, what: str, parameter: str, required_files: Sequence[str], looked: list[str], how_to: Optional[str]
) -> str:
    needs = ", ".join(f.replace("|", " or ") for f in required_files)
    lines = [f"{what} checkpoint {source!r} not found (needs {needs}).", "Looked in:"]
    lines += [f"  - {place}" for place in looked]
    lines.append("How to provide it:")
    if looks_like_hub_id(source):
        target = f"/path/to/models/{source.split('/')[-1]}"
        lines.append(
            f"  - on a machine with network: `hf download {source} --local-dir {target}` "
            f"(older huggingface_hub: `huggingface-cli download {source} --local-dir {target}`), "
            f"copy that directory to the robot and {where_to_set(parameter, target)};"
        )
        lines.append(
            "  - or copy a Hugging Face cache that holds it to $HF_HUB_CACHE (default ~/.cache/huggingface/hub) "
            "and keep the hub id."
        )
    else:
        lines.append(f"  - {where_to_set(parameter, '/path/to/dir')}, a directory containing {needs}.")
    if how_to:
        lines.append(f"  - {how_to}")
    return "\n".join(lines)
