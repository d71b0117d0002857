"""The package's shape, checked: imports run one way (no cycles), the core knows no Optuna or
MLflow, modules stay small, and the study record is the only code that touches user_attrs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vae_tune"
MAX_LINES = 350
# Models, training and data know nothing of Optuna, MLflow, YAML or the stores.
CORE = ("models", "layers", "train", "config", "data", "augment", "calibrate")
TRACKERS = ("optuna", "optuna_dashboard", "mlflow")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it but `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    found = modules()
    names = set(found)
    edges = {name: imports(path, names) - {name} for name, path in found.items()}
    # A package's __init__ importing its own submodules is not a dependency of theirs on it.
    return {n: {m for m in deps if not n.startswith(f"{m}.")} for n, deps in edges.items()}


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for dep in sorted(edges[name]):
            if state.get(dep) == "open":
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("module", CORE)
def test_core_modules_know_no_trackers(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & set(TRACKERS), f"{module}.py imports {names & set(TRACKERS)}"


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert not {n: s for n, s in sizes.items() if s > MAX_LINES}, f"over {MAX_LINES} lines"


def test_only_the_record_touches_user_attrs() -> None:
    for name, path in modules().items():
        if name == "vae_tune.record" or name.startswith("vae_tune.record."):
            continue
        text = path.read_text()
        assert "user_attrs[" not in text and "set_user_attr(" not in text, name
        assert ".user_attrs.get(" not in text, name
