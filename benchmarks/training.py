"""``python -m benchmarks.training``: train every seed model with its defaults, in minicnn and in torch.

Runs ``minicnn train`` and ``python -m reference.train`` one after the other (never side
by side: they would share the cores), reads each run's ``history.json`` and writes
``benchmarks/results/training.md``, and with ``--update-readme`` the README's results table.
"""
import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

from minicnn.training.checkpoint import atomic_write
from minicnn.training.models import MODELS

from .machine import cpu_label

HERE = pathlib.Path(__file__).resolve().parent
COMMANDS = {"minicnn": [sys.executable, "-m", "minicnn", "train"],
            "torch (reference.train)": [sys.executable, "-m", "reference.train"]}


def run(engine, model, out):
    if out.exists():  # this benchmark's own scratch folder from an earlier run (minicnn train refuses to overwrite)
        shutil.rmtree(out)
    command = COMMANDS[engine] + ["--model", model, "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    history = json.loads((out / "history.json").read_text())
    return dict(engine=engine, model=model, wall_seconds=wall, config=history["config"],
                final=history["epochs"][-1], best=max(e["test_accuracy"] for e in history["epochs"]),
                train_seconds=sum(e["seconds"] for e in history["epochs"]))


def table(results):
    lines = ["| model | engine | epochs | hyperparameters | final test accuracy | best epoch | "
             "training time | wall time |", "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in results:
        c = r["config"]
        hyper = f"batch {c['batch_size']}, lr {c['lr']}, momentum {c['momentum']}"
        if c.get("lr_gamma", 1.0) != 1.0:
            hyper += f", lr × {c['lr_gamma']} per epoch"
        lines.append(f"| {r['model']} | {r['engine']} | {c['epochs']} | {hyper} | "
                     f"{100 * r['final']['test_accuracy']:.2f}% | {100 * r['best']:.2f}% | "
                     f"{r['train_seconds']:.0f} s | {r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs") / "results")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    previous = HERE / "results" / "training.json"
    kept = json.loads(previous.read_text()) if previous.exists() else []
    results = [r for r in kept if r["model"] not in args.models]  # rows of models not re-run are kept
    for model in args.models:
        for engine in COMMANDS:
            folder = args.out / f"{model}-{engine.split()[0]}"
            results.append(run(engine, model, folder))
            print(f"{model} / {engine}: {results[-1]['final']['test_accuracy']:.4f} in "
                  f"{results[-1]['wall_seconds']:.0f} s", flush=True)
    order = list(MODELS)
    results.sort(key=lambda r: (order.index(r["model"]), list(COMMANDS).index(r["engine"])))
    text = table(results) + ("\n\nTraining time is the sum of the epochs' loops (forward, backward, SGD step); "
                             "wall time adds start-up, data loading, evaluation and figures. "
                             f"Measured on {cpu_label()}, one run after the other.")
    (HERE / "results").mkdir(exist_ok=True)
    atomic_write(HERE / "results" / "training.md", lambda f: f.write(text.encode()))
    atomic_write(HERE / "results" / "training.json", lambda f: f.write(json.dumps(results, indent=1).encode()))
    print(text)
    if args.update_readme:
        readme = HERE.parent / "README.md"
        body = re.sub(r"(<!-- training:start -->\n).*?(<!-- training:end -->)",
                      lambda m: m.group(1) + text + "\n" + m.group(2), readme.read_text(), flags=re.S)
        atomic_write(readme, lambda f: f.write(body.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
