"""The README's per-machine table: issue 9's targets, read from each machine's kept `make bench` run.

    python -m benchmarks.machines [--update-readme]

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
- with a busy process pinned to one core: minicnn's slowdown no worse than torch's.
"""
import argparse
import json
import pathlib
import re
import sys

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


def _ratio(row):
    return row["minicnn"]["median"] / row["torch"]["median"]


def _model_ratio(rows, model, phase, batch):
    row, = (r for r in rows if (r["kind"], r["name"], r["phase"], r["batch"]) == ("model", model, phase, batch))
    return _ratio(row)


def _slowest_convolution(rows, phase, batch=64):
    """The largest minicnn / torch of the seed models' convolution layers, in ``phase``, at ``batch``."""
    return max(_ratio(r) for r in rows
               if (r["kind"], r["phase"], r["batch"]) == ("layer", phase, batch) and r["name"].startswith("Conv2d "))


def summary(results):
    """Issue 9's measured quantities of one run: ``{column: [(value, target, rule), ...]}``.

    ``rule`` is ``AT_MOST`` or ``BELOW`` the target; the slowdown under load is a pair (minicnn's,
    torch's), whose target is torch's own slowdown; a run without a measurement gives an empty list.
    """
    rows = results["rows"]
    out = {}
    for column, phase, batch, rule in (("train b64", "train step", 64, AT_MOST),
                                       ("train b256", "train step", 256, AT_MOST),
                                       ("infer b1", "inference", 1, BELOW),
                                       ("infer b64", "inference", 64, AT_MOST),
                                       ("infer b256", "inference", 256, AT_MOST)):
        out[column] = [(_model_ratio(rows, m, phase, batch), 1.0, rule) for m in MODELS]
    out["slowest conv b64, fwd / bwd"] = [(_slowest_convolution(rows, p), 1.2, AT_MOST) for p in ("forward", "backward")]
    memory = results.get("memory", {})
    out["memory b256"] = [(memory[m]["minicnn"]["peak_mb"] / memory[m]["torch"]["peak_mb"], 1.5, AT_MOST)
                          for m in MODELS if m in memory]
    load = {r["name"]: r for r in rows if r["kind"] == "load"}
    out[UNDER_LOAD] = [
        (load[m]["minicnn_loaded"]["median"] / load[m]["minicnn"]["median"],
         load[m]["torch_loaded"]["median"] / load[m]["torch"]["median"], AT_MOST) for m in MODELS if m in load]
    return out


def _cell(values):
    if not values:
        return "not measured"
    shown = []
    for value, target, rule in values:
        missed = value >= target if rule == BELOW else value > target
        text = f"{value:.2f}"  # bold says on which side of the target a 1.00 lies
        shown.append(f"**{text}**" if missed else text)
    return " / ".join(shown)


def _load_cell(values):
    if not values:
        return "not measured"
    ours = _cell(values)
    return f"{ours} vs {' / '.join(f'{torch:.2f}' for _, torch, _ in values)}"


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


MARKED = re.compile(r"(<!-- machines:start -->\n)(.*?)\n(<!-- machines:end -->)", re.S)


def readme_table(readme):
    """The table between the README's markers (without them), or None."""
    found = MARKED.search(pathlib.Path(readme).read_text())
    return found.group(2) if found else None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.machines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-readme", action="store_true", help="put the table into README.md")
    args = parser.parse_args(argv)
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
