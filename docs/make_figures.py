"""Draw the figures of docs/ from minicnn's own kernels, on the small numbers the pages work by hand.

    python docs/make_figures.py [--out docs/figures]        (or: make figures)

Every number in a figure is computed here by minicnn (``Conv2d``, ``MaxPool2d``, ``BatchNorm1d``,
``CrossEntropyLoss``, ``SGD``, the functional ``im2col``/``col2im`` and ``linear_forward``,
``numerical_gradient``), except the benchmark figures' (history, per machine, under load), read from the kept runs in
``benchmarks/results/``; each is also written to ``figures.json``: the test suite runs this script
into a temporary folder and compares that file with the committed one, so a kernel change that
alters a figure fails CI until the figures are regenerated (``make figures``).
"""
import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn.functional import make_microkernels  # noqa: E402
from minicnn.functional.conv import col2im, conv2d_forward, im2col  # noqa: E402
from minicnn.functional.linear import linear_forward  # noqa: E402
from minicnn.testing import numerical_gradient  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/ is a folder of the checkout, not an installed package
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
DPI = 100

# The worked example of docs/convolution.md: a 3x3 ramp, one 2x2 kernel of ones, bias 0.5.
X_CONV = np.arange(9.0).reshape(1, 1, 3, 3)
# The tutorial's 5x5 example of docs/maxpool.md (3x3 pool, ceil_mode).
X_POOL = np.array([[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]],
                  dtype=np.float64).reshape(1, 1, 5, 5)


# ---------------------------------------------------------------------------
# Drawing helpers: a grid of numbers, cells addressed as (row, column)
# ---------------------------------------------------------------------------
def grid(ax, values, x0=0.0, y0=0.0, fill=None, fmt="{:g}", gray=(), title=None, fontsize=11):
    """Draw ``values`` (2-D) as a table of cells with its top-left corner at (x0, y0).

    ``fill`` maps (row, col) to a colour; cells in ``gray`` are drawn as padding.
    """
    fill = fill or {}
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            face = fill.get((r, c), "#eeeeee" if (r, c) in gray else "white")
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=face, edgecolor="#555555", lw=0.8,
                                   alpha=0.55 if (r, c) in fill else 1.0))
            text = "" if np.isnan(values[r, c]) else fmt.format(values[r, c])  # nan: not computed yet
            ax.text(x0 + c + 0.5, y0 + r + 0.5, text, ha="center", va="center",
                    fontsize=fontsize, color="#888888" if (r, c) in gray else "black")
    if title:
        ax.text(x0 + cols / 2, y0 - 0.35, title, ha="center", va="bottom", fontsize=fontsize)


def outline(ax, cells, x0, y0, color, lw=2.5):
    """Outline each (row, col) of ``cells`` in ``color``."""
    for r, c in cells:
        ax.add_patch(Rectangle((x0 + c + 0.06, y0 + r + 0.06), 0.88, 0.88, fill=False, edgecolor=color, lw=lw))


def blank(ax, xlim, ylim):
    """Clear ``ax`` for a grid drawing: equal cell aspect, y growing downwards, no axes."""
    ax.clear()
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")


def canvas(width, height, figsize):
    fig, ax = plt.subplots(figsize=figsize)
    blank(ax, (-0.5, width + 0.5), (height + 0.5, -1.2))
    return fig, ax


def save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def conv_layer(padding=0, stride=1, dilation=1, weight=None):
    conv = mc.Conv2d(1, 1, 2, stride=stride, padding=padding, dilation=dilation, dtype=np.float64)
    conv.weight.data[...] = 1.0 if weight is None else weight
    conv.bias.data[...] = 0.5
    return conv


def window_cells(oh, ow, stride, padding, dilation, kernel=2):
    """The (row, col) cells of the padded input that window (oh, ow) reads."""
    return [(oh * stride + i * dilation, ow * stride + j * dilation) for i in range(kernel) for j in range(kernel)]


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------
def conv_forward_figure(out_dir, numbers):
    variants = [dict(padding=0, stride=1, dilation=1), dict(padding=1, stride=2, dilation=1),
                dict(padding=1, stride=1, dilation=2)]
    fig, axes = plt.subplots(len(variants), 1, figsize=(8, 7.2))
    numbers["conv_forward"] = []
    for ax, v in zip(axes, variants):
        p, s, d = v["padding"], v["stride"], v["dilation"]
        out = conv_layer(**v)(X_CONV)[0, 0]
        padded = np.pad(X_CONV[0, 0], p)
        size = padded.shape[0]
        gray = {(r, c) for r in range(size) for c in range(size) if not (p <= r < size - p and p <= c < size - p)}
        positions = [(0, 0), (0, out.shape[1] - 1), (out.shape[0] - 1, out.shape[1] - 1)]
        positions = list(dict.fromkeys(positions))[:3]
        grid(ax, padded, 0, 0, gray=gray, title=f"input, padding {p}")
        for k, (oh, ow) in enumerate(positions):
            outline(ax, window_cells(oh, ow, s, p, d), 0, 0, COLORS[k])
        kx = size + 1.2
        grid(ax, np.ones((2, 2)), kx, 0, title="kernel (+0.5)")
        ox = kx + 3.4
        grid(ax, out, ox, 0, fill={pos: COLORS[k] for k, pos in enumerate(positions)}, title="output")
        O = out.shape[0]
        ax.text(ox + O + 0.6, O / 2, f"stride {s}, dilation {d}\n"
                f"O = ⌊(3 + 2·{p} − {d}·(2−1) − 1)/{s}⌋ + 1 = {O}", va="center", fontsize=10)
        ax.set_xlim(-0.3, ox + O + 6.5)
        ax.set_ylim(max(size, O) + 0.3, -1.0)
        ax.set_aspect("equal")
        ax.axis("off")
        numbers["conv_forward"].append(dict(v, output=out.tolist()))
    fig.suptitle("Convolution forward: each coloured window gives the output cell of its colour")
    fig.tight_layout()
    save(fig, out_dir / "conv_forward.png")


