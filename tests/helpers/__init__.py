"""What the tests share and are not tests: paths, the Snakemake runner, tiny models, data sets,
servers and the module fixtures the top conftest registers (``pytest_plugins``). A test module
imports these from here, never from ``conftest`` or from another test module (checked by
tests/unit/core/test_structure.py); ``pythonpath = ["tests"]`` in pyproject.toml puts this
package on the path, and a subprocess that needs it gets ``PYTHONPATH`` with ``TESTS``."""
