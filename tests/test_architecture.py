"""The package's shape, checked: the layers written in pyproject.toml hold (import-linter), imports
run one way (no cycles), the core knows no Optuna or MLflow, modules stay small, the root holds
the face and little else, and the study record is the only code that touches user_attrs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vae_tune"
MAX_LINES = 350
MAX_ROOT_MODULES = 6  # the face (__init__) and the few modules every layer may use
# Models, training, data and how a model is judged know nothing of Optuna, MLflow or the stores.
CORE = sorted(
    str(path.relative_to(PACKAGE))
    for package in ("data", "models", "evaluation")
    for path in (PACKAGE / package).glob("*.py")
)
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
    tree = ast.parse((PACKAGE / module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & set(TRACKERS), f"{module} imports {names & set(TRACKERS)}"


def layers() -> list[str]:
    """The layers as pyproject.toml writes them, top first; siblings split."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = config["contracts"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's own command on the package under `cwd`, with its pyproject.toml."""
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(command), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_layers_hold() -> None:
    checked = lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 kept, 0 broken" in checked.stdout


def test_every_package_and_root_module_has_a_layer() -> None:
    """A package or root module left out of the layers would escape the check."""
    housed = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    housed |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert housed == set(layers())


def test_the_root_holds_the_face_and_little_else() -> None:
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root_modules) <= MAX_ROOT_MODULES, root_modules


def test_the_layer_check_catches_an_import_from_above(tmp_path: Path) -> None:
    """The check itself: a copy of the package where the training loop imports the CLI."""
    shutil.copytree(PACKAGE, tmp_path / "vae_tune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "vae_tune" / "models" / "train.py").open("a") as train:
        train.write("\nfrom vae_tune.cli import app  # a layer climbed\n")
    checked = lint_imports(tmp_path)
    assert checked.returncode != 0
    assert "vae_tune.models is not allowed to import vae_tune.cli" in checked.stdout
    assert "vae_tune.models.train -> vae_tune.cli.app" in checked.stdout


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


# The CLI is a shell over the public API (DESIGN rule 15): options in, one `vae_tune.api` call,
# its result rendered. What an exception means for the exit code (errors, failures) is its own,
# and so is how a running study is drawn in a terminal (progress).
CLI_MAY_IMPORT = (
    "vae_tune.api",
    "vae_tune.progress",
    "vae_tune.errors",
    "vae_tune.failures",
    "vae_tune.cli",
)
CLI_MAY_IMPORT_FROM_ROOT = {"api", "__version__"}


def package_imports(path: Path) -> list[str]:
    """Every `vae_tune` import in a module, `if TYPE_CHECKING:` and function bodies included:
    `from vae_tune import x` as `vae_tune.x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "vae_tune":
            found += [f"vae_tune.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return [name for name in found if name.split(".")[0] == "vae_tune"]


def cli_may_import(name: str) -> bool:
    if name.count(".") == 1 and name.split(".")[1] in CLI_MAY_IMPORT_FROM_ROOT:
        return True
    return any(name == allowed or name.startswith(f"{allowed}.") for allowed in CLI_MAY_IMPORT)


def test_the_cli_calls_only_the_public_api() -> None:
    cli = sorted((PACKAGE / "cli").glob("*.py"))
    assert len(cli) >= 5
    wrong = {
        f"{path.name}: {name}"
        for path in cli
        for name in package_imports(path)
        if not cli_may_import(name)
    }
    assert not wrong, f"the CLI reaches past vae_tune.api: {sorted(wrong)}"


def test_the_cli_rule_catches_a_reach_past_the_api(tmp_path: Path) -> None:
    """The check itself: the imports the CLI made before it was a shell are refused."""
    module = tmp_path / "old.py"
    module.write_text(
        "from vae_tune.usecases import runner\n"
        "def go():\n"
        "    from vae_tune.studies.plan import StudyRequest\n"
        "    import vae_tune.ops.ui\n"
        "from vae_tune import api, __version__\n"
        "from vae_tune.cli import render\n"
    )
    names = package_imports(module)
    assert [n for n in names if not cli_may_import(n)] == [
        "vae_tune.usecases",
        "vae_tune.studies.plan",
        "vae_tune.ops.ui",
    ]