def conv_window_gif(out_dir, numbers):
    """The window sliding over the padded worked example, one output cell per frame."""
    conv = conv_layer(padding=1)
    out = conv(X_CONV)[0, 0]
    padded = np.pad(X_CONV[0, 0], 1)
    gray = {(r, c) for r in range(5) for c in range(5) if not (1 <= r < 4 and 1 <= c < 4)}
    fig, ax = canvas(11, 6, (6.2, 3.4))
    frames = [(oh, ow) for oh in range(out.shape[0]) for ow in range(out.shape[1])]

    def draw(k):
        blank(ax, (-0.3, 10.8), (6.0, -1.0))
        oh, ow = frames[k]
        cells = window_cells(oh, ow, 1, 1, 1)
        grid(ax, padded, 0, 0, fill={c: COLORS[0] for c in cells}, gray=gray, title="input, padding 1")
        shown = np.where(np.arange(out.size).reshape(out.shape) <= k, out, np.nan)
        grid(ax, shown, 6, 0, fill={(oh, ow): COLORS[0]}, fmt="{:g}", title="output")
        ax.text(5.5, 5.4, f"out[{oh},{ow}] = sum of the window + 0.5 = {out[oh, ow]:g}", ha="center", va="center",
                fontsize=10)

    anim = animation.FuncAnimation(fig, draw, frames=len(frames))
    anim.save(out_dir / "conv_window.gif", writer=animation.PillowWriter(fps=2), dpi=100)
    plt.close(fig)
    numbers["conv_window"] = out.tolist()


def im2col_figure(out_dir, numbers):
    out, cache = conv2d_forward(X_CONV, np.ones((1, 1, 2, 2)), np.array([0.5]))
    cols = np.empty((4, 4))  # (C*KH*KW, N*OH*OW): the unfolded input, as conv2d_forward builds it
    im2col(X_CONV, 2, 2, *cache.geometry, cols)
    counts = np.zeros((1, 1, 3, 3))
    col2im(np.ones_like(cols), 1, 1, 3, 3, 2, 2, *cache.geometry, counts)
    fig, ax = canvas(24, 6, (12, 3.8))
    windows = [(0, 0), (0, 1), (1, 0), (1, 1)]
    grid(ax, X_CONV[0, 0], 0, 0.5, title="x: (1, 1, 3, 3)")
    for k, (oh, ow) in enumerate(windows):
        outline(ax, window_cells(oh, ow, 1, 0, 1), 0, 0.5, COLORS[k], lw=1.8 + 0.4 * k)
    grid(ax, cols, 5, 0, fill={(r, c): COLORS[c] for r in range(4) for c in range(4)},
         title="cols = im2col(x)")
    ax.text(7, 4.6, "(C·KH·KW, N·OH·OW) = (4, 4)\none column per window", ha="center", va="top", fontsize=9)
    for r, name in enumerate(["(0,0)", "(0,1)", "(1,0)", "(1,1)"]):
        ax.text(4.8, r + 0.5, f"tap {name}", ha="right", va="center", fontsize=8)
    grid(ax, np.ones((1, 4)), 11, 0.2, title="W: (F, Cg·KH·KW) = (1, 4)")
    ax.text(13, 1.9, "out = W @ cols + b", ha="center", va="center", fontsize=11)
    grid(ax, out.reshape(1, 4), 11, 3.0, fill={(0, c): COLORS[c] for c in range(4)},
         title="out: (F, N·OH·OW) = (1, 4)")
    grid(ax, counts[0, 0], 18.5, 0.5, title="col2im(ones)")
    ax.text(20, 4.0, "each pixel gets one add\nper window that covers it", ha="center", va="top", fontsize=9)
    ax.set_xlim(-0.3, 22.5)
    ax.set_ylim(5.6, -1.2)
    save(fig, out_dir / "conv_im2col.png")
    numbers["im2col"] = dict(cols=cols.tolist(), out=out.reshape(-1).tolist(), col2im_counts=counts[0, 0].tolist())


