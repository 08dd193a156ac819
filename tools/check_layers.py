"""Check the ``[tool.importlinter]`` contracts of pyproject.toml on direct imports.

A stand-in for ``lint-imports`` until import-linter is installed: it reads the same contracts
(``layers`` with ``:``/``|`` siblings, and ``forbidden``) and lists, per contract, each module
that imports what it may not. Every import statement counts, at any depth, ``TYPE_CHECKING``
blocks too. Unlike import-linter it does not follow indirect chains. Run from the root::

    python tools/check_layers.py
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect(roots: list[str]) -> dict[str, set[str]]:
    """Module -> the names it imports (``from a import b`` gives both ``a`` and ``a.b``)."""
    imports: dict[str, set[str]] = defaultdict(set)
    for root in roots:
        for path in Path(root).rglob("*.py"):
            mod = module_name(path)
            imports.setdefault(mod, set())
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imports[mod].update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        anchor = mod.split(".")
                        if path.name != "__init__.py":
                            anchor = anchor[:-1]
                        anchor = anchor[: len(anchor) - node.level + 1]
                        base = ".".join([*anchor, base] if base else anchor)
                    imports[mod].add(base)
                    imports[mod].update(f"{base}.{a.name}" for a in node.names)
    return imports


def within(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def as_module(name: str, known: dict[str, set[str]]) -> str:
    """``a.b.Name`` -> ``a.b`` when ``a.b`` is one of ours."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return parts[0]


def check(contract: dict[str, list[str] | str], imports: dict[str, set[str]]) -> list[str]:
    found: set[str] = set()
    if contract["type"] == "layers":
        layers = [re.split(r"\s*[:|]\s*", layer) for layer in contract["layers"]]

        def level(mod: str) -> int | None:
            for i, group in enumerate(layers):
                if any(within(mod, g) for g in group):
                    return i
            return None

        for mod, names in imports.items():
            low = level(mod)
            for name in names:
                high = level(name)
                if low is not None and high is not None and high < low:
                    found.add(f"{mod} -> {as_module(name, imports)}")
    elif contract["type"] == "forbidden":
        for mod, names in imports.items():
            if not any(within(mod, s) for s in contract["source_modules"]):
                continue
            for name in names:
                if any(within(name, f) for f in contract["forbidden_modules"]):
                    found.add(f"{mod} -> {as_module(name, imports)}")
    else:
        return [f"(contract type {contract['type']!r} not checked here)"]
    # `from a import b` names both a and a.b: keep the deeper one
    return sorted(r for r in found if not any(o.startswith(r + ".") for o in found))


def main() -> int:
    config = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["importlinter"]
    imports = collect(config["root_packages"])
    broken = 0
    for contract in config["contracts"]:
        rows = check(contract, imports)
        print(f"{contract['name']}: {'BROKEN' if rows else 'KEPT'}")
        for row in rows:
            print(f"    {row}")
        broken += bool(rows)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
