"""Figures that need the data and the trained network, not only the run's history.

- ``decision_boundary``: a 2-D binary classifier's boundary with its training points, at
  initialization and at the end of training (circles, moons, spiral).
- ``misclassified_digits``: a grid of test digits the net gets wrong.
- ``data_figures``: the ones that apply to a data set, ``{file name: Figure}``.

Figures are built with ``matplotlib.figure.Figure`` directly, never through pyplot, so nothing
is registered in pyplot's global state (no figure to leak, nothing for the caller to close).
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .style import DPI

GRID_POINTS = 150  # per axis of the decision-boundary grid
BOUNDARY_CMAP = "RdBu"  # P(y=1): 0 red, 1 blue; points use the same ends
CLASS_COLORS = ("#c0392b", "#1f5fa8")
WRONG, RIGHT = "#d62728", "#2ca02c"


def _figure(width, height):
    return Figure(figsize=(width, height), dpi=DPI)


def _margins(fig, top=0.86, bottom=0.12, left=0.08, right=0.98, wspace=0.25, hspace=0.35):
    """Fixed margins: tight_layout costs more than drawing these figures."""
    fig.subplots_adjust(top=top, bottom=bottom, left=left, right=right, wspace=wspace,
                        hspace=hspace)


def _output(net, theta, X):
    """ŷ = A[L] for inputs X (n_x, m) at the flat parameters theta (net's layout)."""
    theta = np.ascontiguousarray(theta, dtype=net.dtype)
    if theta.shape != net.theta.shape:
        raise ValueError(f"theta has shape {theta.shape}; expected {net.theta.shape} (the "
                         "network's flat parameter vector, e.g. net.theta.copy() before "
                         "training)")
    X = np.ascontiguousarray(X, dtype=net.dtype)
    return np.asarray(net.kernels.forward(theta, *net.layout, X), dtype=float)


def _binary_accuracy(A, Y):
    """Share of columns with (ŷ > 0.5) == (y > 0.5); NaN when there are none or ŷ isn't finite."""
    if Y.shape[1] == 0 or not np.all(np.isfinite(A)):
        return np.nan
    return float(np.mean((A[0] > 0.5) == (Y[0] > 0.5)))


def _percent(x):
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f} %"


# --- decision boundary ---------------------------------------------------------------------------

def is_2d_binary(dataset):
    return dataset.n_x == 2 and dataset.n_y == 1 and dataset.task == "binary"


