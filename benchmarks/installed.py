"""Measure reconciler as an installed copy runs: from compiled bytecode.

``pip install`` compiles every module to ``.pyc``; a checkout run with
``PYTHONDONTWRITEBYTECODE`` set (as some shells and CI images do) compiles each module from
source in every fresh process instead, which is start-up the product does not have (tens of
milliseconds per command on a slow machine). Every benchmark calls :func:`like_an_install`
before it starts a measured process.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def like_an_install() -> None:
    """Compile the package's bytecode now and let the measured processes read it."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if not compileall.compile_dir(str(ROOT / "reconciler"), quiet=1):
        raise SystemExit("could not compile reconciler/ to bytecode")
