"""The suite's own set-up (tests/conftest.py) on the jax releases it meets."""
from conftest import _NO_EMITTERS, _xla_knows


def test_an_xla_flag_is_tried_in_a_child_process_before_the_suite_sets_it():
    """XLA aborts a process on a flag it does not know (jaxlib >= 0.11 dropped the LLVM IR emitters' flag):
    the probe says no for an unknown flag, yes for a known one, and the suite's flags hold the emitter
    switch only where this XLA knows it."""
    import os
    assert not _xla_knows("--xla_lrsweep_no_such_flag=true")
    assert _xla_knows("--xla_force_host_platform_device_count=2")
    if os.environ.get("LRSWEEP_TEST_FUSION_EMITTERS") != "1":  # the suite runs on the LLVM IR emitters
        assert _NO_EMITTERS in os.environ["XLA_FLAGS"] and _xla_knows(_NO_EMITTERS)
