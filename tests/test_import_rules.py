"""The folder shows the architecture: every import statement of every package, top level or inside a function,
obeys the rules below (bench/ and tests/ may import anything)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("instrument_id", "train", "tflite", "serving", "model_zoo", "bench")
# importing package -> project packages it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    "instrument_id": frozenset(PACKAGES) - {"instrument_id"},
    "serving": frozenset({"train", "bench"}),
    "tflite": frozenset({"train", "bench"}),
    "train": frozenset({"tflite", "serving", "bench"}),
    "model_zoo": frozenset({"bench"}),
}


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every Import and ImportFrom anywhere in the tree; relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # a relative import stays inside its own package
                module = f"{package}.{module}" if module else package
            found.append((node.lineno, module))
    return found


def violations() -> list[str]:
    """'file:line: import X (package may not import Y)' for every import that breaks a rule."""
    broken = []
    for package in PACKAGES:
        forbidden = FORBIDDEN.get(package, frozenset())
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, module in imported_modules(tree, package):
                target = module.split(".")[0]
                if target in forbidden:
                    broken.append(f"{path.relative_to(ROOT)}:{line}: import {module} ({package} may not import {target})")
    return broken


def test_every_package_exists_and_is_scanned():
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), f"{package}/ is not a package"


def test_no_package_imports_against_the_rules():
    broken = violations()
    assert not broken, "imports against the package rules:\n" + "\n".join(broken)


def test_a_function_level_import_is_caught():
    tree = ast.parse("def f():\n    from train.models import train_model\n")
    assert imported_modules(tree, "serving") == [(2, "train.models")]
