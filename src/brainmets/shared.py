"""Where the shared, read-only reference data lives (atlas, standards, test data).

The rule: ``$BRAINMETS_SHARED`` when set; otherwise ``../shared`` relative to the current
folder, which is the development setup when commands run from the repository root (``make``
sets ``BRAINMETS_SHARED`` to that folder, and the test suite does when it is unset). Nothing
here depends on where the package is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_SHARED = "BRAINMETS_SHARED"


def env_shared_dir() -> Path | None:
    """The folder ``$BRAINMETS_SHARED`` names, or None when it is not set."""
    env = os.environ.get(ENV_SHARED)
    return Path(env).expanduser().resolve() if env else None


def shared_dir() -> Path:
    """The shared data folder (may not exist on a user's machine): see the module docstring."""
    env = env_shared_dir()
    if env is not None:
        return env
    return (Path.cwd().parent / "shared").resolve()


def testdata_dir() -> Path:
    return shared_dir() / "testdata"


def standards_dir() -> Path:
    return shared_dir() / "standards"
