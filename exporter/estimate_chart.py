"""`estimate --output`: the cost per 1M tokens against utilization, as a PNG.

One curve for the hardware, one line per API in its own colour and dash (so they stay apart in
greyscale too), each API's break-even point labelled exactly as the table prints it, and the
scenario's own utilization marked. Needs matplotlib (the `charts` extra); every failure, its
absence included, is one ChartError line.
"""

from __future__ import annotations

from exporter.validation import InputError

DASHES = ("--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 3)), (0, (1, 3)))
CURVE_POINTS = 200


class ChartError(InputError):
    """The chart cannot be written: `--output: WHY`."""


def breakeven_text(b: float | None) -> str:
    """How a break-even utilization reads, on the chart and in estimate's table alike."""
    if b is None:
        return "never (the API is free)"
    return f"{b:.1%}" + (" (unreachable)" if b > 1 else "")


def write(figures: dict, path: str) -> None:
    if "sweep" not in figures:
        raise ChartError("--output", "no chart: the scenario gives no capacity (capacity_tokens_per_s) to sweep")
    try:
        import matplotlib
    except ImportError:
        raise ChartError("--output", "needs matplotlib: pip install 'llm-cost-exporter[charts]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        out = open(path, "wb")  # noqa: SIM115 - closed below; opened first so that a bad path fails before drawing
    except OSError as err:
        raise ChartError("--output", f"cannot write {path!r}: {err.strerror}") from None
    fig = _draw(plt, figures)
    try:
        with out:
            fig.savefig(out, format="png")
    except OSError as err:
        raise ChartError("--output", f"cannot write {path!r}: {err.strerror}") from None
    finally:
        plt.close(fig)


def _draw(plt, figures: dict):
    full, currency = figures["cost_per_million_at_full_utilization"], figures.get("currency", "USD")
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    xs = [100 * (i + 1) / CURVE_POINTS for i in range(CURVE_POINTS)]
    ax.plot(xs, [full * 100 / x for x in xs], color="C0", linewidth=2, label="self-hosted cost per 1M tokens")
    ax.plot([p["utilization"] * 100 for p in figures["sweep"]], [p["cost_per_million"] for p in figures["sweep"]],
            "o", color="C0", markersize=4)
    u, actual = figures["utilization"], figures.get("cost_per_million")
    ax.axvline(u * 100, color="0.3", linewidth=1)
    ax.plot([u * 100], [actual], "D", color="black", markersize=7, zorder=5,
            label=f"this scenario: {u:.1%} utilization, {actual:,.4f} per 1M")
    for i, (name, row) in enumerate(figures.get("apis", {}).items()):
        color, dash = f"C{(i + 1) % 10}", DASHES[i % len(DASHES)]
        price, b = row["api_blended_per_million"], row.get("breakeven_utilization")
        ax.axhline(price, color=color, linestyle=dash, linewidth=1.5,
                   label=f"{name} ({row['tier']}): {price:,.4f} per 1M; break-even {breakeven_text(b)}")
        if b is not None and b <= 1:
            ax.plot([b * 100], [price], "o", color=color, markersize=8, markerfacecolor="none", markeredgewidth=2)
            ax.annotate(breakeven_text(b), (b * 100, price), textcoords="offset points", xytext=(6, 6), color=color)
    ax.set_yscale("log")
    ax.set_xlim(0, 100)
    ax.set_xlabel("utilization (%)")
    ax.set_ylabel(f"cost per 1M tokens ({currency})")
    ax.set_title("Cost per 1M tokens against utilization")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
