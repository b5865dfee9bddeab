"""Hypothesis profiles: 'ci' (thorough, used when CI=true) and 'dev' (quick, the local default).

Choose explicitly with HYPOTHESIS_PROFILE=ci|dev.
"""
import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=500, print_blob=True, **_common)
settings.register_profile("dev", max_examples=25, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev"))
