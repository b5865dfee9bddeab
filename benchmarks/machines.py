"""The README's per-machine table: issue 9's targets, read from each machine's kept `make bench` run.

    python -m benchmarks.machines [--update-readme]
    python -m benchmarks.machines --check [results.json]

``--check`` says of one run (by default ``make bench``'s last, ``benchmarks/results/results.json``)
which target each measured value holds or misses, a line each, and exits with 1 if any is missed:
the verdict on a machine where no run has been kept yet.

Every row is computed from one ``results.json`` (``RUNS`` names them), never copied by hand, and a
ratio that misses its target is printed in bold. ``tests/test_benchmark_machine.py`` checks that the
README's table is the one this prints, and that the README's benchmark tables (which ``make bench``
writes) are the run of ``RUNS``' first row. So after ``make bench``, copy ``benchmarks/results/results.json``
and ``results.md`` to ``benchmarks/results/earlier/<cpu>-<date>-session-<n>.*``, put that run first in
``RUNS`` (the run it replaces stays, a row lower, if it is another CPU's), and run this with
``--update-readme``.

The targets (issue 9), each a ratio minicnn / torch from one run:

- a training step and an inference at batch 64 and 256: at most 1.0; an inference at batch 1: below 1.0;
- every convolution of the seed models at batch 64, forward and backward separately: at most 1.2;
- the peak memory of a training step at batch 256: at most 1.5;
- with a busy process pinned to one core: minicnn's slowdown no worse than torch's;
- whatever the user imported first (each import order a fresh process): a training step at batch 64
  at most 1.0, the slowest order shown.
"""
import argparse
import json
import pathlib
import re
import sys
from typing import NamedTuple

from minicnn.training.checkpoint import atomic_write

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = ("article", "notebook", "notebook-bn")

# (what ran, results.json's path below benchmarks/results/ without ".json"), newest first per CPU.
RUNS = [
    ("AMD EPYC family 25 (Zen 4), AVX-512, session 25: the tables below",
     "earlier/amd-epyc-family25-avx512-2026-12-session-25"),
    ("Intel Xeon family 6 model 207 (Emerald Rapids), AVX-512, session 16",
     "earlier/intel-xeon-emeraldrapids-avx512-2026-12-session-16"),
    ("AMD EPYC family 26 (Zen 5), AVX-512, session 10, before its changes",
     "earlier/amd-epyc-family26-avx512-2026-11-before"),
    ("AVX2 imitated on family 25 as `znver3`, OpenBLAS's and MKL's kernels too, session 25",
     "imitated-avx2-znver3/results"),
    ("AVX2 imitated on family 25 as `haswell`, session 12", "imitated-avx2/results"),
    ("AMD EPYC with AVX2, the im2col convolution, before issue 9's work", "earlier/amd-epyc-avx2-2026-11"),
]

AT_MOST, BELOW = "at most", "below"
UNDER_LOAD = "slowdown under load, minicnn vs torch"  # the column whose target is torch's own value
IMPORT_ORDER = "slowest import order, train b64"
# The thread-policy rows that are a user's import order (benchmarks.suites), the default policy each.
IMPORT_ORDERS = ("minicnn imported first (default policy)", "numpy and torch imported first (default policy)",
                 "numpy and torch imported first, no set_num_threads call")


class Measured(NamedTuple):
    """One measured value of a run against its target: ``what`` names the model (the pass, for the
    convolutions; the model and its slowest order, for the import orders)."""
    what: str
    value: float
    target: float
    rule: str  # AT_MOST or BELOW the target

    @property
    def missed(self):
        return self.value >= self.target if self.rule == BELOW else self.value > self.target


def _ratio(row):
    return row["minicnn"]["median"] / row["torch"]["median"]


def _model_ratios(rows, model, phase, batch):
    """``[minicnn / torch]`` of ``model``'s row, or ``[]`` if the run has none (``--quick`` has no batch 256)."""
    return [_ratio(r) for r in rows if (r["kind"], r["name"], r["phase"], r["batch"]) == ("model", model, phase, batch)]


def _slowest_convolution(rows, phase, batch=64):
    """``[the largest minicnn / torch of the seed models' convolution layers]`` in ``phase`` at ``batch``,
    or ``[]``."""
    ratios = [_ratio(r) for r in rows
              if (r["kind"], r["phase"], r["batch"]) == ("layer", phase, batch) and r["name"].startswith("Conv2d ")]
    return [max(ratios)] if ratios else []


def _slowest_import_order(rows, model):
    """``model``'s row of ``IMPORT_ORDERS`` with the largest minicnn / torch, or None if none ran."""
    orders = [r for r in rows if (r["kind"], r["name"]) == ("policy", model) and r["phase"] in IMPORT_ORDERS]
    return max(orders, key=_ratio, default=None)


