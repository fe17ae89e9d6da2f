"""How an invalid web config is told: one line naming the key, never a secret's value.

The web config holds bcrypt hashes and may hold inline private keys, and people put secrets in the
wrong key: a value that may be one is never echoed, whatever key it was found under.
"""

from __future__ import annotations

import re

from exporter import validation

_BCRYPT_ANYWHERE = re.compile(r"\$2[abxy]?\$\d\d\$")
HIDDEN = "<a value not shown: it may be a secret>"


class WebConfigError(validation.InputError):
    """An invalid web config: `KEY: got VALUE, allowed: WHAT`, VALUE shown by show()."""

    @staticmethod
    def show_value(value) -> str:
        return show(value)


def may_be_secret(value) -> bool:
    """A PEM block, a bcrypt hash or anything multi-line."""
    return isinstance(value, str) and ("-----BEGIN" in value or "\n" in value or bool(_BCRYPT_ANYWHERE.search(value)))


def show(value) -> str:
    """A value for an error message: validation.show(), except that a value that may be a secret
    is replaced by a placeholder and a list or mapping by its type (its items may be secrets)."""
    if may_be_secret(value):
        return HIDDEN
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__}"
    return validation.show(value, limit=60)
