"""The layer contract of the package, read from the source with ``ast``.

    cli → apply | render → plan → stores | providers | desired → errors, schemas, formats, seals

A layer imports only layers below it; apply and render do not import each other, nor do
stores, providers and desired. ``sandbox`` imports only its own modules and the pure
providers' modules (those that do not load httpx), and only ``cli`` imports it. No module
under ``apply`` imports httpx, directly or through a module that loads it at import time.
``reconciler/__init__.py``, ``__main__.py`` and the ``ci.py`` shim are entry points.
Every import counts: at module level, inside functions (lazy) and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.values import frozen

PACKAGE = "reconciler"
ROOT = Path(__file__).resolve().parent.parent

# The first name under reconciler/ -> its layer; RANK orders the layers (higher imports
# lower, equal ranks do not import each other), listed from the bottom up.
LAYERS = {
    "errors": "base",
    "schemas": "base",
    "schema_errors": "base",
    "schema_walk": "base",
    "formats": "base",
    "seals": "base",
    "jsontext": "base",
    "values": "base",
    "problems": "base",
    "checks": "base",
    "desired": "desired",
    "stores": "stores",
    "providers": "providers",
    "plan": "plan",
    "apply": "apply",
    "render": "render",
    "cli": "cli",
    "sandbox": "sandbox",
}
RANK = {
    "base": 0,
    "desired": 1,
    "stores": 1,
    "providers": 1,
    "plan": 2,
    "apply": 3,
    "render": 3,
    "cli": 4,
}
ENTRY_POINTS = ("", ".__main__", ".ci")  # the package itself, `python -m`, the CI shim
HTTPX = "httpx"

# Known violations that other work of issue 9 removes. Each entry is one import; the test
# also fails once an entry is no longer needed, so it is deleted with the fix.
# Imports that break the contract but are accepted for now, each with who removes it.
ALLOWED_FOR_NOW: set[tuple[str, str]] = set()


@frozen
class Import:
    """One import statement's target, as the importing module sees it."""

    importer: str
    imported: str  # a module or package of ours, or an external dotted name
    where: str  # path:line
    at_import_time: bool  # False inside a function or under TYPE_CHECKING


