"""The benchmark report names the CPU it ran on, generation included."""
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks.machine import cpu_name

ROOT = pathlib.Path(__file__).resolve().parent.parent

ZEN5 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
XEON = ("processor\t: 0\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n")


def test_cpu_name_adds_family_and_model_to_the_model_name():
    assert cpu_name(ZEN5) == "AMD EPYC (family 26, model 2)"
    assert cpu_name(XEON) == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (family 6, model 143)"


def test_cpu_name_without_family_is_the_model_name():
    assert cpu_name("model name\t: AMD EPYC\n") == "AMD EPYC"


def test_compiled_for_names_each_library_an_imitation_limits(monkeypatch):
    """An imitated AVX2 run records every limit it set: minicnn's target, torch's oneDNN and MKL,
    numpy's OpenBLAS kernels (which, unlimited, take their AVX-512 kernels on an AVX-512 machine)."""
    from benchmarks import machine
    for variable in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                     "OPENBLAS_CORETYPE"):
        monkeypatch.delenv(variable, raising=False)
    assert machine.compiled_for() == ""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert machine.compiled_for() == ("torch's oneDNN limited to AVX2; torch's MKL limited to AVX2; "
                                      "numpy's OpenBLAS on its kernels for Haswell")


def test_the_blas_line_names_the_kernels_openblas_runs():
    """The run's header says which CPU's kernels numpy's OpenBLAS took, as OpenBLAS itself reports it:
    in a fresh process with OPENBLAS_CORETYPE=Haswell, its Haswell (AVX2) kernels."""
    from benchmarks import machine
    assert machine.blas_description(dict(internal_api="openblas", version="0.3.31", num_threads=2,
                                         architecture="SkylakeX")) == "openblas 0.3.31 (SkylakeX kernels, 2 threads)"
    assert machine.blas_description(dict(internal_api="mkl", version=None, num_threads=1)) == "mkl (1 thread)"
    code = ("import numpy; from threadpoolctl import threadpool_info; from benchmarks import machine; "
            "print([machine.blas_description(i) for i in threadpool_info() if i['internal_api'] == 'openblas'])")
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", PYTHONPATH=str(ROOT))
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "(Haswell kernels, " in printed, printed


def test_compare_in_states_takes_turns_between_states(monkeypatch):
    """Each round enters every state in turn and times a block of a, then of b, in it. On a fake clock
    where a call of a takes 1 ms idle and 3 ms loaded and b 2 ms in both, the medians are exactly
    those."""
    import pytest

    from benchmarks import timing
    clock, calls, state = [0.0], [], ["idle"]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def a():
        calls.append("a")
        clock[0] += 0.001 if state[0] == "idle" else 0.003

    def b():
        calls.append("b")
        clock[0] += 0.002

    def enter(name):
        def go():
            state[0] = name
            calls.append(name)
        return go

    budget = timing.Budget(repeats=3, min_seconds=0.01, warmup=1)
    (idle_a, idle_b), (loaded_a, loaded_b) = timing.compare_in_states(a, b, [enter("idle"), enter("loaded")], budget)
    assert idle_a["median"] == pytest.approx(1.0) and loaded_a["median"] == pytest.approx(3.0)
    assert idle_b["median"] == pytest.approx(2.0) == loaded_b["median"]
    n = len(calls) - calls.index("b", len(calls) - 1 - calls[::-1].index("loaded"))  # calls of b in a block
    assert n >= 10  # a block lasts at least min_seconds: 10 calls of 1 ms
    round_ = ["idle"] + ["a"] * n + ["b"] * n + ["loaded"] + ["a"] * n + ["b"] * n
    assert calls[-3 * len(round_):] == round_ * 3


