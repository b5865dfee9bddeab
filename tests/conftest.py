"""Hypothesis profiles: 'ci' (thorough, used when CI=true) and 'dev' (quick, the local default).

Choose explicitly with HYPOTHESIS_PROFILE=ci|dev.
"""
import os
import sys

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=500, print_blob=True, **_common)
settings.register_profile("dev", max_examples=25, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev"))


def pytest_configure(config):
    """minicnn's thread policy (Numba gets the cores, BLAS one thread), as the CLI applies it, but
    blind to other processes' load: which build a test runs (``kernel_build``) must not depend on
    what else the machine does. tests/test_architecture.py tests the load policy itself."""
    import minicnn
    minicnn.set_num_threads(adapt_to_load=False)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """The real dataset's folder. Missing data fails under CI=true (CI installs it with `make data`)."""
    from minicnn.training.data import DataError, find_dataset
    try:
        return find_dataset(allow_download=False)
    except DataError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and Fashion-MNIST is missing (run `make data`):\n{e}")
        pytest.skip(f"Fashion-MNIST is not installed (run `make data`): {e}")


@pytest.fixture(scope="session")
def fashion_mnist(fashion_mnist_dir):
    from minicnn.training.data import load_fashion_mnist
    return load_fashion_mnist("train", fashion_mnist_dir), load_fashion_mnist("test", fashion_mnist_dir)


def pytest_terminal_summary(terminalreporter):
    """One line: how many cases of torch's own test corpus ran per module (tests/test_torch_corpus.py)."""
    corpus = sys.modules.get("test_torch_corpus")
    if corpus is None or not corpus.COUNTS:
        return
    counts = ", ".join(f"{name} {n}" for name, n in sorted(corpus.COUNTS.items()))
    terminalreporter.write_line(f"torch corpus: {sum(corpus.COUNTS.values())} cases ran ({counts}); "
                                f"listed differences: {len(corpus.DIFFERENCES)}")


@pytest.fixture(scope="module", params=["serial", "parallel"])
def kernel_build(request):
    """Run a module's tests twice: every kernel in its serial build, then every kernel in its parallel
    one (minicnn picks by the size of the work, and the tests' inputs are mostly small)."""
    from minicnn import runtime
    saved = runtime.SERIAL_BELOW
    runtime.SERIAL_BELOW = 0 if request.param == "parallel" else 1 << 62
    yield request.param
    runtime.SERIAL_BELOW = saved
