"""Helpers of the test suite, not tests: builders of test inputs (datasets, FHIR bundles, a MIMIC-IV root;
DICOM files come from the project's one writer, mmnar_lab.dicom), fixture plugins that tests/conftest.py lists in `pytest_plugins` (a PostgreSQL server,
stores, backups, signed-in app pages) and scripts the tests run in a subprocess (ddp_worker.py).

Test modules import helpers from here (``from support.fhir import make_bundle``); pytest puts tests/ on
sys.path because tests/ has a conftest.py and no __init__.py. Fixtures come from the plugins, never
by importing a test module or a plugin's fixture function."""
