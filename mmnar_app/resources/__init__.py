"""Files the app ships inside its package: the demo patients (`demo_patients/`, raw inputs of synthetic
test-split patients) and the model card's precomputed tables (`model_card/`).

They are found through `importlib.resources`, so they are wherever the package is installed (a wheel, an
editable checkout), whatever the current folder. The package is installed unzipped (pip installs wheels
unpacked; an editable install points at the checkout), so every resource is a real file on disk and a
`pathlib.Path` is returned. The demo bundle itself is the library's: `mmnar_core.resources.DEMO_BUNDLE`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """The real path of a file or folder shipped in `mmnar_app/resources`, e.g. `resource_path("demo_patients")`.

    Raises RuntimeError if the package is not on the file system (imported from a zip archive), which this
    project never installs it as."""
    path = files(__name__).joinpath(*parts)
    if not isinstance(path, Path):
        raise RuntimeError(f"mmnar_app resources must be installed unzipped, found {path!r}")
    return path
