"""The lab: benchmarks, the fuzz harness, load and attack tests, and validation experiments (faithfulness,
one-signal Shapley, the site-shift study). It may import the library (mmnar_core) and the app (mmnar_app);
neither imports it. Its commands join `mmnar` / `python -m mmnar_core` through the `mmnar.commands` entry
points declared in pyproject.toml."""
