"""The benchmark report names the CPU it ran on, generation included."""
from benchmarks.machine import cpu_name

ZEN5 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
XEON = ("processor\t: 0\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n")


def test_cpu_name_adds_family_and_model_to_the_model_name():
    assert cpu_name(ZEN5) == "AMD EPYC (family 26, model 2)"
    assert cpu_name(XEON) == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (family 6, model 143)"


def test_cpu_name_without_family_is_the_model_name():
    assert cpu_name("model name\t: AMD EPYC\n") == "AMD EPYC"


def test_fma_chains_compute_twelve_chains_of_multiply_adds():
    """Each of the 12 stored vectors is s -> a*s + b from s = 0, ``steps`` times: with a = 0.5 and b = 1,
    1, 1.5, 1.75, exactly."""
    import numpy as np

    from benchmarks.machine import _fma_chains
    from minicnn.functional.simd import VECTOR_BYTES
    out = np.zeros(12 * VECTOR_BYTES // 4 + 3, np.float32)
    _fma_chains(np.array([0.5, 1.0], np.float32), 3, out, 3)
    assert out[:3].tolist() == [0, 0, 0] and np.all(out[3:] == 1.75)


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