def decision_boundary(net_init_theta, net, dataset, title=""):
    """Two panels, at initialization (``net_init_theta``: a copy of the flat parameters taken
    before training) and at the end (``net.theta``): a filled contour of the net's output
    P(y=1) on a grid over the data's range, its 0.5 level as a line, and the training points
    coloured by label. Drawn in the network's input coordinates (normalized if the run
    normalized its inputs). Figure axes: the two panels and a colour bar."""
    if not is_2d_binary(dataset):
        raise ValueError(f"decision_boundary needs a 2-D binary data set (n_x = 2, one 0/1 "
                         f"output); {dataset.name!r} has n_x = {dataset.n_x}, n_y = "
                         f"{dataset.n_y}, task {dataset.task!r}")
    X_all = np.concatenate([dataset.X_train, dataset.X_test], axis=1)
    lo, hi = X_all.min(axis=1), X_all.max(axis=1)
    pad = 0.08 * np.maximum(hi - lo, 1e-9)
    g0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID_POINTS)
    g1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID_POINTS)
    G0, G1 = np.meshgrid(g0, g1)
    grid = np.stack([G0.ravel(), G1.ravel()])
    sigmoid_out = net.output_activation == "sigmoid"
    what = "P(y=1)" if sigmoid_out else f"network output ŷ ({net.output_activation}, clipped)"
    coords = "normalized input" if dataset.mu is not None else "input"
    y_train = dataset.Y_train[0] > 0.5
    levels = np.linspace(0.0, 1.0, 11)
    cmap = colormaps[BOUNDARY_CMAP]

    fig = _figure(10, 4.6)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    filled = None
    for ax, theta, when in ((axes[0], net_init_theta, "at initialization"),
                            (axes[1], net.theta, "after training")):
        surface = _output(net, theta, grid)[0].reshape(G0.shape)
        acc_train = _binary_accuracy(_output(net, theta, dataset.X_train), dataset.Y_train)
        acc_test = (_binary_accuracy(_output(net, theta, dataset.X_test), dataset.Y_test)
                    if dataset.X_test.shape[1] else np.nan)
        if np.all(np.isfinite(surface)):
            P = np.clip(surface, 0.0, 1.0)
            filled = ax.contourf(G0, G1, P, levels=levels, cmap=cmap, vmin=0, vmax=1,
                                 alpha=0.55)
            if P.min() < 0.5 < P.max():
                ax.contour(G0, G1, P, levels=[0.5], colors="k", linewidths=1.5)
            else:
                side = ("= 0.5 (flat)" if np.ptp(P) < 1e-12 else
                        "≥ 0.5" if P.min() >= 0.5 else "≤ 0.5")
                ax.text(0.5, 0.03, f"no 0.5 boundary: output {side} everywhere",
                        transform=ax.transAxes, ha="center", fontsize=8,
                        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        else:
            ax.text(0.5, 0.5, "output not finite\n(the run diverged)", transform=ax.transAxes,
                    ha="center", va="center", fontsize=10, color=WRONG, zorder=5,
                    bbox={"facecolor": "white", "alpha": 0.9, "lw": 0})
        for label, color in ((False, CLASS_COLORS[0]), (True, CLASS_COLORS[1])):
            pts = dataset.X_train[:, y_train == label]
            ax.scatter(pts[0], pts[1], s=11, c=color, edgecolors="k", linewidths=0.4,
                       label=f"train, y = {int(label)}")
        ax.set_title(f"{when}: accuracy train {_percent(acc_train)}, test "
                     f"{_percent(acc_test)}", fontsize=9)
        ax.set_xlabel(f"x1 ({coords})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(g0[0], g0[-1])
        ax.set_ylim(g1[0], g1[-1])
    axes[0].set_ylabel(f"x2 ({coords})", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper right", framealpha=0.8)
    cax = fig.add_axes([0.92, 0.12, 0.015, 0.74])
    if filled is not None:
        fig.colorbar(filled, cax=cax, ticks=[0, 0.25, 0.5, 0.75, 1])
    cax.set_ylabel(what + "; black line: 0.5", fontsize=8)
    cax.tick_params(labelsize=7)
    fig.suptitle(title or f"Decision boundary on {dataset.name}", fontsize=10)
    _margins(fig, top=0.88, left=0.07, right=0.9, wspace=0.08)
    return fig


# --- misclassified digits ------------------------------------------------------------------------

def misclassified_digits(net, dataset, most=40, title=""):
    """A grid of up to ``most`` test digits: those the net gets wrong first (most confident
    mistakes first), titled "pred p / true t" in red; if fewer are wrong, the rest of the grid
    shows correctly classified ones in green. Images are shown in pixel units (normalization
    undone with the data set's mu and sigma). One axis per image shown."""
    X, Y = dataset.X_test, dataset.Y_test
    if dataset.n_x != 64 or X.shape[1] == 0:
        raise ValueError(f"misclassified_digits needs 8x8 images and a test set; "
                         f"{dataset.name!r} has n_x = {dataset.n_x} and "
                         f"{X.shape[1]} test examples")
    A = _output(net, net.theta, X)
    ok_cols = np.all(np.isfinite(A), axis=0)
    pred = np.where(ok_cols, np.argmax(np.nan_to_num(A, nan=-np.inf), axis=0), -1)
    true = np.argmax(Y, axis=0)
    conf = np.where(ok_cols, np.nan_to_num(A, nan=0.0).max(axis=0), np.inf)
    wrong = np.flatnonzero(pred != true)
    right = np.flatnonzero(pred == true)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    shown = np.concatenate([wrong, right])[:max(0, int(most))]
    pixels = X if dataset.mu is None else X * dataset.sigma + dataset.mu
    accuracy = float(np.mean(pred == true))

    cols = min(8, max(1, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = _figure(1.15 * cols + 0.3, 1.3 * rows + 0.8)
    for i, col in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(pixels[:, col].reshape(8, 8), cmap="gray_r", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        bad = pred[col] != true[col]
        p = "?" if pred[col] < 0 else str(pred[col])
        ax.set_title(f"pred {p} / true {true[col]}", fontsize=7, color=WRONG if bad else RIGHT,
                     fontweight="bold" if bad else "normal")
        ax.set_axis_off()
        if bad:  # a red frame reads at a glance; axis_off hides spines, so draw a rectangle
            ax.add_patch(_frame(ax, WRONG))
    n_wrong = len(wrong)
    note = (f"test accuracy {_percent(accuracy)}: {n_wrong} of {X.shape[1]} test digits wrong"
            f" (red, most confident first)")
    if len(shown) > n_wrong:
        note += "; green: correctly classified, to fill the grid"
    if not ok_cols.all():
        note += "; '?': output not finite"
    fig.suptitle((title + "\n" if title else "") + note, fontsize=9)
    head = 0.55 + (0.2 if title else 0.0)
    _margins(fig, top=1 - head / fig.get_figheight(), bottom=0.02, left=0.02, right=0.98,
             wspace=0.15, hspace=0.45)
    return fig


def _frame(ax, color):
    from matplotlib.patches import Rectangle
    return Rectangle((-0.5, -0.5), 8, 8, fill=False, edgecolor=color, linewidth=2,
                     transform=ax.transData, clip_on=False)


# --- what applies to a data set ------------------------------------------------------------------

def data_figures(net, initial_theta, dataset, title=""):
    """{file name: Figure} for the figures that need the data: the decision boundary for a
    2-D binary set, the misclassified test digits for ``digits``, nothing for regression.
    ``initial_theta`` is ``net.theta.copy()`` taken before training."""
    figures = {}
    if is_2d_binary(dataset):
        figures["decision_boundary.png"] = decision_boundary(initial_theta, net, dataset, title)
    if _has_test_digits(dataset):
        figures["misclassified_digits.png"] = misclassified_digits(net, dataset, title=title)
    return figures


def _has_test_digits(dataset):
    return dataset.name == "digits" and dataset.X_test.shape[1] > 0


def has_data_figures(dataset):
    """Does :func:`data_figures` draw anything for this data set (a regression set: no)?"""
    return is_2d_binary(dataset) or _has_test_digits(dataset)


__all__ = ["data_figures", "decision_boundary", "has_data_figures", "is_2d_binary",
           "misclassified_digits"]
