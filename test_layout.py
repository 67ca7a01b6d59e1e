"""The layout an operator relies on (issue 22): spike_bot.py's classes stay small enough to
read, and the bot module stands alone (the sibling tools import it, never the reverse at
import time)."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).parent
MOST_LINES = 500  # bottle.py's largest class is a tenth of its file; ours stays under this
SIBLINGS = {"spike_tools", "spike_paper", "spike_wire", "official_spike_bot", "turbine_sim"}


def class_sizes(path: pathlib.Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    return {
        n.name: n.end_lineno - n.lineno + 1  # type: ignore[operator]
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef)
    }


def module_imports(path: pathlib.Path) -> set[str]:
    """Modules imported at module level (not inside a function: those load on demand)."""
    out: set[str] = set()
    for n in ast.parse(path.read_text()).body:
        if isinstance(n, ast.Import):
            out |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.add(n.module.split(".")[0])
    return out


def test_no_class_in_the_bot_is_over_500_lines() -> None:
    sizes = class_sizes(ROOT / "spike_bot.py")
    big = {k: v for k, v in sizes.items() if v > MOST_LINES}
    assert not big, big
    assert sizes["Bot"] < MOST_LINES  # the loop and the quote step; the owners do the rest


def test_no_class_in_the_simulator_is_over_500_lines() -> None:
    """turbine_sim's Exchange and SimApp in parts that each own one thing (issue 29)."""
    sizes = class_sizes(ROOT / "turbine_sim.py")
    big = {k: v for k, v in sizes.items() if v > MOST_LINES}
    assert not big, big


def test_the_bot_module_imports_no_sibling_and_no_sibling_imports_back_in_a_circle() -> None:
    assert not module_imports(ROOT / "spike_bot.py") & SIBLINGS
    for name in ("spike_tools", "spike_paper", "official_spike_bot"):
        mods = module_imports(ROOT / f"{name}.py")
        assert "spike_bot" in mods and not mods & SIBLINGS, (name, mods & SIBLINGS)
