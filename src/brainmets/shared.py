"""Where the shared, read-only reference data lives (atlas, standards, test data).

Resolved from ``BRAINMETS_SHARED``; by default the ``shared`` folder beside the repository
checkout (``../shared`` from the repository root), which is the development setup.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_SHARED = "BRAINMETS_SHARED"


def repo_root() -> Path:
    """The repository root when running from a source checkout (src layout)."""
    return Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The shared data folder (may not exist on a user's machine)."""
    env = os.environ.get(ENV_SHARED)
    if env:
        return Path(env).expanduser().resolve()
    return (repo_root().parent / "shared").resolve()


def testdata_dir() -> Path:
    return shared_dir() / "testdata"


def standards_dir() -> Path:
    return shared_dir() / "standards"