def conv_backward_figure(out_dir, numbers):
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    dout = np.array([[1.0, 0.0], [0.0, 2.0]])
    conv = conv_layer(weight=w)
    conv(X_CONV)
    dx = conv.backward(dout.reshape(1, 1, 2, 2))[0, 0]
    dw = conv.weight.grad[0, 0]
    # The same dx as a "full" convolution: dout padded by K-1 = 1, correlated with the flipped kernel.
    flipped = w[::-1, ::-1]
    full = np.pad(dout, 1)
    dx_full = np.array([[np.sum(full[r:r + 2, c:c + 2] * flipped) for c in range(3)] for r in range(3)])
    assert np.array_equal(dx, dx_full)
    dw_corr = np.array([[np.sum(X_CONV[0, 0, i:i + 2, j:j + 2] * dout) for j in range(2)] for i in range(2)])
    assert np.array_equal(dw, dw_corr)
    fig, ax = canvas(22, 9, (11, 5.2))
    gray = {(r, c) for r in range(4) for c in range(4) if not (1 <= r < 3 and 1 <= c < 3)}
    grid(ax, full, 0, 0, gray=gray, fill={(1, 1): COLORS[0], (2, 2): COLORS[1]}, title="dout, padded by K−1")
    outline(ax, [(0, 0), (0, 1), (1, 0), (1, 1)], 0, 0, COLORS[2])
    ax.text(4.6, 2, "⋆", fontsize=20, ha="center", va="center")
    grid(ax, flipped, 5.2, 1, title="flipped kernel")
    ax.text(8.0, 2, "=", fontsize=18, ha="center", va="center")
    grid(ax, dx, 8.8, 0.5, fill={(0, 0): COLORS[2]}, title="dx (conv.backward)")
    ax.text(13.0, 2, "dx: a “full” convolution of dout with the flipped kernel", fontsize=10, va="center")
    grid(ax, X_CONV[0, 0], 0, 5.5, title="x")
    outline(ax, [(0, 0), (0, 1), (1, 0), (1, 1)], 0, 5.5, COLORS[0])
    outline(ax, [(1, 1), (1, 2), (2, 1), (2, 2)], 0, 5.5, COLORS[1])
    ax.text(4.6, 7, "⋆", fontsize=20, ha="center", va="center")
    grid(ax, dout, 5.2, 6, fill={(0, 0): COLORS[0], (1, 1): COLORS[1]}, title="dout")
    ax.text(8.0, 7, "=", fontsize=18, ha="center", va="center")
    grid(ax, dw, 8.8, 6, title="dw (weight.grad)")
    ax.text(13.0, 7, "dw: x correlated with dout;\ndw[0,0] = 1·x[0,0] + 2·x[1,1] = 0 + 8", fontsize=10,
            va="center")
    ax.set_xlim(-0.3, 21.5)
    ax.set_ylim(9.0, -1.2)
    save(fig, out_dir / "conv_backward.png")
    numbers["conv_backward"] = dict(w=w.tolist(), dout=dout.tolist(), dx=dx.tolist(), dw=dw.tolist())


# ---------------------------------------------------------------------------
# Max-pooling
# ---------------------------------------------------------------------------
def maxpool_figure(out_dir, numbers):
    pool = mc.MaxPool2d(3, ceil_mode=True, return_indices=True)
    out, indices = pool(X_POOL)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = pool.backward(dout)[0, 0]
    # overlapping windows: one element wins all four and receives the sum
    x2 = np.zeros((1, 1, 4, 4))
    x2[0, 0, 1, 2] = 5.0
    pool2 = mc.MaxPool2d(3, stride=1)
    out2 = pool2(x2)
    dx2 = pool2.backward(dout)[0, 0]
    fig, ax = canvas(28, 6, (13, 3.6))
    winners = [divmod(int(k), 5) for k in indices[0, 0].ravel()]
    fill = {cell: COLORS[k] for k, cell in enumerate(winners)}
    grid(ax, X_POOL[0, 0], 0, 0, fill=fill, title="x; winners filled")
    for k, (oh, ow) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        cells = [(r, c) for r in range(3 * oh, min(3 * oh + 3, 5)) for c in range(3 * ow, min(3 * ow + 3, 5))]
        outline(ax, cells, 0, 0, COLORS[k], lw=1.5)
    grid(ax, out[0, 0], 6, 1.5, fill={(r, c): COLORS[2 * r + c] for r in range(2) for c in range(2)},
         title="out (ceil_mode)")
    grid(ax, dout[0, 0], 9, 1.5, fill={(r, c): COLORS[2 * r + c] for r in range(2) for c in range(2)},
         title="dout")
    grid(ax, dx, 12, 0, fill={cell: COLORS[k] for k, cell in enumerate(winners)}, title="dx: only winners")
    grid(ax, x2[0, 0], 18.5, 0.5, fill={(1, 2): COLORS[1]}, title="x (3×3, stride 1)")
    grid(ax, dx2, 23.5, 0.5, fill={(1, 2): COLORS[1]}, title="dx, same dout")
    ax.text(23, 5.0, f"overlap: the 5 wins all 4 windows and gets 1 + 2 + 3 + 4 = {dx2[1, 2]:g}", ha="center",
            va="top", fontsize=9)
    ax.set_xlim(-0.3, 27.8)
    ax.set_ylim(5.9, -1.2)
    save(fig, out_dir / "maxpool.png")
    numbers["maxpool"] = dict(out=out[0, 0].tolist(), indices=indices[0, 0].tolist(), dx=dx.tolist(),
                              overlap_out=out2[0, 0].tolist(), overlap_dx=dx2.tolist())


