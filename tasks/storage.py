"""`tasks.storage` is the top-level `storage` package (URI I/O below `tasks/` and `serving/`).

Kept so that `from tasks import storage` keeps working; new code imports `storage` itself.
"""

from __future__ import annotations

from storage import *  # noqa: F403 - the same names, one definition
from storage import __all__ as __all__
