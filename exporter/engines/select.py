"""Only the lines an engine map reads, taken out of an exposition before it is parsed.

A real vLLM page carries 40-90 KB, mostly histogram buckets, and the map reads about ten series
families of it; parsing everything held the GIL for 5 ms on 40 KB and 50 ms on 400 KB. Here each
line is looked at once: the wanted samples and their `# TYPE` lines are kept for the parser, and
every other line only gets a cheap structural check, so a garbled body is still refused whole.
"""

from __future__ import annotations

_METADATA = ("TYPE", "HELP", "UNIT")
_VALUE_STARTS = frozenset("0123456789+-.NIni")  # a number, NaN, +Inf, -Inf (the parser checks the rest)


class GarbledError(ValueError):
    """A line that is neither a comment nor a sample: the whole exposition is refused."""


def served_names(wanted: set[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(sample names to keep, family names whose # TYPE line to keep) for the wanted samples:
    each sample's own family (text format: x_total), its stem (OpenMetrics: x; a text-format
    counter may be named so too) and the stem's _created series (text format: a gauge family)."""
    samples, families = set(wanted), set(wanted)
    for name in wanted:
        stem = _stem(name)
        samples.add(stem + "_created")
        if name.endswith("_total"):
            samples.add(stem)  # a text-format counter may omit _total; the parser adds it back
        families.update((stem, stem + "_created"))
    return frozenset(samples), frozenset(families)


def select_lines(text: str, samples: frozenset[str], families: frozenset[str]) -> str:
    """The lines of `text` a parser needs for `samples`; GarbledError at the first line that
    cannot be part of an exposition. (The loop is the hot path: kept flat on purpose.)"""
    kept = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()  # as the parsers do
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) > 2 and parts[1] in _METADATA and parts[2].strip('"') in families or line.startswith("# EOF"):
                kept.append(line)
            continue
        name, value = _name_and_value(line)
        if not value or value[0] not in _VALUE_STARTS:
            raise GarbledError(f"line {number} is not a sample: {line[:80]!r}")
        if name in samples:
            kept.append(_without_exemplar(line) if " # " in line else line)
    return "\n".join(kept) + "\n"


def _name_and_value(line: str) -> tuple[str, str]:
    """(metric name, what follows its labels, stripped) of a sample line."""
    brace, space = line.find("{"), line.find(" ")
    if brace < 0 or 0 <= space < brace:  # no labels: name value [timestamp]
        return (line, "") if space < 0 else (line[:space], line[space:].lstrip())
    if brace == 0:  # a quoted UTF-8 name: {"name",label="v"} 1
        end = line.find('"', 2)
        name = line[2:end] if line[1:2] == '"' and end > 0 else ""
    else:
        name = line[:brace]
    return name, line[line.rfind("}") + 1:].lstrip()


def _without_exemplar(line: str) -> str:
    """An OpenMetrics sample line without its exemplar (`... 1 # {trace_id="a"} 1`), which the
    text parser does not read; a ' # ' inside a quoted label value is not one."""
    space, brace = line.find(" "), line.find("{")
    labels_end = _closing_brace(line, brace) if brace >= 0 and (space < 0 or brace < space) else 0
    cut = line.find(" # ", labels_end)
    return line if cut < 0 else line[:cut]


def _closing_brace(line: str, start: int) -> int:
    """The index of the '}' that closes the label set opened at `start`, skipping quoted values."""
    quoted = escaped = False
    for i in range(start, len(line)):
        char = line[i]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return i
    return len(line)


def _stem(name: str) -> str:
    for suffix in ("_total", "_sum", "_count", "_bucket"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name