def maxpool_backward_gif(out_dir, numbers):
    """Overlapping windows (3x3, stride 1) route their gradients one at a time, adding up."""
    x = np.array([[3, 1, 2, 0], [1, 7, 2, 1], [0, 2, 8, 1], [1, 0, 2, 4]], dtype=np.float64).reshape(1, 1, 4, 4)
    pool = mc.MaxPool2d(3, stride=1, return_indices=True)
    out, indices = pool(x)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx_final = pool.backward(dout)[0, 0]
    fig, ax = canvas(15, 4, (6.4, 2.6))
    windows = [(0, 0), (0, 1), (1, 0), (1, 1)]
    steps = []
    dx = np.zeros((4, 4))
    for k, (oh, ow) in enumerate(windows):
        r, c = divmod(int(indices[0, 0, oh, ow]), 4)
        dx[r, c] += dout[0, 0, oh, ow]
        steps.append((k, (r, c), dx.copy()))
    assert np.array_equal(dx, dx_final)

    def draw(k):
        blank(ax, (-0.3, 14.8), (4.6, -1.0))
        step, winner, partial = steps[k]
        oh, ow = windows[step]
        cells = [(r, c) for r in range(oh, oh + 3) for c in range(ow, ow + 3)]
        grid(ax, x[0, 0], 0, 0, fill={winner: COLORS[step]}, title="x")
        outline(ax, cells, 0, 0, COLORS[step])
        grid(ax, dout[0, 0], 5, 1, fill={(oh, ow): COLORS[step]}, title="dout")
        grid(ax, partial, 8.5, 0, fill={winner: COLORS[step]}, title="dx += dout at the winner")

    anim = animation.FuncAnimation(fig, draw, frames=len(steps))
    anim.save(out_dir / "maxpool_backward.gif", writer=animation.PillowWriter(fps=1), dpi=100)
    plt.close(fig)
    numbers["maxpool_backward_gif"] = dict(x=x[0, 0].tolist(), dx=dx_final.tolist())


# ---------------------------------------------------------------------------
# Batch norm
# ---------------------------------------------------------------------------
def batchnorm_figure(out_dir, numbers):
    x = np.array([[0.5], [2.0], [1.0], [4.5], [3.0], [1.5]])
    dy = np.array([[1.0], [-0.5], [0.25], [0.0], [0.5], [-1.0]])
    bn = mc.BatchNorm1d(1, dtype=np.float64)
    y = bn(x)
    dx = bn.backward(dy)[:, 0]
    xhat, invstd = y[:, 0], 1.0 / np.sqrt(x.var() + bn.eps)  # gamma = 1, beta = 0
    terms = [invstd * dy[:, 0], -invstd * np.full(6, dy.mean()), -invstd * xhat * np.mean(dy[:, 0] * xhat)]
    assert np.allclose(sum(terms), dx, rtol=1e-12)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    i = np.arange(6)
    ax1.scatter(x[:, 0], np.ones(6), s=60, label="x (one channel, 6 values)")
    ax1.scatter(xhat, np.zeros(6), s=60, color=COLORS[1], label="xhat = (x − mean) / sqrt(var + eps)")
    for a, b in zip(x[:, 0], xhat):
        ax1.plot([a, b], [1, 0], color="#aaaaaa", lw=0.8)
    ax1.axvline(x.mean(), color=COLORS[0], ls=":", lw=1)
    ax1.axvline(0, color=COLORS[1], ls=":", lw=1)
    ax1.set_yticks([0, 1], ["after", "before"])
    ax1.set_title(f"mean {x.mean():.3g}, biased var {x.var():.3g} → mean 0, var 1")
    ax1.legend(loc="upper center", fontsize=8, bbox_to_anchor=(0.5, -0.15), ncol=1)
    width = 0.22
    labels = ["invstd·dy", "−invstd·mean(dy)", "−invstd·xhat·mean(dy·xhat)"]
    for k, (term, label) in enumerate(zip(terms, labels)):
        ax2.bar(i + (k - 1) * width, term, width, color=COLORS[k], label=label)
    ax2.plot(i, dx, "ko", label="dx = their sum (BatchNorm1d.backward)")
    ax2.axhline(0, color="black", lw=0.6)
    ax2.set_xticks(i, [f"x={v:g}" for v in x[:, 0]])
    ax2.set_title("the three terms of dx (γ = 1); dx sums to 0")
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    save(fig, out_dir / "batchnorm.png")
    numbers["batchnorm"] = dict(x=x[:, 0].tolist(), xhat=xhat.tolist(), dy=dy[:, 0].tolist(), dx=dx.tolist())


