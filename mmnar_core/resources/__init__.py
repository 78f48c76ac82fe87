"""Files the library ships inside its package: the demo model bundle (`demo_bundle/`) and the demo image
encoder's weights with their README (`encoders/`).

They are found through `importlib.resources`, so they are wherever the package is installed (a wheel, an
editable checkout), whatever the current folder. The package is installed unzipped (pip installs wheels
unpacked; an editable install points at the checkout), so every resource is a real file on disk and a
`pathlib.Path` is returned: callers can open, copy, hash or memory-map it like any other file.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_resource(package: str, *parts: str) -> Path:
    """The real path of a file or folder shipped in `package` (a resources package of this project).

    Raises RuntimeError if the package is not on the file system (imported from a zip archive), which this
    project never installs it as."""
    path = files(package).joinpath(*parts)
    if not isinstance(path, Path):
        raise RuntimeError(f"{package} must be installed unzipped, found {path!r}")
    return path


def resource_path(*parts: str) -> Path:
    """The real path of a file or folder shipped in `mmnar_core/resources`, e.g. `resource_path("demo_bundle")`."""
    return package_resource(__name__, *parts)


DEMO_BUNDLE = resource_path("demo_bundle")  # the model the app, the examples and the tests load by default
SHIPPED_IMAGE_WEIGHTS = resource_path("encoders", "cxr_mobilenet_v3_small_synth.safetensors")
