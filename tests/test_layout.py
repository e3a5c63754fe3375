"""The package's layout is its architecture (docs/architecture.md): imports go one way."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "alignez_core"
# A stage may import its own subpackage and any stage with a lower rank.
RANK = {
    "errors": 0,
    "engine": 1,
    "axes": 2,
    "steering": 3,
    "measure": 3,
    "fitting": 4,
    "evaluation": 5,
    "interop": 5,
    "server": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}
OUTSIDE = ("ui", "bench", "tests", "app")
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool, top_level_only: bool = False) -> list[str]:
    """Every module the source imports (relative imports resolved), inside functions too."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names]  # submodules by name
    return found


def stage(module: str) -> str | None:
    """The stage of an `alignez_core` module, e.g. 'engine' for alignez_core.engine.model."""
    parts = module.split(".")
    if parts[0] != "alignez_core":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = stage(module)
    found = []
    for target in imports(source, module, is_package):
        other = stage(target)
        if target.split(".")[0] in OUTSIDE:
            found.append(f"{module} imports {target}, outside the package")
        elif other in RANK and other != own and RANK[other] >= RANK[own]:  # type: ignore[index]
            found.append(
                f"{module} ({own}, rank {RANK[own]}) imports {target} ({other}, rank "  # type: ignore[index]
                f"{RANK[other]}): imports go from higher stages to lower ones only"
            )
    return found


def test_every_module_belongs_to_a_known_stage():
    for path in MODULES:
        assert stage(module_name(path)) in RANK, f"{path}: add its stage to RANK and the docs"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path):
    name = module_name(path)
    assert violations(path.read_text(), name, path.name == "__init__.py") == []


def test_no_import_cycle_at_module_level():
    known = {module_name(path): path for path in MODULES}
    graph = {
        name: {
            target
            for target in imports(path.read_text(), name, path.name == "__init__.py", True)
            if target in known and target != name
        }
        for name, path in known.items()
    }

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, "import cycle: " + " → ".join((*trail, name))
        for target in graph[name]:
            visit(target, (*trail, name))

    for name in graph:
        visit(name, ())


@pytest.mark.parametrize(
    "source",
    [
        "from alignez_core.fitting.fit import fit_axis",
        "from ..fitting import fit",
        "import alignez_core.steering.plan",
        "def lazy():\n    from alignez_core.axes import pack",
        "from ui.session import StudioSession",
    ],
)
def test_the_check_catches_an_import_against_the_direction(source):
    assert len(violations(source, "alignez_core.engine.model")) >= 1
    assert violations("from .edit import Edit", "alignez_core.engine.model") == []
