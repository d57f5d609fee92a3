"""The import rule of the layout (README, "Layout"): one way down, no circles.

Every import counts, at module level or inside a function: an import moved into a function to
dodge a circle is still a circle. The graph is read from the source with ``ast``, not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("service", "bandits", "assets")
# Leaves: errors with their status, the store (SQLite or PostgreSQL), the VW format (text, features, blocks of action
# lines, the options allowed), the estimators. They import nothing of Marquee's but the errors.
LEAVES = (
    "bandits.errors",
    "bandits.deployment",
    "bandits.storage",
    "bandits.postgres",
    "bandits.vw",
    "bandits.vw.workspace",
    "bandits.vw.features",
    "bandits.vw.blocks",
    "bandits.vw.options",
    "bandits.evaluate.estimators",
)


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Return the project modules ``name`` imports, anywhere in its source."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for (
                alias
            ) in node.names:  # ``from bandits.evaluate import offline`` imports the module bandits.evaluate.offline
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return {owner for target in targets if (owner := _owner(target, known)) is not None and owner != name}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Return the imports of ``service`` from ``bandits`` or ``assets``."""
    return sorted(
        (name, target)
        for name, targets in edges.items()
        if not name.startswith("service")
        for target in targets
        if target == "service" or target.startswith("service.")
    )


def test_no_module_imports_itself_back_through_others():
    assert circles(graph()) == []


def test_nothing_below_service_imports_service():
    assert upward(graph()) == []


# The store is one leaf in two modules: its door (connections, transactions, schema) and its server engine.
# The VW format likewise: its text (features, the one reader and writer of lines) and the workspace door.
WITHIN_A_LEAF = {"bandits.storage": {"bandits.postgres"}, "bandits.vw.workspace": {"bandits.vw.features"}}


def test_leaves_import_nothing_of_ours_but_the_errors():
    edges = graph()
    assert {leaf: sorted(edges[leaf] - {"bandits.errors"} - WITHIN_A_LEAF.get(leaf, set())) for leaf in LEAVES} == {
        leaf: [] for leaf in LEAVES
    }
    assert edges["bandits.errors"] == set()


def test_assets_import_leaves_only():
    edges = graph()
    found = {
        name: sorted(target for target in targets if not target.startswith("assets") and target not in LEAVES)
        for name, targets in edges.items()
        if name.startswith("assets")
    }
    assert found == {name: [] for name in found}


def test_the_checks_find_a_circle_and_an_upward_import(tmp_path):
    # The same checks on a small tree with both faults, one of them through a function-level import.
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "bandits" / "a.py").write_text("from bandits import b\n")
    (tmp_path / "bandits" / "b.py").write_text("def f():\n    from bandits.a import g\n")
    (tmp_path / "assets" / "c.py").write_text("from service.errors import Invalid\n")
    (tmp_path / "service" / "errors.py").write_text("from . import views\n")
    (tmp_path / "service" / "views.py").write_text("")
    edges = graph(tmp_path)
    assert circles(edges) == [["bandits.a", "bandits.b"]]
    assert upward(edges) == [("assets.c", "service.errors")]
    assert edges["service.errors"] == {"service.views"}


def test_every_api_that_ranks_logs_through_the_one_rank_use_case():
    views = sorted((ROOT / "service" / "views").glob("*.py"))
    logging_itself = [path.name for path in views if "log_decision" in path.read_text()]
    ranking = [path.name for path in views if "rank_and_log(" in path.read_text()]
    assert logging_itself == []
    assert ranking == ["decisions.py", "personalizer.py"]


def test_no_test_module_imports_another():
    imported = {
        path.name: sorted(
            name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module
            for name in [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            if name.startswith("tests.") and name.rpartition(".")[2].startswith("test_")
        )
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
    }
    assert {name: found for name, found in imported.items() if found} == {}


def test_tests_mirror_the_packages():
    """Each folder of tests/ is the folder of code it tests: tests/bandits/log/ tests bandits/log/."""
    folders = sorted(
        str(path.relative_to(ROOT / "tests"))
        for path in (ROOT / "tests").rglob("*")
        if path.is_dir() and any(path.glob("test_*.py"))
    )
    assert folders, "no test folders found"
    assert [folder for folder in folders if not (ROOT / folder).is_dir()] == []
    assert [folder for folder in folders if not (ROOT / folder / "__init__.py").is_file()] == []


# bandits/ from the bottom up (README, "Layout"): each layer is a package of bandits/ (the leaves are
# the modules named above), and a module imports its own layer and those below only.
BANDITS_LAYERS = ("leaves", "model", "decide", "log", "learn", "evaluate", "reports", "personalizer", "simulator")


def layer_of(name: str) -> str:
    """Return the layer of a bandits module: a leaf, or the package (or top-level module) it is in."""
    return "leaves" if name in LEAVES else name.split(".")[1]


def test_bandits_layers_are_its_packages():
    edges = graph()
    unplaced = sorted(name for name in edges if name.startswith("bandits.") and layer_of(name) not in BANDITS_LAYERS)
    assert unplaced == []
    # vw/ holds leaves only: the VW format is below everything that writes or reads it.
    assert sorted(name for name in edges if name.startswith("bandits.vw") and name not in LEAVES) == []


def test_bandits_imports_go_down_its_layers():
    level = {name: index for index, name in enumerate(BANDITS_LAYERS)}
    edges = graph()
    upward_imports = sorted(
        f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
        for name, targets in edges.items()
        if name.startswith("bandits.")
        for target in targets
        if target.startswith("bandits.") and level[layer_of(target)] > level[layer_of(name)]
    )
    assert upward_imports == []


def test_views_hold_no_sql():
    found = {
        path.name: path.read_text().count(".execute(")
        for path in sorted((ROOT / "service" / "views").glob("*.py"))
        if ".execute(" in path.read_text()
    }
    assert found == {}


def test_vw_text_is_split_and_labeled_in_one_module():
    """bandits.vw.features writes and reads VW lines; elsewhere a line is only passed on or joined."""
    splitting = ('.split("|")', '.rpartition(":")', 'f"0:', '.startswith("shared")')
    found = {
        name: [pattern for pattern in splitting if pattern in path.read_text()]
        for name, path in modules().items()
        if name != "bandits.vw.features"
    }
    assert {name: patterns for name, patterns in found.items() if patterns} == {}
