"""One place for how every figure looks: size, fonts, colours, axes that stay readable.

The figures are read in MLflow's artifact viewer at about 900 px wide, so a figure is at most
``WIDTH`` inches at ``DPI`` (1000 px) and no text is smaller than ``SMALL`` points. Rules the
helpers enforce:

- log axes always carry labelled ticks, also when the data span less than a decade;
- step axes have integer ticks;
- titles are wrapped to the figure's width, never cut;
- jobs of a sweep get one of ``len(JOB_STYLES)`` (20) distinct colour-and-marker styles.
"""

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402

from ..history import finite  # noqa: E402,F401  (views import it from here)

DPI = 100
WIDTH = 10.0  # inches: 1000 px, shown at ~900 px in the UI
SMALL, NORMAL, TITLE = 8, 9, 10  # font sizes (points)
LAYER_CMAP = "viridis"

# 20 distinct styles: matplotlib's ten default colours with dots, then ten more colours
# (none close to the first ten) with squares, so two jobs never share a look.
_EXTRA = ("#000000", "#b8860b", "#00bcd4", "#800000", "#7cb342", "#1a237e", "#ff4081",
          "#5d4037", "#00897b", "#9e9d24")
JOB_STYLES = tuple([{"color": c, "marker": "o"} for c in plt.get_cmap("tab10").colors]
                   + [{"color": c, "marker": "s"} for c in _EXTRA])
JOB_COLORS = tuple(s["color"] for s in JOB_STYLES)


def layout(fig, top=0.88, bottom=0.12, left=0.08, right=0.98, wspace=0.25, hspace=0.35):
    """Fixed margins: tight_layout costs more than drawing these figures."""
    fig.subplots_adjust(top=top, bottom=bottom, left=left, right=right, wspace=wspace,
                        hspace=hspace)


def title(fig, text, top_inches=None):
    """A suptitle wrapped to the figure's width (about 15 characters per inch at 10 pt);
    returns the number of lines so callers can leave room for it."""
    width = max(20, int(fig.get_figwidth() * 15))
    lines = textwrap.wrap(text, width) or [""]
    fig.suptitle("\n".join(lines), fontsize=TITLE)
    return len(lines)


def top_margin(fig, lines, extra=0.25):
    """``top`` for ``layout`` leaving room for a title of ``lines`` lines."""
    return 1 - (0.22 * lines + extra) / fig.get_figheight()


def log_axis(ax, axis="y"):
    """Log scale with labelled ticks whatever the range: decades when the data span several,
    1-2-5 ticks when they span less than one (where plain decades would leave the axis bare).
    No minor tick objects (building ~100 of them dominates save time)."""
    getattr(ax, f"set_{axis}scale")("log")
    which = getattr(ax, f"{axis}axis")
    lo, hi = (ax.get_ylim() if axis == "y" else ax.get_xlim())
    decades = np.log10(hi / lo) if lo > 0 and hi > 0 else 99
    if decades < 1.5:
        which.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        which.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    else:
        which.set_major_locator(mticker.LogLocator(base=10, numticks=8))
    which.set_minor_locator(mticker.NullLocator())


def step_axis(ax, label="optimizer step"):
    """Integer ticks on an optimizer-step axis (a run diverged at step 1 has no 0.2, 0.4...)."""
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True, nbins=6))
    ax.set_xlabel(label, fontsize=SMALL)


def layer_axis(ax, depth, label="layer l (1 = next to the input)"):
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True, nbins=min(depth, 12)))
    ax.set_xlabel(label, fontsize=SMALL)


def legend_outside(ax, **kwargs):
    """A legend to the right of the axes, outside the data."""
    opts = {"fontsize": SMALL, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
            "borderaxespad": 0.0, "frameon": False}
    opts.update(kwargs)
    return ax.legend(**opts)


def thin(n, most=600):
    """Row indices for plotting at most ~``most`` points (keeps the last one)."""
    stride = max(1, n // most)
    idx = np.arange(0, n, stride)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def has_points(v):
    return np.isfinite(v).any()


def job_style(i):
    """Colour and marker of the i-th job of a sweep, the same in every figure."""
    return JOB_STYLES[i % len(JOB_STYLES)]


def job_color(i):
    return job_style(i)["color"]


def layer_colors(depth):
    cmap = plt.get_cmap(LAYER_CMAP)
    return [cmap(x) for x in np.linspace(0.0, 0.9, depth)]


def layers_shown(depth, most=12):
    """All layers for shallow nets, an even sample (always first and last) for deep ones."""
    if depth <= most:
        return list(range(1, depth + 1))
    return sorted(set(np.linspace(1, depth, most).round().astype(int).tolist()))
