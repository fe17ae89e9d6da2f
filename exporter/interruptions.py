"""Node interruptions: a spot reclaim, an eviction or a reboot, seen when the exporter starts.

The kernel draws a new boot id at every boot (/proc/sys/kernel/random/boot_id; not namespaced, so
a container reads the host's). The exporter saves it with its totals (--storage.path); starting
with saved totals whose boot id differs means the node went down and came back since: one
interruption. Its warm-up waste is the spend of the `pricing.interruptions.warmup` seconds after
the start (or until every engine answers, with `until_ready`), while the models load and no token
can be served (exporter.accounting books it as the
`interruption_warmup` component instead of `instance`, or of `amortization` and `fixed`).

Not seen: a node replaced by a new one (a new node has no saved totals, unless --storage.path is
on a volume that follows the node's name), and a crash without a final write that is not restored.
"""

from __future__ import annotations

import logging

from exporter.validation import InputError, read_file

log = logging.getLogger("exporter")

MAX_BOOT_ID_BYTES = 256  # a UUID and a newline


def read_boot_id(path: str) -> str:
    """The boot id in `path`, or "" where it cannot be read (then no interruption is ever seen)."""
    try:
        return read_file(path, "pricing.interruptions.boot_id_file", max_bytes=MAX_BOOT_ID_BYTES).decode(
            "ascii", "replace").strip()
    except InputError as err:
        log.warning("boot id not read, node interruptions are not counted: %s", err)
        return ""


def interrupted(saved_boot_id: str | None, boot_id: str) -> bool:
    """Did the node boot again since the totals were saved? Unknown on either side: no."""
    return bool(saved_boot_id) and bool(boot_id) and saved_boot_id != boot_id
