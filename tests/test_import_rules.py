"""Import rules of the calibkeras source, checked on its text (nothing is imported).

Every module of ``calibkeras/`` is parsed with ``ast``; each ``import`` and
``from ... import`` in it, at module level or inside a function, is an edge to the
calibkeras module it loads (``from calibkeras.a import b`` goes to ``calibkeras.a.b``
when that is a module, else to ``calibkeras.a``). Importing a submodule also runs its
packages' ``__init__``, but those implicit edges are left out: every module would then
be in a cycle with its package's ``__init__``, which imports it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "calibkeras"

#: Import cycles tolerated for now, each a list of the modules that import one another
#: (a strongly connected component of the graph). Empty: the only cycle there was,
#: calibkeras.models.efficientnet_lite0 <-> efficientnet_lite0_weights, was removed by
#: making efficientnet_lite0 a package. Remove an entry once its cycle is fixed; add none.
ALLOWED_CYCLES = []

#: Packages that must have no import cycle at all, allowed or not.
ACYCLIC_PACKAGES = ("calibkeras.distribute", "calibkeras.models.efficientnet_lite")


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_modules():
    """``{module name: (path, is_package)}`` for every ``.py`` file under ``calibkeras/``."""
    return {
        module_name(path): (path, path.name == "__init__.py")
        for path in sorted(ROOT.rglob("*.py"))
    }


def imported_names(tree, name, is_package):
    """The absolute dotted names that the imports of one module's ``tree`` name:
    ``import a.b`` gives ``a.b``, ``from a import b`` gives ``a.b`` (module or not)."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, `level - 1` up
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph():
    """``(edges, external)``: calibkeras module -> calibkeras modules it imports, and ->
    the top-level names of the other packages it imports."""
    modules = read_modules()
    edges, external = {}, {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges[name], external[name] = set(), set()
        for target in imported_names(tree, name, is_package):
            if target.split(".")[0] != "calibkeras":
                external[name].add(target.split(".")[0])
                continue
            # `import calibkeras.a.b` and `from calibkeras.a import b` (b a function):
            # the longest prefix that is a module.
            while target not in modules:
                target = target.rpartition(".")[0]
            if target != name:
                edges[name].add(target)
    return edges, external


def cycles(edges):
    """The strongly connected components with more than one module (Tarjan), each as
    a list of module names in the order of one cycle through all of them."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(cycle_through(edges, component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def cycle_through(edges, component):
    """One closed path ``[a, b, ..., a]`` inside ``component``, starting at its first
    module: a shortest path back to it (breadth-first), enough to name the cycle."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges[node] & component):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"{sorted(component)} is not strongly connected")


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_sees_imports_at_module_and_function_level(graph):
    edges, external = graph
    # module level
    assert "calibkeras.models.efficientnet_lite.architecture" in edges[
        "calibkeras.models.efficientnet_lite.weights"]
    assert "calibkeras.distribute.cluster" in edges["calibkeras.distribute.strategies"]
    # inside a function: `from calibkeras.distribute import batch_predictor`
    assert "calibkeras.distribute" in edges["calibkeras.utils.batches"]
    # `from calibkeras import workflow`: a submodule, not the package
    assert "calibkeras.workflow" in edges["calibkeras.cli"]
    assert "tensorflow" in external["calibkeras.distribute.strategies"]


def test_the_cycle_finder_names_a_cycle():
    edges = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert cycles(edges) == [["p.a", "p.b", "p.c", "p.a"]]
    assert cycles({"p.a": {"p.b"}, "p.b": set()}) == []


def test_no_import_cycles_but_the_allowed_ones(graph):
    edges, _ = graph
    found = cycles(edges)
    allowed = [set(cycle) for cycle in ALLOWED_CYCLES]
    new = [cycle for cycle in found if set(cycle) not in allowed]
    assert not new, "import cycles in calibkeras:\n" + "\n".join(
        " -> ".join(cycle) for cycle in new)
    gone = [sorted(cycle) for cycle in allowed if cycle not in [set(c) for c in found]]
    assert not gone, f"no longer cycles, remove them from ALLOWED_CYCLES: {gone}"


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_package_has_no_import_cycle(graph, package):
    edges, _ = graph
    assert package in edges, f"{package} is not a module of calibkeras"
    inside = {
        name: {t for t in targets if t == package or t.startswith(package + ".")}
        for name, targets in edges.items()
        if name == package or name.startswith(package + ".")
    }
    found = cycles(inside)
    assert not found, f"import cycles in {package}:\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)


def test_tf_config_checks_need_no_tensorflow(graph):
    """``calibkeras.distribute.cluster`` and what it imports of calibkeras use neither
    TensorFlow nor Keras (TF_CONFIG can be checked before TensorFlow starts)."""
    edges, external = graph
    seen, todo = set(), ["calibkeras.distribute.cluster"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    heavy = sorted(
        f"{name} imports {package}" for name in seen for package in external[name]
        if package in ("tensorflow", "keras")
    )
    assert not heavy, heavy