# ---------------------------------------------------------------------------
# Softmax and NLL
# ---------------------------------------------------------------------------
def softmax_figure(out_dir, numbers):
    logits = np.array([[2.0, 1.0, 0.1, -1.0]])
    target = np.array([0])
    crit = mc.CrossEntropyLoss()
    loss = float(crit(logits, target))
    grad = crit.backward()[0]
    logp = mc.LogSoftmax(dim=1)(logits)[0]
    p = np.exp(logp)
    assert np.allclose(grad, p - np.eye(4)[0], rtol=1e-12)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    k = np.arange(4)
    colors = [COLORS[1] if j == target[0] else COLORS[0] for j in k]
    axes[0].bar(k, logits[0], color=colors)
    axes[0].set_title("logits x")
    axes[1].bar(k, p, color=colors)
    axes[1].set_title(f"softmax p; loss = −log p[t] = {loss:.4f}")
    axes[2].bar(k, grad, color=colors)
    axes[2].set_title("dx = p − onehot(t)")
    for ax in axes:
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(k, [f"class {j}" + (" (t)" if j == target[0] else "") for j in k], fontsize=8)
    for j in k:
        axes[1].text(j, p[j], f"{p[j]:.3f}", ha="center", va="bottom", fontsize=8)
        axes[2].text(j, grad[j], f"{grad[j]:+.3f}", ha="center", va="bottom" if grad[j] > 0 else "top", fontsize=8)
    save(fig, out_dir / "softmax_nll.png")
    numbers["softmax_nll"] = dict(logits=logits[0].tolist(), p=p.tolist(), loss=loss, grad=grad.tolist())


