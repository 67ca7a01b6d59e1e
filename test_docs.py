"""The docs cannot go stale (issue 29): what they quote from the code is generated from it
(scripts/gen_config_docs.py) or held to it here.

    * every generated block (the configuration table, the runbook's metric table, design.md's
      class sizes) is what the generator writes from today's code;
    * every default a doc quotes as `setting` (value) is that setting's default;
    * every metric a doc, the alert rules or the dashboard names is one the bots export;
    * design.md's owner table names every owner, and says which get the Engine context.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import re
from typing import Any

import pytest

import spike_bot as sb
import turbine_sim as ts

ROOT = pathlib.Path(__file__).parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def gen() -> Any:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_config_docs.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.parametrize("block", [b[:2] for b in gen().BLOCKS], ids=lambda b: b[1])
def test_generated_blocks_are_current(block: tuple[str, str]) -> None:
    g = gen()
    path, name = block
    doc, i, j = g.block(path, name)
    fn = next(b[2] for b in g.BLOCKS if b[:2] == block)
    assert doc[i:j].strip() == fn().strip(), f"{path} {name}: run scripts/gen_config_docs.py"


UNITS = {"s": 1, "h": 3600, "days": 86400, "day": 86400, "min": 60, "%": 0.01}


def quoted_value(text: str) -> float | None:
    """The number a doc gives in `(…)` after a setting: `30 s`, `5%`, `1 h`, `7 days`,
    `1,000 USDC`, `0: no cap`, `2`; None when the parenthesis quotes no number first."""
    m = re.match(r"\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*(%|s\b|h\b|days?\b|min\b)?", text)
    if not m:
        return None
    v = float(m.group(1).replace(",", ""))
    return v * UNITS.get(m.group(2) or "", 1)


def defaults() -> dict[str, Any]:
    out = {f.name: f.default for f in dataclasses.fields(ts.SimConfig)}
    out.update({f.name: f.default for f in dataclasses.fields(sb.Config)})  # the bot's win
    return out


def test_every_default_the_docs_quote_is_the_code_s() -> None:
    known = defaults()
    wrong, seen = [], 0
    for doc in DOCS:
        for m in re.finditer(r"`([a-z_0-9]+)` \(([^)]*)\)", doc.read_text()):
            name, inner = m.group(1), m.group(2)
            if name not in known or not isinstance(known[name], int | float):
                continue
            v = quoted_value(inner)
            if v is None:
                continue
            seen += 1
            if abs(v - float(known[name])) > 1e-9 * max(1.0, abs(v)):
                wrong.append(f"{doc.name}: `{name}` ({inner}) but the default is {known[name]}")
    assert not wrong, wrong
    assert seen >= 25  # the check reads what it should


def test_the_docs_name_no_default_spread_but_the_code_s() -> None:
    """Prose like "at the default 0.40 spread" (the runbook said so of 0.04 for a week)."""
    for doc in DOCS:
        for m in re.finditer(r"default ([0-9.]+) spread", doc.read_text()):
            assert float(m.group(1)) == sb.Config().base_spread, (doc.name, m.group(0))


# names that look like metrics but are files, modules, state or bench strategies
NOT_METRICS = {
    "spike_bot", "spike_tools", "spike_paper", "spike_wire", "spike_state", "spike_key",
    "spike_official",  # the official bot's Prometheus job (monitoring/prometheus.yml)
}  # fmt: skip


def exported() -> set[str]:
    """Every series name a scrape of a bot shows (the registry, one market labelled)."""
    m = sb.Metrics("spike_bot")
    m.market(sb.MarketKey("BTC", 15))
    fams = list(m.registry.collect())
    return (
        {x.name for fam in fams for x in fam.samples}
        | {fam.name for fam in fams}
        | {fam.name + "_total" for fam in fams if fam.type == "counter"}  # labelled, unused yet
        | {fam.name + x for fam in fams if fam.type == "histogram" for x in ("_bucket", "_sum")}
    )


def strategy_names() -> set[str]:
    src = (ROOT / "bench" / "bench_quality.py").read_text()
    return set(re.findall(r'^\s+"(spike_\w+)": \(', src, re.M))


def test_every_metric_the_docs_name_exists() -> None:
    names = exported()
    files = [*DOCS, ROOT / "alerts.yml", *sorted((ROOT / "monitoring").glob("*"))]
    skip = NOT_METRICS | strategy_names()
    missing = []
    for f in files:
        if f.is_dir():
            continue
        for tok in set(re.findall(r"\bspike_[a-z_0-9]+", f.read_text())):
            if tok not in skip and tok not in names:
                missing.append(f"{f.name}: {tok}")
    assert not missing, missing


def test_design_md_names_every_owner_and_which_get_the_engine_context() -> None:
    text = (ROOT / "docs" / "design.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (Engine|-) \|", text, re.M))
    owners = {n for n, c in vars(sb).items() if isinstance(c, type) and issubclass(c, sb.Owner)}
    owners.discard("Owner")
    assert owners <= set(rows), f"owners missing from design.md: {owners - set(rows)}"
    for name, mark in rows.items():
        cls = getattr(sb, name)
        assert (mark == "Engine") == issubclass(cls, sb.Owner), (name, mark)


def test_readme_points_at_the_pages_that_hold_the_tables() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "configuration table below" not in readme
    line = next(x for x in readme.splitlines() if "gen_config_docs.py" in x)
    assert "docs/configuration.md" in line
