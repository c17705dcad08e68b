"""Secret scanning of round artifacts: API keys must never land in the evidence."""

from __future__ import annotations

import re
from pathlib import Path

PATTERNS = {
    "anthropic key": re.compile(r"sk-ant-[A-Za-z0-9_\-]{16,}"),
    "openai-style key": re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),
    "aws access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "github token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "hugging face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "api key assignment": re.compile(
        r"(?i)\b(api[_-]?key|secret|token)\b\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{24,}"
    ),
}


def find_secrets(folder: Path) -> list[str]:
    """`path: kind` for every file under `folder` that holds something shaped like a secret."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        for kind, pattern in PATTERNS.items():
            if pattern.search(text):
                found.append(f"{path.relative_to(folder).as_posix()}: {kind}")
                break
    return found