def summary(results):
    """Issue 9's measured quantities of one run: ``{column: [Measured, ...]}``.

    The slowdown under load's target is torch's own slowdown in the same run; the import orders' value
    is, per model, the slowest of ``IMPORT_ORDERS``; a run without a measurement gives an empty list.
    """
    rows = results["rows"]
    out = {}
    for column, phase, batch, rule in (("train b64", "train step", 64, AT_MOST),
                                       ("train b256", "train step", 256, AT_MOST),
                                       ("infer b1", "inference", 1, BELOW),
                                       ("infer b64", "inference", 64, AT_MOST),
                                       ("infer b256", "inference", 256, AT_MOST)):
        out[column] = [Measured(m, ratio, 1.0, rule) for m in MODELS for ratio in _model_ratios(rows, m, phase, batch)]
    out["slowest conv b64, fwd / bwd"] = [Measured(p, ratio, 1.2, AT_MOST)
                                         for p in ("forward", "backward") for ratio in _slowest_convolution(rows, p)]
    memory = results.get("memory", {})
    out["memory b256"] = [Measured(m, memory[m]["minicnn"]["peak_mb"] / memory[m]["torch"]["peak_mb"], 1.5, AT_MOST)
                          for m in MODELS if m in memory]
    load = {r["name"]: r for r in rows if r["kind"] == "load"}
    out[UNDER_LOAD] = [
        Measured(m, load[m]["minicnn_loaded"]["median"] / load[m]["minicnn"]["median"],
                 load[m]["torch_loaded"]["median"] / load[m]["torch"]["median"], AT_MOST) for m in MODELS if m in load]
    slowest = {m: _slowest_import_order(rows, m) for m in MODELS}
    out[IMPORT_ORDER] = [Measured(f"{m}, {row['phase']}", _ratio(row), 1.0, AT_MOST) for m, row in slowest.items() if row]
    return out


def _cell(values):
    if not values:
        return "not measured"
    shown = []
    for measured in values:
        text = f"{measured.value:.2f}"  # bold says on which side of the target a 1.00 lies
        shown.append(f"**{text}**" if measured.missed else text)
    return " / ".join(shown)


def _load_cell(values):
    if not values:
        return "not measured"
    ours = _cell(values)
    return f"{ours} vs {' / '.join(f'{measured.target:.2f}' for measured in values)}"


def run_summary(stem, root=RESULTS):
    """``summary`` of the kept run ``root/<stem>.json``."""
    return summary(json.loads((root / f"{stem}.json").read_text()))


def table(runs=RUNS, root=RESULTS, link_from=HERE.parent):
    """The markdown table, one row per run, each linked to its results.md relative to ``link_from``
    (the README's folder)."""
    rows = [(label, stem, run_summary(stem, root)) for label, stem in runs]
    columns = list(rows[0][2])
    lines = ["| CPU (run) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, stem, cells in rows:
        link = (root / f"{stem}.md").relative_to(link_from).as_posix()
        shown = [_load_cell(cells[c]) if c == UNDER_LOAD else _cell(cells[c]) for c in columns]
        lines.append(f"| [{label}]({link}) | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def check(results):
    """What ``--check`` prints of one run: a line per measured value, whether it holds its target, and
    a last line; and True if every value holds."""
    machine = results.get("machine", {})
    lines = ["; ".join(filter(None, (machine.get("cpu", "unknown CPU"), machine.get("vector"), machine.get("limited_to"))))]
    missed = 0
    for column, values in summary(results).items():
        if not values:
            lines.append(f"not measured  {column}")
        for m in values:
            target = f"torch's {m.target:.2f}" if column == UNDER_LOAD else f"{m.target:g}"
            lines.append(f"{'MISSED' if m.missed else 'holds':<12}  {column}, {m.what}: {m.value:.2f} ({m.rule} {target})")
            missed += m.missed
    lines.append(f"{missed} target(s) missed" if missed else "every measured target holds")
    return lines, not missed


MARKED = re.compile(r"(<!-- machines:start -->\n)(.*?)\n(<!-- machines:end -->)", re.S)


def readme_table(readme):
    """The table between the README's markers (without them), or None."""
    found = MARKED.search(pathlib.Path(readme).read_text())
    return found.group(2) if found else None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.machines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-readme", action="store_true", help="put the table into README.md")
    parser.add_argument("--check", nargs="?", const=RESULTS / "results.json", type=pathlib.Path, metavar="RESULTS_JSON",
                        help="say which targets one run holds (default: make bench's last run); exit 1 if any is missed")
    args = parser.parse_args(argv)
    if args.check:
        if args.update_readme:
            parser.error("--check reads one run; it does not update the README")
        if not args.check.is_file():
            parser.error(f"--check: no such file {args.check} (make bench writes benchmarks/results/results.json)")
        lines, held = check(json.loads(args.check.read_text()))
        print("\n".join(lines))
        return 0 if held else 1
    text = table()
    print(text)
    if args.update_readme:
        readme = HERE.parent / "README.md"
        body = readme.read_text()
        if not MARKED.search(body):
            sys.exit("README.md has no <!-- machines:start --> / <!-- machines:end --> markers")
        body = MARKED.sub(lambda m: m.group(1) + text + "\n" + m.group(3), body)
        atomic_write(readme, lambda f: f.write(body.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
