"""``backend``: every module in ``backends/`` in turn (see ``backend.py``)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration.contract import backends
from tests.integration.contract.backend import ContractBackend


def _modules() -> list[ModuleType]:
    found = []
    for info in sorted(pkgutil.iter_modules(backends.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            found.append(importlib.import_module(f"{backends.__name__}.{info.name}"))
    return found


MODULES = _modules()


@pytest.fixture(params=MODULES, ids=[m.NAME for m in MODULES])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractBackend]:
    module: ModuleType = request.param
    with module.open_backend(tmp_path) as b:
        yield b
