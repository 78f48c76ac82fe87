"""Files the app ships inside its package: the demo patients (`demo_patients/`, raw inputs of synthetic
test-split patients) and the model card's precomputed tables (`model_card/`).

They are found through `importlib.resources`, so they are wherever the package is installed (a wheel, an
editable checkout), whatever the current folder. The package is installed unzipped (pip installs wheels
unpacked; an editable install points at the checkout), so every resource is a real file on disk and a
`pathlib.Path` is returned. The demo bundle itself is the library's: `mmnar_core.resources.DEMO_BUNDLE`.
"""

from __future__ import annotations

from pathlib import Path

from mmnar_core.resources import package_resource


def resource_path(*parts: str) -> Path:
    """The real path of a file or folder shipped in `mmnar_app/resources`, e.g. `resource_path("demo_patients")`."""
    return package_resource(__name__, *parts)