@frozen
class Violation:
    """One import that breaks the contract."""

    importer: str
    imported: str
    where: str
    rule: str

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}: {self.rule}"


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module and package under ``root/package`` by dotted name."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """The imports of one module, each marked as run at import time or not."""

    def __init__(self, module: str, path: Path, root: Path, known: dict[str, Path]) -> None:
        self.module, self.path, self.root, self.known = module, path, root, known
        self.found: list[Import] = []
        self._deferred = 0  # > 0 inside a function body or a TYPE_CHECKING block

    def _add(self, imported: str, node: ast.stmt) -> None:
        self.found.append(
            Import(
                importer=self.module,
                imported=imported,
                where=f"{self.path.relative_to(self.root)}:{node.lineno}",
                at_import_time=self._deferred == 0,
            )
        )

    def _deferring(self, nodes: list[ast.stmt]) -> None:
        self._deferred += 1
        for child in nodes:
            self.visit(child)
        self._deferred -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        """A function body runs later: its imports are lazy."""
        self._deferring(node.body)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        """As a function."""
        self._deferring(node.body)

    def visit_If(self, node: ast.If) -> None:
        """``if TYPE_CHECKING:`` imports only for the type checker."""
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._deferring(node.body)
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        """``import a.b``."""
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        """``from a import b``: b when it is a module of ours, else a; relative resolved."""
        base = node.module or ""
        if node.level:
            here = self.module.split(".")
            if self.path.name != "__init__.py":
                here = here[:-1]
            anchor = here[: len(here) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.known else base, node)


def collect(root: Path, package: str = PACKAGE) -> list[Import]:
    """Every import of every module under ``root/package``."""
    known = _modules(root, package)
    found: list[Import] = []
    for module, path in known.items():
        collector = _Collector(module, path, root, known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return list(dict.fromkeys(found))  # `from m import a, b` is one import of m


def _parents(module: str) -> Iterator[str]:
    """Packages whose ``__init__`` runs before ``module``: a.b.c -> a, a.b."""
    parts = module.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def _httpx_chains(imports: list[Import], known: set[str]) -> dict[str, tuple[str, ...]]:
    """For each module of ours that loads httpx at import time: the chain that does."""
    eager: dict[str, list[str]] = {module: [] for module in known}
    for item in imports:
        if item.at_import_time:
            eager[item.importer].append(item.imported)
    chains: dict[str, tuple[str, ...]] = {}
    visiting: set[str] = set()

    def chain(module: str) -> tuple[str, ...] | None:
        if module == HTTPX or module.startswith(HTTPX + "."):
            return (module,)
        if module not in known or module in visiting:
            return None
        if module in chains:
            return chains[module]
        visiting.add(module)
        for step in (*_parents(module), *eager[module]):
            rest = chain(step)
            if rest is not None:
                chains[module] = (module, *rest)
                break
        visiting.discard(module)
        return chains.get(module)

    for module in known:
        chain(module)
    return chains


def _layer(module: str, package: str) -> str | None:
    if module in {package + suffix for suffix in ENTRY_POINTS}:
        return "entry"
    return LAYERS.get(module.split(".")[1])


def _layer_rule(importer: str, imported: str, package: str) -> str | None:
    """Why importing ``imported`` from ``importer`` breaks the layer order, or None."""
    source, target = _layer(importer, package), _layer(imported, package)
    if source is None or target is None:
        return None  # reported once per module, not per import
    if imported == package or source == "entry":
        return None  # the package root holds only __version__; entry points may use anything
    if target == "entry":
        return "an entry point is run, never imported"
    if source == target:
        return None
    if source == "sandbox":
        return None if target == "providers" else "sandbox imports only itself and providers"
    if target == "sandbox":
        return None if source == "cli" else "only cli imports the sandbox"
    if RANK[target] < RANK[source]:
        return None
    below = [layer for layer, rank in RANK.items() if rank < RANK[source]]
    return f"{source} imports only layers below it ({', '.join(below) or 'none'})"


def check(root: Path, package: str = PACKAGE) -> list[Violation]:
    """Every import under ``root/package`` that breaks the contract."""
    imports = collect(root, package)
    modules = _modules(root, package)
    known = set(modules)
    httpx_via = _httpx_chains(imports, known)
    found = [
        Violation(
            importer=module,
            imported="(nothing)",
            where=str(path.relative_to(root)),
            rule=f"{module} has no layer: add it to LAYERS in tests/test_layers.py",
        )
        for module, path in modules.items()
        if _layer(module, package) is None
    ]
    for item in imports:
        ours = item.imported == package or item.imported.startswith(package + ".")
        rule = _layer_rule(item.importer, item.imported, package) if ours else None
        layer = _layer(item.importer, package)
        chain = httpx_via.get(item.imported) or (
            (item.imported,) if item.imported.split(".")[0] == HTTPX else None
        )
        if rule is None and chain is not None and layer in ("apply", "sandbox"):
            same_layer = ours and _layer(item.imported, package) == layer
            if not same_layer:  # an own module is judged at its own imports
                rule = f"{layer} never loads httpx (here: {' -> '.join(chain)})"
        if rule is not None:
            found.append(
                Violation(
                    importer=item.importer, imported=item.imported, where=item.where, rule=rule
                )
            )
    return found


def test_the_package_keeps_its_layers() -> None:
    """Every import under reconciler/ follows the contract (bar the allowlisted ones)."""
    found = check(ROOT)
    broken = [str(v) for v in found if (v.importer, v.imported) not in ALLOWED_FOR_NOW]
    assert not broken, "layer contract broken:\n" + "\n".join(broken)
    still = {(v.importer, v.imported) for v in found}
    stale = sorted(ALLOWED_FOR_NOW - still)
    assert not stale, f"fixed, so delete from ALLOWED_FOR_NOW in tests/test_layers.py: {stale}"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake ``reconciler`` package under ``tmp_path`` with the given module sources."""
    for name, source in {"__init__.py": "", **files}.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("", encoding="utf-8")
        path.write_text(source, encoding="utf-8")
    return tmp_path


