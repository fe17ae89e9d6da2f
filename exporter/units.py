"""The one parser of the human units every input uses: durations and byte sizes.

Durations are Prometheus-style (`30s`, `5m`, `1h30m`, `2w`, `1y`, `500ms`), also read as Go's
`time.ParseDuration` writes them (`1m30s`, `1.5s`, `250us`), so the config file, every CLI flag,
`report`, the web config, the rule generator and the scripts all accept the same text.
"""

import re

# Largest unit first, each at most once, as Prometheus' model.ParseDuration requires.
_DURATION_UNITS = (("y", 365 * 86400.0), ("w", 7 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0),
                   ("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9))
_DURATION_SECONDS = dict(_DURATION_UNITS)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|y|w|d|h|m|s)")
DURATION_EXAMPLES = "e.g. 500ms, 30s, 5m, 1h30m, 1d, 2w"

_SIZE_RE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_BYTES = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_duration(text, promql: bool = False) -> float:
    """'500ms', '5s', '1h30m', '1d', '2w', '1y', '0' -> seconds. Raises ValueError.
    promql: only what PromQL itself accepts in a range (whole numbers, ms to y), for rule files."""
    text = str(text).strip()
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} ({DURATION_EXAMPLES})")
    if promql and any("." in n or u in ("us", "µs", "ns") for n, u in parts):
        raise ValueError(f"not a PromQL duration: {text!r} (whole numbers of ms, s, m, h, d, w, y)")
    order = [u for u, _ in _DURATION_UNITS]
    ranks = [order.index(u) for _, u in parts]
    if ranks != sorted(set(ranks)):
        raise ValueError(f"not a duration: {text!r} (units largest first, each once: {DURATION_EXAMPLES})")
    return sum(float(n) * _DURATION_SECONDS[u] for n, u in parts)


def parse_size(text) -> int:
    """4194304, '4MiB', '512KiB' -> bytes. Raises ValueError."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _SIZE_BYTES[match.group(2)]
