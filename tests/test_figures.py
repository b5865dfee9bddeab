"""The docs' figures are drawn from minicnn's kernels by docs/make_figures.py, and the committed ones are current.

The script runs into a temporary folder (so a kernel change that breaks a figure fails here), and the
numbers it plots (figures.json) must equal the committed docs/figures/figures.json: if a kernel change
alters a figure, run `make figures` and commit the result.
"""
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
PAGES = sorted((ROOT / "docs").glob("*.md"))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    subprocess.run([sys.executable, str(ROOT / "docs" / "make_figures.py"), "--out", str(out)], check=True,
                   capture_output=True, cwd=ROOT)
    return out


def test_every_figure_is_drawn_and_readable(drawn):
    committed = sorted(p.name for p in FIGURES.iterdir() if p.suffix in (".png", ".gif"))
    assert committed and sorted(p.name for p in drawn.iterdir() if p.suffix in (".png", ".gif")) == committed
    for path in drawn.iterdir():
        head = path.read_bytes()[:8]
        if path.suffix == ".png":
            assert head == b"\x89PNG\r\n\x1a\n", path.name
        elif path.suffix == ".gif":
            assert head[:6] == b"GIF89a" and path.stat().st_size < 300_000, path.name


def test_committed_figures_show_what_the_kernels_compute_now(drawn):
    assert json.loads((drawn / "figures.json").read_text()) == json.loads((FIGURES / "figures.json").read_text())


def test_the_numbers_are_the_worked_examples(drawn):
    numbers = json.loads((drawn / "figures.json").read_text())
    assert numbers["conv_forward"][0]["output"] == [[8.5, 12.5], [20.5, 24.5]]
    assert numbers["im2col"]["col2im_counts"] == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    assert numbers["maxpool"]["out"] == [[2, 3], [5, 1]]
    assert numbers["maxpool"]["overlap_dx"][1][2] == 10
    assert numbers["softmax_nll"]["grad"][0] < 0 < min(numbers["softmax_nll"]["grad"][1:])
    assert abs(sum(numbers["batchnorm"]["dx"])) < 1e-8  # 0, up to the 9-decimal rounding of each entry
    # linear.md by hand: products 2 -2 0 -3 | 0 2 -2 2, lane sums 2 0 -2 -1, halves -> 0 -1 -> -1
    assert numbers["linear"]["lane_sums"] == [2, 0, -2, -1] and numbers["linear"]["halving"] == [[0, -1], [-1]]
    assert numbers["linear"]["y"] == -1 and numbers["linear"]["tiles"][5] == [2, 2, 2, 2, 2, 3, 3]
    # sgd.md by hand: g = 1, momentum 0.9, lr 0.1: steps 0.1 * (1 - 0.9^t) / 0.1; lr 0.01 from step 11
    sgd = numbers["sgd"]
    assert [round(s, 6) for s in sgd["torch_steps"][:3]] == [0.1, 0.19, 0.271]
    assert abs(sgd["torch_steps"][10] - 0.1 * (1 - 0.9 ** 11)) < 1e-9
    assert abs(sgd["velocity_steps"][10] - (0.9 * (1 - 0.9 ** 10) + 0.01)) < 1e-9
    assert abs(sgd["paths"]["plain"][30][0] - -4 * 0.95 ** 30) < 1e-9  # p0 shrinks by lr * 1 a step


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_docs_page_embeds_a_figure_that_exists(page):
    images = re.findall(r"!\[[^\]]*\]\((figures/[\w.]+)\)", page.read_text())
    assert images, f"{page.name} embeds no figure"
    for image in images:
        assert (page.parent / image).is_file(), f"{page.name}: {image} does not exist"


def test_the_readme_shows_a_figure():
    images = re.findall(r"!\[[^\]]*\]\((docs/figures/[\w.]+)\)", (ROOT / "README.md").read_text())
    assert images and all((ROOT / image).is_file() for image in images)
