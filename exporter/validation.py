"""One way to read and check every YAML input: the run config, the web config, the price catalogs,
estimate scenarios and the rules config.

Each input has its own error class, a subclass of InputError, and every failure is one line that
names the key, the bad value and what is allowed:

    pricing.cloud.hourly: got -1, allowed: a number >= 0

Files are read only when they are regular files and no larger than a cap (a FIFO or /dev/zero
must not hang or fill the process), and YAML aliases are limited (a few hundred bytes of nested
aliases expand to gigabytes). Typed inputs are dataclasses, built and checked by build() from the
field types and from metadata set with choices(), number(), fraction(), duration(), size() and date().
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math
import os
import stat
import types
import typing

import yaml

from exporter.units import DURATION_EXAMPLES, parse_duration, parse_size

MAX_NUMBER = 10**300  # any figure of ours is far below; an integer over it cannot become a float
MAX_FILE_BYTES = 1024 * 1024  # no configuration of ours is larger; a larger file is a mistake
MAX_ALIASES = 100  # YAML anchors are fine for a config, thousands of alias expansions are a bomb
MAX_EXPANDED_NODES = 100_000  # nodes once every alias is expanded: a few aliases deep can reach billions


class InputError(Exception):
    """Invalid input. The message is one line: `[SOURCE: ]KEY: PROBLEM`."""

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.problem, self.source = key, message, source
        text = f"{key}: {message}" if key else message
        super().__init__((f"{source}: {text}" if source else text).replace("\n", " "))

    @classmethod
    def got(cls, key: str, value, allowed: str, **extra):
        """`KEY: got VALUE, allowed: WHAT`, the value shown by cls.show_value."""
        return cls(key, f"got {cls.show_value(value)}, allowed: {allowed}", **extra)

    @staticmethod
    def show_value(value) -> str:
        return show(value)


def _got(error, key: str, value, allowed: str) -> Exception:
    return error(key, f"got {show(value)}, allowed: {allowed}")


def show(value, limit: int = 80) -> str:
    """A value for an error message: repr for text (so no newline starts a line), shortened."""
    try:
        text = repr(value) if isinstance(value, str) else str(value)
    except ValueError:  # an int past Python's 4,300-digit limit for str(); a YAML hex literal can be one
        return f"a {value.bit_length()}-bit number" if isinstance(value, int) else "a value that cannot be shown"
    return text if len(text) <= limit else text[:limit] + "..."


# -- reading ------------------------------------------------------------------------------------

def read_file(path: str, key: str, error=InputError, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes, or `error` naming `key`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO must not block
    except OSError as err:
        raise error(key, f"cannot read {path!r}: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(key, f"cannot read {path!r}: not a regular file")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise error(key, f"cannot read {path!r}: {err.strerror}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise error(key, f"{path!r} is larger than {max_bytes} bytes")
    return b"".join(chunks)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently), more than
    MAX_ALIASES aliases, and documents that expand to more than MAX_EXPANDED_NODES nodes (whoever
    walks the result, a validator or an error message, would walk every expansion)."""

    def compose_node(self, parent, index):
        if not hasattr(self, "_weights"):
            self._weights, self._aliases, self._expanded = {}, 0, 0
        alias = self.check_event(yaml.AliasEvent)
        node = super().compose_node(parent, index)
        if alias:
            self._aliases += 1
            self._expanded += self._weight(node)
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
        else:
            self._expanded += 1
        if self._expanded > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(f"expands to more than {MAX_EXPANDED_NODES} nodes (aliases)")
        return node

    def _weight(self, node) -> int:
        """Nodes in `node` with every alias expanded (memoised: anchored nodes are shared)."""
        known = self._weights.get(id(node))
        if known is None:
            children = node.value if isinstance(node, yaml.SequenceNode) else \
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else ()
            known = self._weights[id(node)] = 1 + sum(self._weight(child) for child in children)
        return known

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.YAMLError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(data: bytes | str, key: str, error=InputError):
    """The YAML document in `data` (an empty one is {}), or `error` naming `key`. The parser reads
    a stream, not the text: its errors then give the line and column but quote no line of the
    input (a line may hold a secret: a bcrypt hash, part of a key)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        loaded = yaml.load(io.StringIO(text), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise error(key, "not valid UTF-8") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as err:
        raise error(key, "not valid YAML: " + " ".join(str(err).split())[:300]) from None
    return {} if loaded is None else loaded


def load_mapping(path: str, key: str, error=InputError, max_bytes: int = MAX_FILE_BYTES) -> dict:
    """read_file + parse_yaml, and the top level must be a mapping."""
    loaded = parse_yaml(read_file(path, key, error, max_bytes), key, error)
    if not isinstance(loaded, dict):
        raise error(key, "the top level must be a mapping")
    return loaded


# -- typed dataclasses ----------------------------------------------------------------------------

def choices(*allowed, default=dataclasses.MISSING):
    return dataclasses.field(default=default, metadata={"choices": allowed})


def number(default=dataclasses.MISSING, minimum=0.0, exclusive=False, maximum=None, hint=""):
    """A finite number >= minimum (> with exclusive), <= maximum if given; `hint` follows the
    allowed range in errors (e.g. what a share means)."""
    return dataclasses.field(default=default, metadata={"min": minimum, "exclusive": exclusive, "max": maximum,
                                                        "hint": hint})


def fraction(default=dataclasses.MISSING, positive: bool = False):
    """A share from 0 to 1 (above 0 with positive), written 0.25 or "25%". A bare number above 1 is
    refused, not read as a percentage: `utilization: 25` could mean 25% or 25x."""
    return dataclasses.field(default=default, metadata={"unit": "fraction", "positive": positive})


def duration(default: str, positive: bool = False):
    return dataclasses.field(default=parse_duration(default), metadata={"unit": "duration", "positive": positive})


def size(default: str):
    return dataclasses.field(default=parse_size(default), metadata={"unit": "size"})


def date(default=dataclasses.MISSING):
    """An ISO date, kept as its text (YAML reads an unquoted 2025-08-01 as a date)."""
    return dataclasses.field(default=default, metadata={"unit": "date"})


def from_key(default=dataclasses.MISSING):
    """A field filled from the key of the mapping the entry sits in (e.g. an API's name)."""
    return dataclasses.field(default=default, metadata={"from_key": True})


def internal(default=None, default_factory=dataclasses.MISSING):
    """A field the input cannot set: filled in by the loader."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"internal": True})
    return dataclasses.field(default=default, metadata={"internal": True})


def build(cls, data, path: str = "", error=InputError, key_value: str | None = None):
    """An instance of dataclass `cls` from a mapping, every field converted and checked; unknown
    and missing keys are errors. `key_value` fills a from_key() field. `error` is called as
    error(key, message): an InputError subclass, or a functools.partial of one."""
    if not isinstance(data, dict):
        raise _got(error, path or "config", data, "a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise error(_join(path, unknown[0]), f"unknown key, allowed keys: {', '.join(fields)}")
    values = {}
    for name, spec in fields.items():
        key = _join(path, name)
        if spec.metadata.get("from_key") and key_value is not None and name not in data:
            values[name] = key_value
        elif name in data:
            values[name] = _convert(hints[name], data[name], key, spec.metadata, error)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise error(key, "required key is missing")
    return cls(**values)


def _convert(hint, value, key: str, meta, error):
    if _is_optional(hint):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if meta.get("unit"):
        return _convert_unit(meta["unit"], value, key, meta, error)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key, error)
    convert = _CONVERTERS.get(typing.get_origin(hint) or hint)
    if convert is None:
        raise TypeError(f"no converter for {hint}")  # a programming error, not bad input
    return convert(hint, value, key, meta, error)


def _convert_dict(hint, value, key, meta, error):
    if not isinstance(value, dict):
        raise _got(error, key, value, "a mapping")
    _, item = typing.get_args(hint)
    if dataclasses.is_dataclass(item):
        return {str(k): build(item, v, f"{key}.{k}", error, key_value=str(k)) for k, v in value.items()}
    return {str(k): _convert(item, v, f"{key}.{k}", {}, error) for k, v in value.items()}


def _convert_list(hint, value, key, meta, error):
    if not isinstance(value, list):
        raise _got(error, key, value, "a list")
    (item,) = typing.get_args(hint)
    return [_convert(item, v, f"{key}[{i}]", {}, error) for i, v in enumerate(value)]


def _convert_bool(hint, value, key, meta, error):
    if not isinstance(value, bool):
        raise _got(error, key, value, "true, false")
    return value


def _convert_number(hint, value, key, meta, error):
    kind = "a whole number" if hint is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _got(error, key, value, kind)
    if isinstance(value, int) and abs(value) > MAX_NUMBER:  # float() of it would overflow
        raise _got(error, key, value, f"{kind} of at most {MAX_NUMBER:.0e}")
    if not math.isfinite(value):
        raise _got(error, key, value, f"a finite {kind[2:]}")
    if hint is int and not float(value).is_integer():
        raise _got(error, key, value, kind)
    _check_range(value, key, meta, error, kind)
    return hint(value)


def _convert_str(hint, value, key, meta, error):
    if not isinstance(value, str) or not value.strip():
        raise _got(error, key, value, "a non-empty string")
    allowed = meta.get("choices")
    if allowed and value not in allowed:
        raise _got(error, key, value, ", ".join(allowed))
    return value


def _as_given(hint, value, key, meta, error):
    return value  # typing.Any: the caller checks it (e.g. entries that are a name or a mapping)


_CONVERTERS = {dict: _convert_dict, list: _convert_list, bool: _convert_bool, int: _convert_number,
               float: _convert_number, str: _convert_str, typing.Any: _as_given}


def _convert_unit(unit: str, value, key: str, meta, error):
    if unit == "fraction":
        return _convert_fraction(value, key, meta, error)
    if unit == "date":
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return value.isoformat()
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except (TypeError, ValueError):
            raise _got(error, key, value, "an ISO date such as 2025-08-01") from None
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(value)
        parsed = parse_duration(value) if unit == "duration" else parse_size(value)
    except ValueError:
        example = DURATION_EXAMPLES if unit == "duration" else "e.g. 4MiB, 512KiB, 1048576"
        raise _got(error, key, value, f"a {unit} ({example})") from None
    if meta.get("positive") and parsed <= 0:
        raise _got(error, key, value, f"a {unit} > 0")
    return parsed


def _convert_fraction(value, key: str, meta, error) -> float:
    allowed = f"a fraction {'above 0, at most' if meta.get('positive') else 'from 0 to'} 1 (0.25) or a percentage ('25%')"
    percent = isinstance(value, str) and value.strip().endswith("%")
    try:
        if isinstance(value, bool) or not (percent or isinstance(value, (int, float))):
            raise ValueError(value)
        share = float(value.strip()[:-1]) / 100 if percent else float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise _got(error, key, value, allowed) from None
    if not (0.0 <= share <= 1.0) or (meta.get("positive") and share == 0.0):  # NaN fails too
        if not percent and 1 < share <= 100:
            allowed += f"; {share:g} would mean {share:g}x, for {share:g}% write {share / 100:g} or '{share:g}%'"
        raise _got(error, key, value, allowed)
    return share


def _check_range(value, key, meta, error, kind: str):
    minimum, maximum, hint = meta.get("min"), meta.get("max"), meta.get("hint", "")
    hint = f" ({hint})" if hint else ""
    if minimum is not None and meta.get("exclusive") and value <= minimum:
        raise _got(error, key, value, f"{kind} > {minimum:g}{hint}")
    if minimum is not None and value < minimum:
        raise _got(error, key, value, f"{kind} >= {minimum:g}{hint}")
    if maximum is not None and value > maximum:
        raise _got(error, key, value, f"{kind} from {minimum:g} to {maximum:g}{hint}")


def _is_optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)
