"""The service layer's modules import one way (no cycle, also not under TYPE_CHECKING), and
no route decides visibility itself: the static checks behind docs/architecture.md's
"The policy layer"."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import opendps

PACKAGE = Path(opendps.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every ``opendps.*`` module a file imports, anywhere in it (functions and
    ``if TYPE_CHECKING:`` blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("opendps.")}


def test_service_modules_form_no_import_cycle() -> None:
    modules = {f"opendps.service.{p.stem}": p for p in (PACKAGE / "service").glob("*.py")}
    graph = {
        name: {m for m in imported_modules(path) if m in modules and m != name}
        for name, path in modules.items()
        if not name.endswith("__init__")
    }
    # Only the container knows every service; nothing imports it back.
    assert not any("opendps.service.context" in deps for deps in graph.values())

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import cycle: {' -> '.join((*trail, name))}"
        for dep in graph.get(name, ()):
            visit(dep, (*trail, name))

    for name in graph:
        visit(name, ())


#: A route that reads the auth switch, compares owners or builds store filters decides
#: visibility on its own; service/policy.py is the one place for that.
DECIDING = re.compile(
    r"settings\.auth|\.owner\b *(!=|==)|(==|!=) *[a-z_.]*\.owner\b|is_admin\(|is_guest\("
    r"|JobFilters|\.scope\("
)


def test_no_route_decides_visibility() -> None:
    offenders = []
    for path in sorted((PACKAGE / "api").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if DECIDING.search(line) and "services.policy." not in line:
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []
