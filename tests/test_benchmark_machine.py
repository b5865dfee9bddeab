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
