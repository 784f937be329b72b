"""Performance scripts (run as `python benchmarks/<name>.py`); a package so that module names
such as `benchmarks.serving` never clash with the top-level packages under mypy."""
