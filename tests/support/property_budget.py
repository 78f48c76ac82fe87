"""The one fixed Hypothesis budget of the property tests (scaled by MMNAR_PROPERTY_SCALE for a longer run)."""

import os

from hypothesis import HealthCheck, settings


def budget(n: int):
    n = max(1, int(n * float(os.environ.get("MMNAR_PROPERTY_SCALE", "1"))))
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
