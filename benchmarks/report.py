"""Turn benchmark rows into results.json, a markdown report and PNG charts."""
import json
import pathlib
import re

from minicnn.training.checkpoint import atomic_write


def _ms(t):
    return f"{t['median']:.3g} ({t['min']:.3g}–{t['max']:.3g})"


def _ratio(row):
    return row["minicnn"]["median"] / row["torch"]["median"]


def _gflops(row, peak):
    if not row.get("flops"):
        return "", ""
    rate = row["flops"] / (row["minicnn"]["median"] * 1e-3) / 1e9
    return f"{rate:.1f}", f"{100 * rate / peak:.0f}%"


def markdown(results):
    m, rows = results["machine"], results["rows"]
    peak = m["peak_gflops_fp32"]
    matmul = ", ".join(f"{k} {v:.0f}" for k, v in m["matmul_gflops"].items())
    measured = (f"the higher of a loop of vector multiply-adds on every thread ({m['fma_loop_gflops']:.0f} GFLOP/s) and "
                f"the best 4096² float32 matmul ({matmul} GFLOP/s), both in this run" if "fma_loop_gflops" in m
                else f"the best 4096² float32 matmul in this run ({matmul} GFLOP/s)")
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['vector']}; practical fp32 peak {peak} GFLOP/s, "
           f"{measured}; nominal {m['nominal_peak_gflops_fp32']} GFLOP/s "
           f"({m['nominal_peak_formula']}). numpy {m['numpy']}, numba {m['numba']} ({m['numba_threading_layer']} "
           f"threading layer), torch {m['torch']}; BLAS: {', '.join(m['blas'])}. {results['threads']} thread(s)."
           + (f" **Imitated: {m['limited_to']}.**" if m.get("limited_to") else ""),
           "", "Times are the median (min–max) milliseconds per call of alternating A/B runs. "
           "ratio = minicnn / torch (below 1: minicnn is faster). GFLOP/s and % of the practical peak are minicnn's. "
           "notebook-bn has no training row at batch 1, nor BatchNorm1d a layer row: BatchNorm1d cannot train "
           "on one sample.", ""]
    header = "| {} | batch | minicnn ms | torch ms | ratio | GFLOP/s | % peak |"
    for kind, title, first in (("model", "Whole models", "model, phase"), ("layer", "Per layer", "layer, phase")):
        selected = [r for r in rows if r["kind"] == kind]
        if not selected:
            continue
        out += [f"### {title}", "", header.format(first), "|---|---:|---:|---:|---:|---:|---:|"]
        for r in selected:
            rate, share = _gflops(r, peak)
            out.append(f"| {r['name']}, {r['phase']} | {r['batch']} | {_ms(r['minicnn'])} | {_ms(r['torch'])} | "
                       f"{_ratio(r):.2f} | {rate} | {share} |")
        out.append("")
    policy = [r for r in rows if r["kind"] == "policy"]
    if policy:
        out += ["### Thread pools: Numba against BLAS (training step, batch 64, each policy in a fresh process)",
                "", "| model | policy | minicnn ms | torch ms | ratio |", "|---|---|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['phase']} | {_ms(r['minicnn'])} | {_ms(r['torch'])} | {_ratio(r):.2f} |"
                for r in policy]
        out.append("")
    idle = [r for r in rows if r["kind"] == "idle"]
    if idle:
        out += ["### After idle time: inference at batch 1, one call every 100 ms of sleep (each policy in a "
                "fresh process)", "", "| model | policy | minicnn ms | torch ms | ratio |", "|---|---|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['phase']} | {_ms(r['minicnn'])} | {_ms(r['torch'])} | {_ratio(r):.2f} |"
                for r in idle]
        out.append("")
    load = [r for r in rows if r["kind"] == "load"]
    if load:
        out += ["### Under load: a busy process pinned to one core (training step, batch 64)", "",
                "| model | minicnn idle ms | minicnn loaded ms | minicnn slowdown | torch idle ms | torch loaded ms "
                "| torch slowdown |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in load:
            ours, theirs = r["minicnn_loaded"]["median"] / r["minicnn"]["median"], \
                r["torch_loaded"]["median"] / r["torch"]["median"]
            out.append(f"| {r['name']} | {_ms(r['minicnn'])} | {_ms(r['minicnn_loaded'])} | {ours:.2f} | "
                       f"{_ms(r['torch'])} | {_ms(r['torch_loaded'])} | {theirs:.2f} |")
        out.append("")
    scaling = [r for r in rows if r["kind"] == "scaling"]
    if scaling:
        out += ["### Scaling with batch size (article training step, time per image)", "",
                "| batch | minicnn µs/image | torch µs/image | ratio |", "|---:|---:|---:|---:|"]
        out += [f"| {r['batch']} | {1e3 * r['minicnn']['median'] / r['batch']:.0f} | "
                f"{1e3 * r['torch']['median'] / r['batch']:.0f} | {_ratio(r):.2f} |" for r in scaling]
        out.append("")
    threads = [r for r in rows if r["kind"] == "threads"]
    if threads:
        out += ["### Speed-up from more threads (training step, batch 64)", "",
                "| model | threads | minicnn ms | torch ms | minicnn speed-up | torch speed-up |",
                "|---|---:|---:|---:|---:|---:|"]
        base = {r["name"]: r for r in threads if r["threads"] == 1}
        for r in threads:
            b = base[r["name"]]
            out.append(f"| {r['name']} | {r['threads']} | {_ms(r['minicnn'])} | {_ms(r['torch'])} | "
                       f"{b['minicnn']['median'] / r['minicnn']['median']:.2f} | "
                       f"{b['torch']['median'] / r['torch']['median']:.2f} |")
        out.append("")
    if "memory" in results:
        out += ["### Peak memory of one training step, batch 256 (MB above the resident size before it)", "",
                "| model | minicnn | torch | ratio | minicnn numpy (tracemalloc) |", "|---|---:|---:|---:|---:|"]
        for name, mem in results["memory"].items():
            out.append(f"| {name} | {mem['minicnn']['peak_mb']:.0f} | {mem['torch']['peak_mb']:.0f} | "
                       f"{mem['minicnn']['peak_mb'] / max(mem['torch']['peak_mb'], 1e-9):.2f} | "
                       f"{mem['minicnn']['tracemalloc_peak_mb']:.0f} |")
        out.append("")
    if "compile" in results:
        c = results["compile"]
        out += [f"Numba compile time (first training step and inference of all three models, fresh process): "
                f"cold cache {c['cold_seconds']:.1f} s, from cache {c['cached_seconds']:.1f} s; "
                f"the same work once compiled: {c['warm_seconds']:.2f} s.", ""]
    return "\n".join(out)


def charts(results, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["kind"] in ("model", "layer")]
    if rows:
        labels = [f"{r['name']}, {r['phase']}, b{r['batch']}" for r in rows]
        fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 1.5))
        ratios = [_ratio(r) for r in rows]
        ax.barh(range(len(rows)), ratios, color=["tab:green" if v <= 1 else "tab:red" for v in ratios])
        ax.axvline(1.0, color="black", lw=1)
        ax.set_yticks(range(len(rows)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("minicnn time / torch time (log scale; left of 1: minicnn faster)")
        ax.set_title("minicnn against torch, median of alternating runs")
        fig.savefig(out_dir / "ratios.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    scaling = [r for r in results["rows"] if r["kind"] == "scaling"]
    if scaling:
        fig, ax = plt.subplots(figsize=(6, 4))
        batches = [r["batch"] for r in scaling]
        for engine in ("minicnn", "torch"):
            ax.plot(batches, [1e3 * r[engine]["median"] / r["batch"] for r in scaling], "o-", label=engine)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="µs per image",
               title="article training step: time per image")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.legend()
        ax.grid(alpha=0.3)
        fig.savefig(out_dir / "scaling.png", dpi=110, bbox_inches="tight")
        plt.close(fig)


def write(results, out_dir, readme=None):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    atomic_write(out_dir / "results.json", lambda f: f.write(json.dumps(results, indent=1).encode()))
    atomic_write(out_dir / "results.md", lambda f: f.write(text.encode()))
    charts(results, out_dir)
    if readme is not None:
        readme = pathlib.Path(readme)
        body = readme.read_text()
        marked = re.compile(r"(<!-- benchmark:start -->\n).*?(<!-- benchmark:end -->)", re.S)
        if marked.search(body):
            body = marked.sub(lambda m: m.group(1) + text + "\n" + m.group(2), body)
            atomic_write(readme, lambda f: f.write(body.encode()))
    return text