def test_fma_chains_compute_twelve_chains_of_multiply_adds():
    """Each of the 12 stored vectors is s -> a*s + b from s = 0, ``steps`` times: with a = 0.5 and b = 1,
    1, 1.5, 1.75, exactly."""
    import numpy as np

    from benchmarks.machine import _fma_chains
    from minicnn.functional.simd import VECTOR_BYTES
    out = np.zeros(12 * VECTOR_BYTES // 4 + 3, np.float32)
    _fma_chains(np.array([0.5, 1.0], np.float32), 3, out, 3)
    assert out[:3].tolist() == [0, 0, 0] and np.all(out[3:] == 1.75)


def test_alternating_medians_pair_each_block_with_the_next(monkeypatch):
    """benchmarks.conv_layers on a fake clock, three blocks of two calls each: with minicnn's calls
    taking 2, 4, 9 s and torch's 1, 8, 3 s, block by block, the medians are 4 and 3 s (a ratio of
    1.33) and the blocks' ratios 2, 0.5 and 3, whose median is 2; with 2, 4, 6 against 1, 4, 2 both
    read 2."""
    import itertools

    from benchmarks import conv_layers
    clock = [0.0]
    monkeypatch.setattr(conv_layers.time, "perf_counter", lambda: clock[0])

    def taking(seconds, calls):
        """A function whose calls take seconds[k] each in block k (its untimed first call included)."""
        count = itertools.count()

        def function():
            clock[0] += seconds[next(count) // (calls + 1)]
        return function

    for ours, theirs, expected in [((2, 4, 9), (1, 8, 3), (4000, 3000, 2)), ((2, 4, 6), (1, 4, 2), (4000, 2000, 2))]:
        medians = conv_layers.alternating_medians(taking(ours, 2), taking(theirs, 2), blocks=3, calls=2)
        assert medians == expected


def test_conv_layers_runs_the_named_layer_and_refuses_unknown_ones(capsys):
    """``python -m benchmarks.conv_layers 1 "notebook 10->20"`` times only that layer, forward and
    backward, and prints the median of the blocks' ratios; a layer name it does not know stops it."""
    import pytest

    from benchmarks import conv_layers
    conv_layers.main(1, "notebook 10->20")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["forward", "backward"], lines
    assert all("notebook 10->20" in line and "(per block" in line for line in lines[1:]), lines
    with pytest.raises(SystemExit, match="unknown layer"):
        conv_layers.main(1, "article 16-32")


def test_kernel_parts_times_the_forward_kernel_and_its_edits_still_apply():
    """benchmarks.kernel_parts' "full" copy, compiled from the kernel's source, computes the forward
    (against the naive kernel), and each variant's edited lines are still in that source."""
    import numpy as np

    from benchmarks.kernel_parts import VARIANTS, kernel_arguments, variant, variant_source
    from helpers import assert_close
    from minicnn.functional.conv import conv2d_forward_naive
    args, _, (x, w, b) = kernel_arguments(N=2)
    out = args[-1]
    out[...] = np.nan
    variant("full", VARIANTS["full"])(*args)
    expected, _ = conv2d_forward_naive(x, w, b, (1, 1), (2, 2, 2, 2))
    assert_close(out, expected, "kernel_parts full", scale=float(np.abs(expected).max()))
    for name, edits in VARIANTS.items():
        variant_source(name, edits)


def test_compile_profile_takes_nested_compiles_out_of_the_exclusive_time():
    """benchmarks.compile_profile's accounting on made-up events and clock: ``kernel`` compiles from
    t=0 to 10 and, inside it, ``tile`` from 1 to 3 and again from 4 to 8 (a second signature), so
    the kernel has 10 s inclusive and 10 - 2 - 4 = 4 s its own; the tile 6 s both ways, twice."""
    import types

    from benchmarks.compile_profile import CompileTimes

    def kernel(): pass

    def tile(): pass

    clock = iter([0.0, 1.0, 3.0, 4.0, 8.0, 10.0])
    times = CompileTimes(clock=lambda: next(clock))
    events = {f: types.SimpleNamespace(data={"dispatcher": types.SimpleNamespace(py_func=f)}) for f in (kernel, tile)}
    for step, function in (("start", kernel), ("start", tile), ("end", tile), ("start", tile), ("end", tile),
                           ("end", kernel)):
        getattr(times, "on_" + step)(events[function])
    prefix = __name__ + "."
    kernel_name = prefix + "test_compile_profile_takes_nested_compiles_out_of_the_exclusive_time.<locals>.kernel"
    tile_name = kernel_name[:-len("kernel")] + "tile"
    assert times.inclusive == {kernel_name: 10.0, tile_name: 6.0}
    assert times.exclusive == {kernel_name: 4.0, tile_name: 6.0}
    assert times.count == {kernel_name: 1, tile_name: 2} and times.open == []


def _timed(minicnn_ms, torch_ms):
    return {"minicnn": {"median": minicnn_ms}, "torch": {"median": torch_ms}}


def _made_up_run(infer_b1, conv_backward, memory_mb, loaded_ms, import_order):
    """A results.json's content with every ratio 0.5 but the ones given (minicnn's ms; torch's are 1.0);
    ``import_order`` is notebook-bn's step with numpy and torch imported first; a policy that is no
    import order (spinning pools) is slow, and no target."""
    rows = [{"kind": "model", "name": m, "phase": phase, "batch": b, **_timed(infer_b1 if (phase, b) == ("inference", 1)
                                                                          else 0.5, 1.0)}
            for m in ("article", "notebook", "notebook-bn") for phase in ("train step", "inference") for b in (1, 64, 256)]
    rows += [{"kind": "layer", "name": f"Conv2d {c} 5x5", "phase": p, "batch": 64,
              **_timed(conv_backward if (c, p) == ("16->32", "backward") else 0.5, 1.0)}
             for c in ("1->16", "16->32") for p in ("forward", "backward")]
    rows += [{"kind": "layer", "name": "Conv2d 16->32 5x5", "phase": "backward", "batch": 256, **_timed(9.0, 1.0)}]
    rows += [{"kind": "load", "name": m, "phase": "train step", "batch": 64, **_timed(1.0, 1.0),
              "minicnn_loaded": {"median": loaded_ms}, "torch_loaded": {"median": 2.0}}
             for m in ("article", "notebook", "notebook-bn")]
    rows += [{"kind": "policy", "name": m, "phase": order, "batch": 64,
              **_timed(import_order if (m, order) == ("notebook-bn", "numpy and torch imported first (default policy)")
                       else 3.0 if order.startswith("spinning") else 0.5, 1.0)}
             for m in ("article", "notebook-bn") for order in ("minicnn imported first (default policy)",
                                                              "numpy and torch imported first (default policy)",
                                                              "spinning pools, Numba N + BLAS N")]
    memory = {m: {"minicnn": {"peak_mb": memory_mb}, "torch": {"peak_mb": 10.0}} for m in ("article", "notebook", "notebook-bn")}
    return {"rows": rows, "memory": memory}


HOLDS = _made_up_run(infer_b1=0.99, conv_backward=1.2, memory_mb=15.0, loaded_ms=2.0, import_order=1.0)
MISSES = _made_up_run(infer_b1=1.0, conv_backward=1.21, memory_mb=15.1, loaded_ms=2.1, import_order=1.01)


def test_the_machines_table_bolds_exactly_the_missed_targets(tmp_path):
    """Batch-1 inference must be below 1.0 (1.0 misses), the others at most their target (the target
    itself holds); the slowest convolution at batch 64 is the one shown (batch 256 is no target); a
    slowdown under load misses when it exceeds torch's; the import orders show each model's slowest (a
    policy that is no import order, such as spinning pools, is not one of them)."""
    import json

    from benchmarks.machines import table
    runs = {"holds": HOLDS, "misses": MISSES}
    for stem, results in runs.items():
        (tmp_path / f"{stem}.json").write_text(json.dumps(results))
    header, rule, holds, misses = table([("A", "holds"), ("B", "misses")], root=tmp_path, link_from=tmp_path.parent
                                        ).split("\n")
    assert header.split(" | ")[1:4] == ["train b64", "train b256", "infer b1"]
    assert holds == ("| [A](holds/holds.md) | 0.50 / 0.50 / 0.50 | 0.50 / 0.50 / 0.50 | 0.99 / 0.99 / 0.99 | "
                     "0.50 / 0.50 / 0.50 | 0.50 / 0.50 / 0.50 | 0.50 / 1.20 | 1.50 / 1.50 / 1.50 | "
                     "2.00 / 2.00 / 2.00 vs 2.00 / 2.00 / 2.00 | 0.50 / 1.00 |".replace("holds/holds.md", f"{tmp_path.name}/holds.md"))
    assert misses == (f"| [B]({tmp_path.name}/misses.md) | 0.50 / 0.50 / 0.50 | 0.50 / 0.50 / 0.50 | "
                      "**1.00** / **1.00** / **1.00** | 0.50 / 0.50 / 0.50 | 0.50 / 0.50 / 0.50 | 0.50 / **1.21** | "
                      "**1.51** / **1.51** / **1.51** | **2.10** / **2.10** / **2.10** vs 2.00 / 2.00 / 2.00 | "
                      "0.50 / **1.01** |")


def test_check_exits_1_when_a_target_is_missed_and_refuses_what_it_cannot_read(tmp_path, capsys):
    """``--check``'s exit code says whether a target was missed; a missing file, or asking it to update
    the README too, is a usage error (exit 2) that says what is wrong."""
    import json

    from benchmarks.machines import main
    for name, results in (("holds", HOLDS), ("misses", MISSES)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    assert main(["--check", str(tmp_path / "holds.json")]) == 0
    assert main(["--check", str(tmp_path / "misses.json")]) == 1
    for argv, message in ((["--check", str(tmp_path / "absent.json")], f"--check: no such file {tmp_path / 'absent.json'}"),
                          (["--check", str(tmp_path / "holds.json"), "--update-readme"], "it does not update the README")):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and message in capsys.readouterr().err


def test_check_lines_say_what_misses_and_by_which_rule():
    from benchmarks.machines import check
    lines, held = check(HOLDS)
    assert held and lines[-1] == "every measured target holds"
    assert sum(line.startswith("holds") for line in lines) == 3 * 5 + 2 + 3 + 3 + 2
    assert "holds         infer b1, notebook: 0.99 (below 1)" in lines
    lines, held = check(MISSES)
    assert not held and lines[-1] == "11 target(s) missed"
    missed = [line for line in lines if line.startswith("MISSED")]
    assert missed[:3] == [f"MISSED        infer b1, {m}: 1.00 (below 1)" for m in ("article", "notebook", "notebook-bn")]
    assert "MISSED        slowest conv b64, fwd / bwd, backward: 1.21 (at most 1.2)" in missed
    assert "MISSED        slowdown under load, minicnn vs torch, article: 2.10 (at most torch's 2.00)" in missed
    assert missed[-1] == ("MISSED        slowest import order, train b64, notebook-bn, numpy and torch imported first "
                          "(default policy): 1.01 (at most 1)")
    quick = {"rows": [r for r in HOLDS["rows"] if r["batch"] != 256]}  # as python -m benchmarks --quick
    quick_lines, held = check(quick)
    assert held and [line for line in quick_lines if line.startswith("not measured")] == [
        "not measured  train b256", "not measured  infer b256", "not measured  memory b256"]
    assert len(quick_lines) == len(lines) - 3 * 3 + 3


def test_the_readmes_machines_table_is_computed_from_the_kept_runs():
    import pathlib

    from benchmarks.machines import readme_table, table
    assert readme_table(pathlib.Path(__file__).resolve().parent.parent / "README.md") == table(), \
        "README's per-machine table is stale: run python -m benchmarks.machines --update-readme"


def test_the_readmes_benchmark_tables_are_the_first_machines_run():
    """`make bench` writes its tables into the README; the per-machine table's first row must be that run
    (copy results.json and results.md to benchmarks/results/earlier/ under the CPU's name, add it to RUNS)."""
    import json
    import pathlib
    import re

    from benchmarks import report
    from benchmarks.machines import RESULTS, RUNS
    body = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    tables = re.search(r"<!-- benchmark:start -->\n(.*?)\n<!-- benchmark:end -->", body, re.S).group(1)
    assert tables == report.markdown(json.loads((RESULTS / f"{RUNS[0][1]}.json").read_text())), \
        "README's benchmark tables are not the run in the first row of benchmarks.machines.RUNS"


PROC_STAT = ("cpu  100 0 50 900 3 0 1 12 0 0\n"
             "cpu0 60 0 30 450 1 0 1 5 0 0\n"
             "cpu1 40 0 20 450 2 0 0 7 0 0\n"
             "intr 12345 0 0\nctxt 999\n")


def test_steal_is_summed_over_the_per_cpu_lines_of_proc_stat():
    """The 8th number of each cpuN line (user nice system idle iowait irq softirq steal): 5 + 7; the
    aggregate "cpu" line (12, their sum) is not counted again, nor the lines that are not CPUs."""
    from benchmarks.stability import steal_jiffies
    assert steal_jiffies(PROC_STAT) == 12
    assert steal_jiffies("intr 1 2 3 4 5 6 7 8 9\n") == 0


def test_stability_summary_of_hand_made_windows():
    """Steps that double together keep the ratio at 0.5 with a correlation of 1; steps that move
    against each other (1, 2, 3 ms against 3, 2, 1) give ratios 1/3, 1 and 3 and a correlation of -1."""
    import pytest

    from benchmarks.stability import summarize

    def windows(ours, theirs):
        return [{"minicnn": a, "torch": b, "fma_1": 100.0, "fma_all": fma, "steal": k}
                for k, (a, b, fma) in enumerate(zip(ours, theirs, (200.0, 120.0, 230.0, 210.0)))]

    together = summarize(windows([2, 4, 6, 8], [4, 8, 12, 16]))
    assert together["minicnn"] == (2, 5, 8) and together["torch"] == (4, 10, 16)
    assert together["ratio"] == (0.5,) * 5 and together["correlation"] == pytest.approx(1.0)
    assert together["fma_all"] == (120, 205, 230) and together["steal"] == 0 + 1 + 2 + 3
    against = summarize(windows([1, 2, 3], [3, 2, 1]))
    assert against["ratio"][0] == pytest.approx(1 / 3) and against["ratio"][2] == 1 and against["ratio"][4] == 3
    assert against["correlation"] == pytest.approx(-1.0)


def test_stability_runs_a_window_and_refuses_bad_arguments(capsys):
    """``python -m benchmarks.stability --windows 1`` prints its header, one window's line with both
    engines' steps, and the summary; a window count of 0 is refused by name."""
    import pytest

    from benchmarks import stability
    summary = stability.main(["--model", "article", "--batch", "1", "--windows", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("article, training step at batch 1"), lines
    assert "step minicnn" in lines[1] and "torch" in lines[1] and lines[2].startswith("1 windows:"), lines
    assert summary["minicnn"][0] > 0 and summary["torch"][0] > 0 and summary["steal"] >= 0
    with pytest.raises(SystemExit):
        stability.main(["--windows", "0"])
    assert "--windows and --batch must be at least 1" in capsys.readouterr().err
