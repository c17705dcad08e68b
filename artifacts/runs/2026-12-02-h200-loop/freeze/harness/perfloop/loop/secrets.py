"""Secret scanning and redaction: API keys must never land in the evidence.

Scans work on bytes, so a key inside a binary file is found as well as one in a diff or a
log. A finding names the file and position only; recorded artifacts carry a redaction
marker in place of the secret, which later scans report as a finding too.
"""

from __future__ import annotations

import re
from pathlib import Path

from perfloop.ledger.evidence_records import SecretFinding

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
# The same patterns over bytes, so binary files are scanned too.
_BYTES = {kind: re.compile(p.pattern.encode(), p.flags & ~re.UNICODE) for kind, p in PATTERNS.items()}
MARKER = "[REDACTED:{kind}]"
_MARKER_RE = re.compile(rb"\[REDACTED:([a-z \-]+)\]")


def scan_bytes(name: str, data: bytes) -> list[SecretFinding]:
    """Every secret-shaped string in `data` (and every earlier redaction), by line and column."""
    hits: dict[int, str] = {}
    for kind, pattern in _BYTES.items():
        for match in pattern.finditer(data):
            hits.setdefault(match.start(), kind)
    for match in _MARKER_RE.finditer(data):
        hits.setdefault(match.start(), match.group(1).decode() + " (redacted)")
    return [_finding(name, data, at, kind) for at, kind in sorted(hits.items())]


def _finding(name: str, data: bytes, at: int, kind: str) -> SecretFinding:
    line_start = data.rfind(b"\n", 0, at) + 1
    return SecretFinding(file=name, line=data.count(b"\n", 0, at) + 1, column=at - line_start + 1, kind=kind)


def find_secrets(folder: Path) -> list[SecretFinding]:
    """Every finding in every file under `folder` (binary files included)."""
    found: list[SecretFinding] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found += scan_bytes(path.relative_to(folder).as_posix(), data)
    return found


def redact(text: str) -> str:
    """`text` with every secret-shaped string replaced by a marker naming its kind."""
    for kind, pattern in PATTERNS.items():
        text = pattern.sub(MARKER.format(kind=kind), text)
    return text
