"""The package's layout stays readable: small modules, package faces that
only re-export, and no package reaching into another package's private
modules (see "Layout" in the design notes and docs/concepts.md)."""

import ast
import os

import keras_guided

PACKAGE = os.path.dirname(os.path.abspath(keras_guided.__file__))
MAX_MODULE_LINES = 500
MAX_FACE_CODE_LINES = 60


def _modules():
    """{path relative to the package: source} of every module."""
    sources = {}
    for folder, _, filenames in os.walk(PACKAGE):
        for filename in filenames:
            if filename.endswith(".py"):
                path = os.path.join(folder, filename)
                with open(path, encoding="utf-8") as f:
                    sources[os.path.relpath(path, PACKAGE)] = f.read()
    return sources


def _subpackages():
    return {
        name
        for name in os.listdir(PACKAGE)
        if os.path.isfile(os.path.join(PACKAGE, name, "__init__.py"))
    }


def _code_lines(source):
    """Non-blank, non-comment lines after the module docstring, apart from
    re-exports (import statements and the `__all__` list): the main code a
    face holds."""
    tree = ast.parse(source)
    skipped = set()
    for index, node in enumerate(tree.body):
        docstring = (
            index == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        re_export = isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
        )
        if docstring or re_export:
            skipped.update(range(node.lineno, node.end_lineno + 1))
    return [
        line
        for number, line in enumerate(source.splitlines(), 1)
        if number not in skipped
        and line.strip()
        and not line.strip().startswith("#")
    ]


def _imported_paths(tree):
    """(line, dotted path inside keras_guided) of every import in `tree`,
    inside functions too; `from keras_guided.a import b` gives `a.b`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "keras_guided" and node.level == 0:
                for alias in node.names:
                    found.append((node.lineno, parts[1:] + [alias.name]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "keras_guided":
                    found.append((node.lineno, parts[1:]))
    return found


def _private_attribute_uses(tree, subpackages, own):
    """(line, "package._name") where a module names another package's
    private attribute through an imported package (`graph_lib._x`)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "keras_guided":
            for alias in node.names:
                if alias.name in subpackages and alias.name != own:
                    bound[alias.asname or alias.name] = alias.name
    return [
        (node.lineno, f"{bound[node.value.id]}.{node.attr}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in bound
        and node.attr.startswith("_")
    ]


def cross_package_private_uses(sources):
    """["path:line: package._name"] for every use by one package of
    another package's private module or name. Top-level private modules
    (`keras_guided/_copies.py`) are shared by several packages, so they
    may be imported anywhere."""
    subpackages = _subpackages()
    found = []
    for path, source in sources.items():
        parts = path.split(os.sep)
        own = parts[0] if len(parts) > 1 else None
        tree = ast.parse(source)
        for line, imported in _imported_paths(tree):
            if (
                len(imported) >= 2
                and imported[0] in subpackages
                and imported[0] != own
                and imported[1].startswith("_")
            ):
                found.append(f"{path}:{line}: {'.'.join(imported[:2])}")
        for line, name in _private_attribute_uses(tree, subpackages, own):
            found.append(f"{path}:{line}: {name}")
    return found


def test_no_module_is_over_500_lines():
    long = {
        path: len(source.splitlines())
        for path, source in _modules().items()
        if len(source.splitlines()) > MAX_MODULE_LINES
    }
    assert not long, f"split these along concept lines: {long}"


def test_package_faces_only_re_export():
    heavy = {
        path: len(_code_lines(source))
        for path, source in _modules().items()
        if os.path.basename(path) == "__init__.py"
        and os.sep in path
        and len(_code_lines(source)) > MAX_FACE_CODE_LINES
    }
    assert not heavy, (
        "a package's __init__ is a face (a docstring, then re-exports); "
        f"move the code into named modules: {heavy}"
    )


def test_no_package_uses_another_packages_private_modules():
    found = cross_package_private_uses(_modules())
    assert not found, (
        "make the name public on the owning package's face: " + str(found)
    )


def test_the_checks_see_what_they_guard_against():
    # Each check flags the case it exists for, so none passes vacuously.
    assert len(_code_lines('"""Doc."""\n\n# note\nx = 1\n\ny = 2\n')) == 2
    subpackages = _subpackages()
    assert {"graph", "export", "surgery"} <= subpackages
    sources = {
        os.path.join("demo", "_run.py"): (
            "from keras_guided.export._checks import check\n"
            "from keras_guided.export import _litert_run\n"
            "from keras_guided import graph as graph_lib\n"
            "from keras_guided import _copies\n"
            "from keras_guided.demo._report import write\n"
            "graph_lib._hidden(1)\n"
        ),
    }
    found = cross_package_private_uses(sources)
    assert [f.split(": ")[1] for f in found] == [
        "export._checks",
        "export._litert_run",
        "graph._hidden",
    ]


def callback_uses(sources):
    """`path:line: what` for each place where a part of `callbacks/`
    reaches the `GuidedPruning` callback: a part importing
    `_guided_pruning` or naming `GuidedPruning`, a parameter or name
    `callback`, or the callback passing `self` to a call (other than
    `getattr`, the callback reading its own attributes)."""
    found = []
    for path, source in sorted(sources.items()):
        if os.path.dirname(path) != "callbacks" or path.endswith("__init__.py"):
            continue
        tree = ast.parse(source)
        hook_module = os.path.basename(path) == "_guided_pruning.py"
        for node in ast.walk(tree):
            where = f"{path}:{getattr(node, 'lineno', 0)}: "
            if hook_module:
                if not isinstance(node, ast.Call):
                    continue
                arguments = list(node.args) + [k.value for k in node.keywords]
                reads_own = (
                    isinstance(node.func, ast.Name)
                    and node.func.id == "getattr"
                )
                if not reads_own and any(
                    isinstance(a, ast.Name) and a.id == "self"
                    for a in arguments
                ):
                    found.append(where + "passes self")
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [
                    f"{node.module}.{a.name}" for a in node.names
                ]
                if any("_guided_pruning" in n for n in names):
                    found.append(where + "imports _guided_pruning")
            if isinstance(node, ast.Name) and node.id in (
                "callback",
                "GuidedPruning",
            ):
                found.append(where + node.id)
            if isinstance(node, ast.arg) and node.arg == "callback":
                found.append(where + "parameter callback")
    return found


def test_callback_parts_read_the_fit_context_not_the_callback():
    found = callback_uses(_modules())
    assert not found, (
        "give the part the FitContext (keras_guided/callbacks/_context.py) "
        "or the value it needs, not the callback: " + str(found)
    )
    # The check flags the cases it exists for.
    flagged = callback_uses(
        {
            os.path.join("callbacks", "_part.py"): (
                "from keras_guided.callbacks import _guided_pruning\n"
                "def build(callback):\n"
                "    return callback.plan\n"
            ),
            os.path.join("callbacks", "_guided_pruning.py"): (
                "class C:\n"
                "    def f(self):\n"
                "        getattr(self, 'mode')\n"
                "        build(self, 1)\n"
            ),
        }
    )
    assert sorted(f.split(": ")[1] for f in flagged) == [
        "callback",
        "imports _guided_pruning",
        "parameter callback",
        "passes self",
    ]
