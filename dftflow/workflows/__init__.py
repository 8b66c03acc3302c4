"""FireWorks workflows of dftflow studies.

Importing this package first imports :mod:`dftflow.workflows.store`, which sets
``MONGOMOCK_SERVERSTORE_FILE`` before :mod:`fireworks` is imported (FireWorks reads it at import
time to choose the embedded store).
"""

from __future__ import annotations

from dftflow.workflows import store as store  # noqa: I001  (must precede any fireworks import)
