"""The package layout: stages import each other only through their packages' public names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "syndicate"
ROOT_MODULES = {"__init__.py", "__main__.py", "config.py", "errors.py", "wiring.py", "docs.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def test_no_module_imports_another_packages_private_module():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        home = path.relative_to(PACKAGE).parts[0]
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] != "syndicate" or len(parts) < 3:
                continue
            if parts[1] != home and any(part.startswith("_") for part in parts[2:]):
                offences.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert offences == []


def test_the_package_root_holds_only_what_every_stage_shares():
    modules = {p.name for p in PACKAGE.glob("*.py")}
    assert modules <= ROOT_MODULES, modules - ROOT_MODULES
    stages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"content", "site", "digest", "delivery", "mail", "subscribers", "storage", "service", "cli", "web"} <= stages
