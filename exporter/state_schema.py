"""The state file's schema (exporter.storage): parse(raw) gives the document that
Exporter.dump_totals wrote, every key and type checked, or raises StateError naming the first
bad key. The restore code then indexes and converts without a guard.

Every number in the file is a count, a total, a rate or a Unix time: finite and from 0 to
MAX_NUMBER. NaN and Infinity literals, negative values and larger ones refuse the whole file
(exporter.storage sets it aside): restoring what is left would mix totals of different runs.
"""

from __future__ import annotations

import json

from exporter.series import MAX_COUNT
from exporter.validation import InputError, show

VERSION = 1
MAX_NUMBER = MAX_COUNT  # what the running exporter counts up to (exporter.series), and no further


class StateError(InputError):
    """The state file is not usable: one line, `KEY: PROBLEM`."""

    @staticmethod
    def show_value(value) -> str:
        return describe(value)


def describe(value) -> str:
    """A value for an error message; a container by its size (never rendered: it may be huge or deep)."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return show(value, limit=40)


# A check is a function (value, key) that raises StateError or returns None.

def _number(value, key: str) -> None:
    # bool is an int to Python; comparing an int of any size with a float never overflows
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_NUMBER:
        raise StateError.got(key, value, f"a number from 0 to {MAX_NUMBER:.0f}")


def _whole(value, key: str) -> None:
    _number(value, key)
    if not float(value).is_integer():
        raise StateError.got(key, value, "a whole number >= 0")


def _text(value, key: str) -> None:
    if not isinstance(value, str):
        raise StateError.got(key, value, "a string")


def _flag(value, key: str) -> None:
    if not isinstance(value, bool):
        raise StateError.got(key, value, "true, false")


def _nullable(check):
    def nullable(value, key: str) -> None:
        if value is not None:
            check(value, key)
    return nullable


def _mapping(required: dict, optional: dict | None = None):
    """A JSON object with these keys (others are ignored: nothing reads them)."""
    def mapping(value, key: str) -> None:
        if not isinstance(value, dict):
            raise StateError.got(key, value, "a mapping")
        for name, check in required.items():
            if name not in value:
                raise StateError(_join(key, name), "required key is missing")
            check(value[name], _join(key, name))
        for name, check in (optional or {}).items():
            if name in value:
                check(value[name], _join(key, name))
    return mapping


def _dict_of(check):
    def dict_of(value, key: str) -> None:
        if not isinstance(value, dict):
            raise StateError.got(key, value, "a mapping")
        for name, item in value.items():
            check(item, _join(key, name))
    return dict_of


def _list_of(check):
    def list_of(value, key: str) -> None:
        if not isinstance(value, list):
            raise StateError.got(key, value, "a list")
        for i, item in enumerate(value):
            check(item, f"{key}[{i}]")
    return list_of


def _row(*checks):
    """A fixed-length list: a tuple, as JSON writes it."""
    def row(value, key: str) -> None:
        if not isinstance(value, list) or len(value) != len(checks):
            raise StateError.got(key, value, f"a list of {len(checks)} items")
        for i, (check, item) in enumerate(zip(checks, value, strict=True)):
            check(item, f"{key}[{i}]")
    return row


def _join(key: str, name) -> str:
    return f"{key}.{name}" if key else str(name)


_ACCOUNTANT = _mapping({
    "mode": _text, "currency": _text, "components": _dict_of(_number),
    "engines": _dict_of(_row(_number, _number, _number)),  # spend, joules, idle spend
    "energy_cost": _number, "overhead_joules": _number, "co2e_grams": _number, "opex": _number,
    "last_time": _nullable(_number), "last_gpu_energy": _dict_of(_number), "last_requests": _number},
    {"unallocated": _number,  # spend on the GPUs no engine holds (absent from files before issue 14)
     "boot_id": _text, "interruptions": _whole})  # exporter.interruptions (absent from files before issue 15)

_GPU = _mapping({"uuid": _text, "energy_joules": _number},
                {"last_counter_mj": _nullable(_number), "last_power": _nullable(_number),
                 "last_time": _nullable(_number)})

_SERIES = _mapping({  # series.SeriesTotals.state()
    "baselined": _flag, "resets": _whole,
    "totals": _list_of(_row(_text, _text, _text, _number)),  # model, kind, quantity, total
    "last_raw": _list_of(_row(_text, _text, _text, _list_of(_row(_text, _text)), _number))},  # ..., labels, raw
    {"watch_start": _nullable(_number)})

_ENGINE = _mapping({"url": _text, "totals": _SERIES, "api_spend": _list_of(_row(_text, _text, _number)),
                    "last_seen": _dict_of(_number), "observed_peak": _number},
                   {"api_tiers": _dict_of(_text)})  # API -> tier of its api_spend (absent before issue 15: standard)

_MODELS = _mapping({}, {  # exporter.modelsplit's export_state(); absent from files before issue 14
    "spend": _list_of(_row(_text, _text, _text, _number)),  # engine, model, phase, spend
    "savings": _list_of(_row(_text, _text, _number)), "cached": _list_of(_row(_text, _text, _number)),
    "pending": _dict_of(_number)})

_DOCUMENT = _mapping({"clean": _flag, "accountant": _ACCOUNTANT, "gpus": _list_of(_GPU),
                      "engines": _dict_of(_ENGINE)}, {"saved_at": _number, "models": _MODELS})


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse(raw: bytes) -> dict:
    """The state document in `raw`, checked, or StateError."""
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise StateError("", "not valid JSON: nested too deep") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an int of over 4,300 digits
        raise StateError("", "not valid JSON: " + " ".join(str(err).split())[:200]) from None
    version = document.get("version") if isinstance(document, dict) else None
    if isinstance(version, bool) or version != VERSION:  # True == 1 to Python
        raise StateError("version", f"not a version {VERSION} state file")
    _DOCUMENT(document, "")
    return document
