"""Parsing of the human units used in the config file: durations and byte sizes."""

import re

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE_RE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_BYTES = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_duration(text: str) -> float:
    """'500ms', '5s', '5m', '1h', '1d' (Prometheus style) -> seconds. Raises ValueError."""
    match = _DURATION_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def parse_size(text) -> int:
    """4194304, '4MiB', '512KiB' -> bytes. Raises ValueError."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _SIZE_BYTES[match.group(2)]