def linear_figure(out_dir, numbers):
    """docs/linear.md: one output of Linear's fast forward as a dot product in lanes (4 lanes drawn,
    16 in a real AVX-512 vector), and an output split into AVX-512's tiles of 4 rows of x by 5 of W."""
    x = np.array([[1.0, 2, 0, -1, 3, 1, -2, 2]])
    w = np.array([[2.0, -1, 1, 3, 0, 2, 1, 1]])
    y = float(linear_forward(x, w)[0][0, 0])
    lanes = 4
    products = (x * w)[0].reshape(-1, lanes)                    # row j: the j-th vector of products
    lane_sums = products.sum(axis=0)                           # what each lane's chain of FMAs holds
    halving = [lane_sums]
    while halving[-1].size > 1:
        v = halving[-1]
        halving.append(v[:v.size // 2] + v[v.size // 2:])
    assert halving[-1][0] == y == (x @ w.T)[0, 0]
    rows, cols = make_microkernels.DOT_TILES[0]                 # AVX-512's tile
    M, N = 6, 7
    tile_of = np.array([[(m // rows) * -(-N // cols) + n // cols for n in range(N)] for m in range(M)])
    fig, ax = canvas(24, 8, (13, 4.4))
    grid(ax, x[:, :lanes], 0, 0, title="x[0, 0:4]")
    grid(ax, x[:, lanes:], 4.6, 0, title="x[0, 4:8]")
    grid(ax, w[:, :lanes], 0, 1.9, title="w[0, 0:4]")
    grid(ax, w[:, lanes:], 4.6, 1.9, title="w[0, 4:8]")
    grid(ax, products[:1], 0, 3.8, fill={(0, c): COLORS[c] for c in range(lanes)}, title="sums: 1st x·w")
    grid(ax, lane_sums[None], 4.6, 3.8, fill={(0, c): COLORS[c] for c in range(lanes)}, title="+ 2nd x·w (fma)")
    for k, v in enumerate(halving[1:]):
        grid(ax, v[None], 0.6 + 2.6 * k, 6.0, title="halves added" if k == 0 else "")
    ax.text(6.2, 6.5, f"= y[0, 0] = {y:g}", ha="left", va="center", fontsize=11)
    ax.text(4.3, 8.0, f"{lanes} lanes drawn; a vector holds 16 float32 with AVX-512", ha="center", va="center",
            fontsize=9)
    fill = {(m, n): COLORS[tile_of[m, n] % len(COLORS)] for m in range(M) for n in range(N)}
    grid(ax, np.full((M, N), np.nan), 12, 1, fill=fill,
         title=f"y ({M}×{N}), rows of x × rows of W: tiles of {rows} × {cols}")
    for t in range(tile_of.max() + 1):
        m0, n0 = divmod(t, -(-N // cols))
        ax.text(12 + n0 * cols + 0.5, 1 + m0 * rows + 0.5, f"tile {t}", ha="left", va="center", fontsize=9)
    ax.text(15.5, 7.6, "an edge tile repeats its last row of x or of W\nand stores only its own outputs",
            ha="center", va="top", fontsize=9)
    ax.set_xlim(-0.3, 19.5)
    ax.set_ylim(8.6, -1.2)
    save(fig, out_dir / "linear.png")
    numbers["linear"] = dict(x=x[0].tolist(), w=w[0].tolist(), lane_sums=lane_sums.tolist(),
                             halving=[v.tolist() for v in halving[1:]], y=y, tiles=tile_of.tolist())


def _sgd_path(start, gradient, steps, **settings):
    """The points a float64 parameter passes through under ``minicnn.SGD(**settings)``, the gradient
    at each point given by ``gradient(point)``."""
    p = mc.Parameter(np.array(start, dtype=np.float64))
    opt = mc.SGD([p], **settings)
    path = [p.data.copy()]
    for _ in range(steps):
        opt.zero_grad()
        p.grad += gradient(p.data)
        opt.step()
        path.append(p.data.copy())
    return np.array(path)


def sgd_figure(out_dir, numbers):
    """docs/sgd.md: minicnn.SGD's paths on a long bowl, and the step sizes when the learning rate
    drops, torch's buffer (minicnn.SGD) against a velocity with the learning rate inside it."""
    curvature = np.array([1.0, 10.0])                          # f(p) = (p0^2 + 10 p1^2) / 2

    def bowl(p):
        return curvature * p

    start, steps = [-4.0, 1.5], 30
    paths = {"plain": _sgd_path(start, bowl, steps, lr=0.05),
             "momentum 0.8": _sgd_path(start, bowl, steps, lr=0.05, momentum=0.8),
             "Nesterov, momentum 0.8": _sgd_path(start, bowl, steps, lr=0.05, momentum=0.8, nesterov=True)}
    # f(p) = p: the gradient is 1 everywhere; lr 0.1 for 10 steps, then 0.01
    drop_at, total, momentum = 10, 30, 0.9
    p = mc.Parameter(np.zeros(1))
    opt = mc.SGD([p], lr=0.1, momentum=momentum)
    torch_steps, velocity_steps, v = [], [], 0.0  # |step| by torch's rule (minicnn.SGD), by the velocity
    for step in range(total):
        lr = 0.1 if step < drop_at else 0.01
        opt.lr = lr
        before = p.data[0]
        opt.zero_grad()
        p.grad += 1.0
        opt.step()
        torch_steps.append(before - p.data[0])
        v = momentum * v - lr * 1.0                           # CS231n's form: v = mu v - lr g; p += v
        velocity_steps.append(-v)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    u, w = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-2, 2, 200))
    axes[0].contour(u, w, (u ** 2 + 10 * w ** 2) / 2, levels=12, colors="0.8", linewidths=0.8)
    for (label, path), color in zip(paths.items(), COLORS):
        axes[0].plot(path[:, 0], path[:, 1], "o-", ms=2.5, lw=1.2, color=color, label=label)
    axes[0].set_title(f"{steps} steps of lr 0.05 on f = (p0² + 10 p1²) / 2, from ({start[0]:g}, {start[1]:g})")
    axes[0].set_xlabel("p0")
    axes[0].set_ylabel("p1")
    axes[0].legend(fontsize=8, loc="lower right")
    step = np.arange(1, total + 1)
    axes[1].plot(step, torch_steps, "o-", ms=3, color=COLORS[0], label="torch / minicnn: p -= lr · buf")
    axes[1].plot(step, velocity_steps, "s--", ms=3, color=COLORS[1], label="lr inside: v = μv − lr·g, p += v")
    axes[1].axvline(drop_at + 0.5, color="black", lw=0.6)
    axes[1].text(drop_at + 0.2, 0.04, "lr 0.1 → 0.01 ", fontsize=9, ha="right", va="bottom",
                 transform=axes[1].get_xaxis_transform())
    axes[1].set_title("step size with g = 1, momentum 0.9")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("|Δp|")
    axes[1].legend(fontsize=8)
    save(fig, out_dir / "sgd.png")
    numbers["sgd"] = dict(paths={k: v.tolist() for k, v in paths.items()}, torch_steps=torch_steps,
                          velocity_steps=velocity_steps)


# ---------------------------------------------------------------------------
# Learner tools and extending
# ---------------------------------------------------------------------------
class _Square(mc.Module):
    """docs/learner_tools.md's module, y = scale * x^2, optionally with its classic mistake."""

    def __init__(self, forget_the_two=False):
        super().__init__()
        self.scale = mc.Parameter(np.array([1.5]))
        self.forget_the_two = forget_the_two

    def forward(self, x):
        self._cache = x
        return self.scale.data * x * x

    def backward(self, grad_output):
        x = self._saved()
        self.scale.grad += np.array([np.sum(grad_output * x * x)])
        return grad_output * (1.0 if self.forget_the_two else 2.0) * self.scale.data * x


def gradcheck_figure(out_dir, numbers):
    x = np.random.default_rng(1).standard_normal((3, 4))
    r = np.random.default_rng(0).uniform(-1, 1, x.shape)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    numbers["gradcheck"] = {}
    for ax, broken in zip(axes, (False, True)):
        module = _Square(broken)
        module(x)
        analytic = module.backward(r)
        numeric = numerical_gradient(lambda: float(np.sum(module(x) * r)), x)
        ax.plot([-5, 5], [-5, 5], color="#aaaaaa", lw=0.8)
        ax.scatter(numeric.ravel(), analytic.ravel(), color=COLORS[1] if broken else COLORS[2])
        lim = 1.1 * max(np.abs(numeric).max(), np.abs(analytic).max())
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="finite differences", ylabel="backward()")
        ax.set_aspect("equal")
        ax.set_title("forgets the 2: half the slope" if broken else "right: on the diagonal")
        numbers["gradcheck"]["broken" if broken else "right"] = float(np.abs(analytic - numeric).max())
    fig.suptitle("input gradient of y = 1.5·x², every entry: backward against finite differences")
    fig.tight_layout()
    save(fig, out_dir / "gradcheck.png")


def extending_figure(out_dir, numbers):
    """Average pooling's backward with dout = 1 is col2im's per-pixel window count, shared by K·K."""
    counts = np.zeros((1, 1, 3, 3))
    cols = np.ones((4, 4))
    geometry = conv2d_forward(np.zeros((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))[1].geometry
    col2im(cols, 1, 1, 3, 3, 2, 2, *geometry, counts)
    pool = mc.MaxPool2d(2, stride=1)
    x = np.array([[1.0, 3.0, 2.0], [4.0, 0.0, 1.0], [2.0, 5.0, 0.0]]).reshape(1, 1, 3, 3)
    pool(x)
    max_dx = pool.backward(np.ones((1, 1, 2, 2)))[0, 0]
    fig, ax = canvas(13, 3, (8, 2.6))
    grid(ax, x[0, 0], 0, 0, fill={(r, c): COLORS[1] for r, c in zip(*np.nonzero(max_dx))}, title="x")
    grid(ax, max_dx, 4.5, 0, title="max-pool dx")
    grid(ax, counts[0, 0] / 4, 9, 0, fmt="{:.2f}", title="avg-pool dx")
    ax.text(6, 3.5, "2×2 windows, stride 1, dout = 1: winners take all, or every element an equal share",
            ha="center", va="top", fontsize=9)
    ax.set_xlim(-0.3, 12.3)
    ax.set_ylim(4.2, -1.2)
    save(fig, out_dir / "extending.png")
    numbers["extending"] = dict(maxpool_dx=max_dx.tolist(), avgpool_dx=(counts[0, 0] / 4).tolist())


# The whole runs of `make bench` on the AMD EPYC of family 25 kept in benchmarks/results/earlier/, in
# the order they ran, each named by the convolution (or the change) it measured.
HISTORY_RUNS = [("im2col + BLAS", "amd-epyc-avx512-2026-11-im2col"),
                ("gathered rows", "amd-epyc-avx512-2026-11-rows"),
                ("tiles (session 4)", "amd-epyc-avx512-2026-11-tiles"),
                ("Linear split", "amd-epyc-avx512-2026-11-linear-split"),
                ("pixel passes (6)", "amd-epyc-avx512-2026-11-pixel-passes"),
                ("row tiles (7)", "amd-epyc-avx512-2026-11-row-tiles"),
                ("image tiles (8)", "amd-epyc-avx512-2026-11-image-tiles"),
                ("along rows (9)", "amd-epyc-avx512-2026-11-along-rows"),
                ("session 10 kernels (11)", "amd-epyc-family25-avx512-2026-12-session-10-kernels"),
                ("session 12", "amd-epyc-family25-avx512-2026-12-session-12"),
                ("session 13", "amd-epyc-family25-avx512-2026-12-session-13-first"),
                ("tiles inlined (13)", "amd-epyc-family25-avx512-2026-12-session-13"),
                ("session 14", "amd-epyc-family25-avx512-2026-12-session-14"),
                ("edge tiles (17)", "amd-epyc-family25-avx512-2026-12-session-17-first"),
                ("bound workers (17)", "amd-epyc-family25-avx512-2026-12-session-17"),
                ("losses (18)", "amd-epyc-family25-avx512-2026-12-session-18-first"),
                ("SGD, BN eval (18)", "amd-epyc-family25-avx512-2026-12-session-18"),
                ("pool, overhead (19)", "amd-epyc-family25-avx512-2026-12-session-19"),
                ("thin rows (20)", "amd-epyc-family25-avx512-2026-12-session-20"),
                ("LLVM inlining (21)", "amd-epyc-family25-avx512-2026-12-session-21"),
                ("Linear tiles (22)", "amd-epyc-family25-avx512-2026-12-session-22"),
                ("re-run (23)", "amd-epyc-family25-avx512-2026-12-session-23-first"),
                ("load turns (23)", "amd-epyc-family25-avx512-2026-12-session-23"),
                ("AVX2 strip (25)", "amd-epyc-family25-avx512-2026-12-session-25")]


def _median_ratio(rows, kind, name, phase, batch=64):
    """minicnn / torch of the one row of a results.json's ``rows`` with these fields (``name`` whole, or
    its first words: "Conv2d 16->32" is the row "Conv2d 16->32 5x5 p2 in 16x14x14")."""
    row, = (r for r in rows if (r["kind"], r["phase"], r["batch"]) == (kind, phase, batch)
            and (r["name"] == name or r["name"].startswith(name + " ")))
    return row["minicnn"]["median"] / row["torch"]["median"]


def benchmark_history_figure(out_dir, numbers):
    """The issue's targets run by run on one CPU: training steps and article's 16->32 convolution at batch 64."""
    earlier = HERE.parent / "benchmarks" / "results" / "earlier"
    runs = [json.loads((earlier / f"{stem}.json").read_text())["rows"] for _, stem in HISTORY_RUNS]
    series = {"train": {m: [_median_ratio(r, "model", m, "train step") for r in runs]
                        for m in ("article", "notebook", "notebook-bn")},
              "conv": {p: [_median_ratio(r, "layer", "Conv2d 16->32", p) for r in runs] for p in ("forward", "backward")}}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    steps = range(len(runs))
    panels = ((axes[0], "train", 1.0, "training step, batch 64"),
              (axes[1], "conv", 1.2, "article's Conv2d 16→32, batch 64"))
    for ax, key, target, title in panels:
        for color, (label, values) in zip(COLORS, series[key].items()):
            ax.plot(steps, values, marker="o", color=color, label=label)
        ax.axhline(target, color="#555555", ls="--", lw=1)
        ax.text(len(runs) - 1, target, f"target {target:g}", ha="right", va="bottom", fontsize=9, color="#555555")
        ax.set(title=title, ylabel="minicnn / torch (below 1: minicnn faster)", ylim=(0, 3.2))
        ax.legend(loc="upper right", fontsize=9)
        ax.set_xticks(list(steps), [label for label, _ in HISTORY_RUNS], rotation=40, ha="right", fontsize=8)
    fig.suptitle("AMD EPYC family 25 (Zen 4, AVX-512), 2 cores: each whole make bench run kept, in order")
    fig.tight_layout()
    save(fig, out_dir / "benchmark_history.png")
    numbers["benchmark_history"] = dict(runs=[label for label, _ in HISTORY_RUNS], **series)


def _machine_runs(measured=None):
    """The short labels and ``benchmarks.machines.summary`` of every run in the README's per-machine
    table; with ``measured``, only the runs that have that column."""
    from benchmarks.machines import RUNS, run_summary
    labels, runs = [], []
    for label, stem in RUNS:
        run = run_summary(stem)
        if measured is None or run[measured]:
            labels.append(label.split(":")[0].replace("`", "").replace(", AVX-512", "")
                          .replace(" (Emerald Rapids)", "\n(Emerald Rapids)").replace(", session", ",\nsession")
                          .replace(", the im2col", ",\nthe im2col"))
            runs.append(run)
    return labels, runs


def _machine_bars(ax, labels, series, title, reference=1.0):
    """One group of bars per run (``labels``), one bar per entry of ``series`` ({name: a value per
    run}), and a dashed line at ``reference`` (the target, or no slowdown)."""
    width = 0.8 / len(series)
    for k, (color, (name, values)) in enumerate(zip(COLORS, series.items())):
        ax.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))], values, width,
               color=color, label=name)
    ax.axhline(reference, color="#555555", ls="--", lw=1)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7.5)
    ax.set(title=title)
    ax.legend(loc="upper left", fontsize=9)


def under_load_figure(out_dir, numbers):
    """How much a training step slows with a busy process pinned to one core, minicnn against torch,
    on every CPU whose run measured it."""
    from benchmarks.machines import MODELS, UNDER_LOAD as column
    labels, runs = _machine_runs(measured=column)
    fig, axes = plt.subplots(1, len(MODELS), figsize=(13, 4.4), sharey=True)
    series = {model: dict(minicnn=[run[column][i].value for run in runs], torch=[run[column][i].target for run in runs])
              for i, model in enumerate(MODELS)}
    for ax, model in zip(axes, MODELS):
        _machine_bars(ax, labels, series[model], f"{model}: training step, batch 64")
    axes[0].set_ylabel("time under load / time idle")
    fig.suptitle("A busy process pinned to one core: each engine's slowdown (target: minicnn's no worse than torch's)")
    fig.tight_layout()
    save(fig, out_dir / "under_load.png")
    numbers["under_load"] = dict(runs=labels, **series)


def per_machine_figure(out_dir, numbers):
    """Issue 9's training-step and batch-1 inference targets on every CPU that ran ``make bench``
    (the runs of the README's per-machine table, ``benchmarks.machines.RUNS``)."""
    from benchmarks.machines import MODELS
    labels, runs = _machine_runs()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    series = {column: {m: [run[column][i].value for run in runs] for i, m in enumerate(MODELS)}
              for column in ("train b64", "infer b1")}
    _machine_bars(axes[0], labels, series["train b64"], "training step, batch 64 (target: at most 1.0)")
    _machine_bars(axes[1], labels, series["infer b1"], "inference, batch 1 (target: below 1.0)")
    axes[0].set(ylabel="minicnn / torch (below 1: minicnn faster)", ylim=(0, 2.0))
    fig.suptitle("Each CPU's make bench run, as in the README's table (the last: the im2col code before issue 9's work)")
    fig.tight_layout()
    save(fig, out_dir / "per_machine.png")
    numbers["per_machine"] = dict(runs=labels, **series)


def _rounded(value, places=9):
    """Floats to ``places`` decimals: the last bits of exp() or of a BLAS sum may differ between CPUs."""
    if isinstance(value, float):
        return round(value, places) + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, dict):
        return {k: _rounded(v, places) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, places) for v in value]
    return value


FIGURES = [conv_forward_figure, conv_window_gif, im2col_figure, conv_backward_figure, maxpool_figure,
           maxpool_backward_gif, batchnorm_figure, softmax_figure, linear_figure, sgd_figure, gradcheck_figure,
           extending_figure, benchmark_history_figure, per_machine_figure, under_load_figure]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python docs/make_figures.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "figures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    numbers = {}
    for draw in FIGURES:
        draw(args.out, numbers)
    text = json.dumps(_rounded(numbers), indent=1, sort_keys=True) + "\n"
    (args.out / "figures.json").write_text(text)
    print(f"wrote {len(list(args.out.glob('*.png')))} PNG, {len(list(args.out.glob('*.gif')))} GIF and "
          f"figures.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
