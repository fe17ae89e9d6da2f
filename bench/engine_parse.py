#!/usr/bin/env python3
"""Engine parse: reading only the lines the engine map uses, against parsing every line, on the
same pages in the same run.

    .venv/bin/python bench/engine_parse.py            # 7 repeats of 20 parses per page
    .venv/bin/python bench/engine_parse.py --quick    # smoke test size

Pages: every real fixture of tests/data/engines (their bytes as the engines served them, 2.5 to
620 kB), and vLLM 0.33.0's real two-rank page grown to about 40 kB and 400 kB by adding models
(the 40 kB page is its first rank alone; the 400 kB one adds models, each model's series the
real page's, renamed, the families grouped as a real server groups them). Each page is parsed with its engine map both ways, interleaved; the readings must
be equal. Target: the selective parse takes at most 0.2x the full parse on the 40 kB and 400 kB
vLLM pages (exit 1 if not, after the repeats; the median of the repeats is what is compared).
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

import _common

NAME = "engine_parse"
ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "engines"
VLLM_PAGE = DATA / "vllm" / "v1-0.33.0-dp2-text-0.0.4.txt"
MODEL = "Qwen/Qwen3-0.6B"
TARGET_RATIO = 0.2
TARGET_PAGES = ("vllm-40kB", "vllm-400kB")


def content_types() -> dict[str, str]:
    """fixture path -> the Content-Type it was served with (SOURCES.md)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_engine_fixtures import sources_table

    return {name: row["Content-Type"] for name, row in sources_table().items()}


def grown_vllm_page(target_bytes: int) -> str:
    """The real vLLM page cut to its first rank (42 kB) or grown to about target_bytes by more
    models: each family's samples repeated per model, under the family's own # HELP / # TYPE."""
    families: list[tuple[list[str], list[str]]] = []  # (metadata lines, sample lines)
    one_rank = target_bytes < VLLM_PAGE.stat().st_size
    for line in VLLM_PAGE.read_text().splitlines():
        if line.startswith("#"):
            if not families or families[-1][1]:
                families.append(([], []))
            families[-1][0].append(line)
        elif line and not (one_rank and 'engine="1"' in line):
            families[-1][1].append(line)
    per_model = sum(len(line) + 1 for _, samples in families for line in samples)
    models = max(1, round(target_bytes / per_model))
    out = []
    for metadata, samples in families:
        out += metadata
        for i in range(models):
            out += [s.replace(MODEL, f"org/model-{i}") if i else s for s in samples]
    return "\n".join(out) + "\n"


def pages() -> list[tuple[str, str, str, str]]:
    """(name, engine kind, Content-Type, body)."""
    types = content_types()
    out = [("vllm-40kB", "vllm", "text/plain; version=0.0.4; charset=utf-8", grown_vllm_page(40_000)),
           ("vllm-400kB", "vllm", "text/plain; version=0.0.4; charset=utf-8", grown_vllm_page(400_000))]
    for path in sorted(p for p in DATA.rglob("*.txt") if p.parent != DATA):
        name = str(path.relative_to(DATA))
        out.append((name, path.relative_to(DATA).parts[0], types[name], path.read_text()))
    return out


def timed(parse, repeats: int, n: int) -> list[float]:
    """Seconds per parse, one figure per repeat (the mean of n parses)."""
    figures = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            parse()
        figures.append((time.perf_counter() - started) / n)
    return figures


def measure(kind: str, content_type: str, body: str, repeats: int, n: int) -> dict | None:
    from exporter.engines.parse import ParseError, parse_exposition
    from exporter.engines.schemas import bundled

    schema = bundled()[kind]
    try:
        full = parse_exposition(content_type, body, schema, selective=False)
    except ParseError:
        return None  # a page with no token series yet (Dynamo before any model): nothing to time
    same = parse_exposition(content_type, body, schema) == full
    full_s, selective_s = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine
        full_s += timed(lambda: parse_exposition(content_type, body, schema, selective=False), 1, n)
        selective_s += timed(lambda: parse_exposition(content_type, body, schema), 1, n)
    return {"bytes": len(body.encode()), "same_readings": same,
            "full_ms": [1000 * s for s in full_s], "selective_ms": [1000 * s for s in selective_s],
            "ratio_median": statistics.median(selective_s) / statistics.median(full_s)}


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--parses", type=int, default=20, help="parses per repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.parses = 2, 2
    load_before = _common.loadavg()
    results = {}
    for name, kind, content_type, body in pages():
        figures = measure(kind, content_type, body, args.repeats, args.parses)
        if figures is not None:
            results[name] = figures
    targets = {f"{page}_ratio_le_{TARGET_RATIO}": results[page]["ratio_median"] <= TARGET_RATIO for page in TARGET_PAGES}
    targets["same_readings_on_every_page"] = all(r["same_readings"] for r in results.values())
    result = {"name": NAME, "machine": _common.machine(), "loadavg_before": load_before,
              "loadavg_after": _common.loadavg(), "quick": args.quick, "repeats": args.repeats, "parses": args.parses,
              "pages": results, "targets": targets}
    path = _common.write_results(args.results_dir, NAME, result)

    def spread(values):
        return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"

    rows = [[name, f"{r['bytes'] / 1000:.1f}", spread(r["full_ms"]), spread(r["selective_ms"]), f"{r['ratio_median']:.3f}",
             "yes" if r["same_readings"] else "NO"] for name, r in results.items()]
    print(_common.table(["page", "kB", "full parse ms (min/median/max)", "selective ms (min/median/max)",
                         "ratio (medians)", "same readings"], rows))
    print(f"\n{args.repeats} repeats of {args.parses} parses each way, interleaved; load average {load_before} -> "
          f"{result['loadavg_after']}\nwrote {path}")
    return _common.verdict(targets, args.quick)


if __name__ == "__main__":
    sys.exit(main())