CLEAN = {
    "errors.py": "",
    "plan/model.py": "from reconciler import errors\nfrom reconciler.stores import model\n",
    "stores/model.py": "from reconciler.errors import *\n",
    "providers/replies.py": "from reconciler import errors\n",
    "providers/client.py": "import httpx\nfrom reconciler.providers import replies\n",
    "providers/lazy.py": "def make():\n    import httpx\n    return httpx\n",
    "apply/engine.py": (
        "from reconciler.providers import replies, lazy\nfrom reconciler.plan import model\n"
    ),
    "sandbox/app.py": "from reconciler.providers import replies\nfrom . import wire\n",
    "sandbox/wire.py": "",
    "cli/main.py": "from reconciler.apply import engine\nfrom reconciler.sandbox import app\n",
    "__main__.py": "from reconciler.cli.main import *\n",
}


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        pytest.param(
            "plan/up.py",
            "from reconciler.apply import engine\n",
            "reconciler/plan/up.py:1: reconciler.plan.up imports reconciler.apply.engine: "
            "plan imports only layers below it (base, desired, stores, providers)",
            id="upward",
        ),
        pytest.param(
            "stores/lazy.py",
            "def f():\n    from reconciler.providers import replies\n",
            "reconciler.stores.lazy imports reconciler.providers.replies: stores imports only",
            id="lazy-sibling",
        ),
        pytest.param(
            "render/md.py",
            "import typing\nif typing.TYPE_CHECKING:\n    from reconciler.apply import engine\n",
            "reconciler.render.md imports reconciler.apply.engine: render imports only",
            id="type-checking-sibling",
        ),
        pytest.param(
            "plan/rel.py",
            "from ..apply import engine\n",
            "reconciler.plan.rel imports reconciler.apply.engine",
            id="relative",
        ),
        pytest.param(
            "apply/direct.py",
            "def f():\n    import httpx.auth\n",
            "reconciler.apply.direct imports httpx.auth: "
            "apply never loads httpx (here: httpx.auth)",
            id="apply-httpx",
        ),
        pytest.param(
            "apply/via.py",
            "def f():\n    from reconciler.providers import client\n",
            "reconciler.apply.via imports reconciler.providers.client: apply never loads httpx "
            "(here: reconciler.providers.client -> httpx)",
            id="apply-httpx-via-provider",
        ),
        pytest.param(
            "sandbox/bad.py",
            "from reconciler.providers.client import X\n",
            "reconciler.sandbox.bad imports reconciler.providers.client: sandbox never loads httpx",
            id="sandbox-impure-provider",
        ),
        pytest.param(
            "sandbox/up.py",
            "from reconciler import errors\n",
            "reconciler.sandbox.up imports reconciler.errors: sandbox imports only itself",
            id="sandbox-outside",
        ),
        pytest.param(
            "apply/sb.py",
            "from reconciler.sandbox import app\n",
            "reconciler.apply.sb imports reconciler.sandbox.app: only cli imports the sandbox",
            id="sandbox-importer",
        ),
        pytest.param(
            "cli/run.py",
            "import reconciler.__main__\n",
            "imports reconciler.__main__: an entry point is run, never imported",
            id="entry-point",
        ),
        pytest.param(
            "extras.py",
            "",
            "reconciler.extras has no layer",
            id="unknown-layer",
        ),
    ],
)
def test_the_checker_catches_a_violation(
    tmp_path: Path, name: str, source: str, expected: str
) -> None:
    """One bad module added to a clean fake package is named, with its import and rule."""
    assert check(_package(tmp_path, CLEAN)) == []
    found = [str(v) for v in check(_package(tmp_path, {name: source}))]
    assert len(found) == 1, found
    assert expected in found[0]
