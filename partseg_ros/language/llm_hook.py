"""Optional hook for a stronger local language model.

A user with a local LLM can let it choose the object and part: either a Python
callable (``"package.module:function"``, called with the prompt, returning the
reply text) or an OpenAI-compatible chat endpoint on their machine
(``http://localhost:8000/v1``). The reply must be JSON
``{"object": ..., "part": ..., "affordance": ..., "reason": ...}``; the
reasoner checks it against the knowledge base and keeps its own answer if the
reply is unusable, so a misbehaving model cannot produce an unknown part.
"""

from __future__ import annotations

import importlib
import json
import re
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional, Protocol


class LanguageModelHook(Protocol):
    def __call__(self, prompt: str) -> str: ...


@dataclass
class LanguageModelAnswer:
    object: str
    part: str
    affordance: str = ""
    reason: str = ""


class OpenAICompatibleHook:
    """Chat-completions client for a local OpenAI-compatible server (llama.cpp, vLLM, Ollama...)."""

    def __init__(self, url: str, model: str = "local", timeout_s: float = 10.0, api_key: str = "") -> None:
        self.url = url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.api_key = api_key

    def __call__(self, prompt: str) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "temperature": 0.0,
                "messages": [
                    {"role": "system", "content": "You answer with one JSON object and nothing else."},
                    {"role": "user", "content": prompt},
                ],
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = json.loads(response.read().decode("utf-8"))
        return payload["choices"][0]["message"]["content"]


def load_hook(spec: Optional[str | Callable[[str], str]], **options: object) -> Optional[LanguageModelHook]:
    """A hook from config: None, a callable, "module:function", or an http(s) endpoint URL."""
    if spec is None or spec == "":
        return None
    if callable(spec):
        return spec
    if spec.startswith(("http://", "https://")):
        return OpenAICompatibleHook(spec, **options)  # type: ignore[arg-type]
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"language model hook {spec!r}: expected 'module:function' or an http(s) URL")
    target = getattr(importlib.import_module(module_name), attr)
    if not callable(target):
        raise ValueError(f"language model hook {spec!r} is not callable")
    return target


def build_prompt(instruction: str, options: dict[str, list[str]], visible: Optional[list[str]]) -> str:
    """Prompt listing the instruction and the allowed objects with their parts."""
    lines = [
        "A robot must perform a task with an object on a table and grasp one part of it.",
        f"Task: {instruction}",
    ]
    if visible:
        lines.append("Objects in view: " + ", ".join(visible))
    lines.append("Allowed objects and their parts:")
    lines += [f"- {name}: {', '.join(parts)}" for name, parts in options.items()]
    lines.append(
        'Answer with JSON {"object": <allowed object>, "part": <one of its parts>, '
        '"affordance": <what is done with the part>, "reason": <one sentence>}.'
    )
    return "\n".join(lines)


def parse_answer(reply: str) -> Optional[LanguageModelAnswer]:
    """The first JSON object in a reply, or None."""
    match = re.search(r"\{.*\}", reply, flags=re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "object" not in data or "part" not in data:
        return None
    return LanguageModelAnswer(
        str(data["object"]).strip().lower(),
        str(data["part"]).strip().lower(),
        str(data.get("affordance", "")).strip().lower(),
        str(data.get("reason", "")).strip(),
    )
