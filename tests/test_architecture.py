"""The package reads bottom-up: runtime -> functional -> nn -> optim -> testing -> training.

Every module of minicnn/ belongs to exactly one layer, no import runs from a lower
layer to a higher one, there is no import cycle, and the library never loads torch
(nor the app's tqdm and matplotlib) unless a torch-comparison tool runs.
"""
import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minicnn"
LAYERS = ["runtime", "functional", "nn", "optim", "testing", "training"]
FACADE = {"minicnn", "minicnn.__main__"}  # re-exports the public API; imports from every layer


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name):
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def imports_of(name):
    """The minicnn modules that ``name`` imports (relative imports resolved), wherever the import stands."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "minicnn")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "minicnn":
                continue
            for alias in node.names:  # `from . import functional` names a module, `from .x import f` a name
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


def test_every_module_belongs_to_one_layer():
    for name in MODULES:
        assert name in FACADE or layer_of(name) is not None, f"{name} is in no layer of {LAYERS}"
    assert {layer_of(n) for n in MODULES if n not in FACADE} == set(range(len(LAYERS)))


@pytest.mark.parametrize("name", sorted(set(MODULES) - FACADE))
def test_no_import_from_a_higher_layer(name):
    for target in imports_of(name):
        assert target not in FACADE, f"{name} imports the package facade {target}; import the layer instead"
        assert layer_of(target) <= layer_of(name), \
            f"{name} ({LAYERS[layer_of(name)]}) imports {target} ({LAYERS[layer_of(target)]}), a higher layer"


def test_no_import_cycles():
    graph = {name: imports_of(name) for name in MODULES if name not in FACADE}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_checker_sees_a_violation(tmp_path):
    """The layer check is not vacuous: it resolves relative imports to the modules they name."""
    assert "minicnn.functional" in imports_of("minicnn.nn.layers")
    assert "minicnn.nn.module" in imports_of("minicnn.optim")
    assert "minicnn.training.models" in imports_of("minicnn.training.loop")


def test_the_library_imports_without_torch_or_the_app():
    code = ("import sys, numpy as np, minicnn as mc, minicnn.functional as F, minicnn.testing\n"
            "m = mc.Sequential(mc.Conv2d(1, 2, 3), mc.ReLU(), mc.Flatten(), mc.Linear(8, 2))\n"
            "m(np.zeros((1, 1, 4, 4), np.float32))\n"
            "print(sorted(k for k in ('torch', 'tqdm', 'matplotlib', 'reference', 'benchmarks') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_wheel_ships_only_the_library(tmp_path):
    """A built wheel holds the package minicnn and nothing else at the top level."""
    import zipfile
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("minicnn-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"minicnn"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "minicnn/functional/conv.py" in names and "minicnn/training/cli.py" in names


@pytest.mark.parametrize("first", ["import minicnn, numpy, torch", "import numpy, torch, minicnn"])
def test_the_thread_policy_holds_whatever_is_imported_first(first):
    """Either order: importing minicnn starts no thread pool and changes no BLAS setting; its first
    parallel kernel starts Numba's OpenMP pool and leaves OMP_WAIT_POLICY alone; minicnn's Linear
    runs its backward's split products (gemm.matmul) on one BLAS thread each and restores the count
    after (its forward is no BLAS product: fast_linear's tiles).
    Both orders end in the same state: torch's wheel libgomp loaded first, the system one Numba links
    beside it."""
    code = (f"{first}\n"
            "import os, json, contextlib, numpy as np, minicnn, numba\n"
            "from numba.np.ufunc import parallel\n"
            "from threadpoolctl import threadpool_info\n"
            "def blas(): return [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
            "state = dict(started_at_import=bool(getattr(parallel, '_is_initialized', False)), blas_before=blas())\n"
            "minicnn.Conv2d(4, 8, 3)(np.ones((64, 4, 32, 32), np.float32))  # big enough for the parallel build\n"
            "seen = []\n"
            "real = minicnn.runtime.blas_threads\n"
            "@contextlib.contextmanager\n"
            "def spy(*a):\n"
            "    with real(*a):\n"
            "        seen.append(blas())\n"
            "        yield\n"
            "minicnn.runtime.blas_threads = spy\n"
            "lin = minicnn.Linear(300, 200)\n"
            "lin.backward(np.ones((256, 200), np.float32)) if lin(np.ones((256, 300), np.float32)) is not None else None\n"
            "torch.ones(1000, 1000).sum()\n"
            "gomp = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l})\n"
            "state.update(omp=os.environ.get('OMP_WAIT_POLICY'), layer=numba.threading_layer(), inside=seen,\n"
            "             blas_after=blas(), gomp=gomp)\n"
            "print(json.dumps(state))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    cores = len(os.sched_getaffinity(0))
    assert state["started_at_import"] is False
    assert state["omp"] is None and state["layer"] == "omp"
    assert state["blas_before"] == [cores] and state["blas_after"] == [cores]
    assert state["inside"] == [[1], [1]]  # the input gradient, the weight gradient
    assert len(state["gomp"]) == 2 and any("/torch/" in path for path in state["gomp"]), state["gomp"]


@pytest.mark.parametrize("setting, tuned", [(None, True), ("default", False)])
def test_freed_memory_is_reused_without_page_faults(setting, tuned):
    """import minicnn keeps freed memory for reuse (glibc's mallopt). A round that holds eight 4 MB arrays
    at once, as a training step holds its activations, then frees them, touches no new page the next
    time; glibc's default hands the freed top of the heap back to the kernel (it exceeds the trim
    threshold, twice the 4 MB mmap threshold it adapted to), and the next round faults pages in again
    (4,072 of the round's 8 x 4 MB / 4 KB = 8,192 on the AMD EPYC machine). MINICNN_MALLOC=default
    opts out."""
    code = ("import json, resource, numpy as np, minicnn\n"
            "def round(): [np.ones(1 << 20, np.float32) for _ in range(8)]\n"
            "for _ in range(3): round()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(20): round()\n"
            "faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20\n"
            "print(json.dumps(dict(tuned=minicnn.runtime.MALLOC_TUNED, faults=faults)))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MINICNN_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    if setting is not None:
        env["MINICNN_MALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["tuned"] is tuned
    if tuned:
        assert state["faults"] < 100
    else:
        assert state["faults"] > 2000
