"""Monitoring the 24-hour run (issue 30): the alert rules pass promtool's checks and its unit
tests (monitoring/alerts_test.yml), a real Prometheus with the shipped scrape config sees an
outage of two running bots fire the not-quoting and stale-feed alerts and clear them, and
every metric and label the rules and the Grafana dashboard name is one a running bot exports.

Prometheus and promtool come from the OS (Debian: `apt-get install prometheus`); where they
are missing these tests skip with that line (.ci/run installs them).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import time
from typing import Any

import pytest
import requests

import turbine_sim as ts
from conftest import BotHarness, free_port, quiet_sim_cfg, wait_until

ROOT = pathlib.Path(__file__).parent
INSTALL = "Prometheus missing: apt-get install prometheus (Debian; it brings promtool)"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(INSTALL)
    return path


def test_alert_rules_check_and_their_unit_tests_pass() -> None:
    promtool = need("promtool")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "monitoring/alerts_test.yml"]):
        p = subprocess.run(
            [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(
        [promtool, "check", "config", "monitoring/prometheus.yml"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr


def test_config_scrapes_the_ports_compare_live_gives_the_bots() -> None:
    cfg = (ROOT / "monitoring" / "prometheus.yml").read_text()
    src = (ROOT / "scripts" / "compare_live.py").read_text()
    for flag in ("--spike-port", "--official-port"):
        port = re.search(rf'"{flag}", type=int, default=(\d+)', src).group(1)  # type: ignore[union-attr]
        assert f"127.0.0.1:{port}" in cfg, (flag, port)


def alerts(url: str) -> dict[tuple[str, str], str]:
    """(alert name, bot) -> state, from Prometheus's own API."""
    r = requests.get(f"{url}/api/v1/alerts", timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"].get("bot", "")): a["state"]
            for a in r["data"]["alerts"]}  # fmt: skip


def test_a_real_prometheus_fires_and_clears_the_outage_alerts(tmp_path: pathlib.Path) -> None:
    """Two bots (spike_bot, official_spike_bot) quoting on the simulator, scraped by
    Prometheus with monitoring/prometheus.yml (its targets pointed at the bots' ports, its
    intervals at 1 s, the rules' `for` at 2 s: the unit tests hold the real durations): the
    book goes stale (stream frozen, REST's book failing) and both bots fail closed, and
    Prometheus moves SpikeBotNotQuoting and SpikeBotFeedStale to firing for both; the
    outage ends, they quote again, and the alerts clear."""
    prometheus = need("prometheus")
    ports = [free_port(), free_port()]
    web = free_port()
    rules = re.sub(r"for: \d+m", "for: 2s", (ROOT / "alerts.yml").read_text())
    (tmp_path / "alerts.yml").write_text(rules)
    cfg = (ROOT / "monitoring" / "prometheus.yml").read_text()
    cfg = cfg.replace("127.0.0.1:9108", f"127.0.0.1:{ports[0]}")
    cfg = cfg.replace("127.0.0.1:9109", f"127.0.0.1:{ports[1]}")
    cfg = re.sub(r"(scrape|evaluation)_interval: 15s", r"\1_interval: 1s", cfg)
    cfg = cfg.replace("../alerts.yml", str(tmp_path / "alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(cfg)
    sim = ts.start_sim(quiet_sim_cfg())
    bots = [
        BotHarness(sim, tmp_path / "a", metrics_port=ports[0]),
        BotHarness(sim, tmp_path / "b", exchange_kind="official", metrics_port=ports[1],
                   bot_name="official_spike_bot"),
    ]  # fmt: skip
    proc = None
    try:
        for h in bots:
            h.log_path.parent.mkdir(parents=True, exist_ok=True)
            h.start()
        proc = subprocess.Popen(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{web}"

        def ready() -> bool:
            try:
                return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 30)

        def tick_until(pred: Any, seconds: float) -> Any:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for h in bots:
                    h.tick()
                got = pred()
                if got:
                    return got
                time.sleep(0.25)
            raise AssertionError(f"not within {seconds} s: {alerts(url)}")

        names = ("spike_bot", "official_spike_bot")
        tick_until(lambda: all(
            requests.get(f"{url}/api/v1/query", params={"query": f'spike_quoting{{bot="{b}"}}'},
                         timeout=5).json()["data"]["result"] for b in names), 20)  # fmt: skip
        assert alerts(url) == {}  # quoting, fresh: a quiet board
        mid = bots[0].market_id()
        sim.fault("ws_freeze")
        sim.fault("http_500", path="/api/v1/orderbook")
        want = {(a, b) for a in ("SpikeBotNotQuoting", "SpikeBotFeedStale") for b in names}

        def firing() -> bool:
            got = alerts(url)
            return all(got.get(k) == "firing" for k in want)

        tick_until(firing, 45)
        sim.clear_fault("http_500")
        sim.clear_fault("ws_freeze")
        tick_until(lambda: all(len(h.open_orders(mid)) >= 2 for h in bots[:1]), 20)
        tick_until(lambda: not set(alerts(url)) & want, 45)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for h in bots:
            h.stop()
        sim.stop()


def exported_series(h: BotHarness) -> tuple[set[str], set[str]]:
    """(metric names, label names) on a running bot's /metrics."""
    port = h.metrics_port
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    names, labels = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, typ = line.split()[2:4]
            names.add(name)
            if typ == "counter":
                names.add(name + "_total")
            if typ == "histogram":
                names |= {name + "_bucket", name + "_count", name + "_sum"}
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?", line)
            if m:
                names.add(m.group(1))
                labels |= set(re.findall(r'(\w+)="', m.group(2) or ""))
    return names, labels


PROM_WORDS = {
    "sum", "max", "min", "avg", "by", "rate", "increase", "histogram_quantile", "without",
    "up", "le", "job", "instance", "bot", "market", "avg_over_time", "clamp_min", "count",
    "on", "ignoring", "group_left", "time", "vector", "offset", "bool", "and", "or", "unless",
    "delta", "deriv", "abs", "topk", "label_replace", "sum_over_time", "max_over_time",
}  # fmt: skip


def exprs() -> list[str]:
    out = re.findall(r"expr: (.+)", (ROOT / "alerts.yml").read_text())
    dash = json.loads((ROOT / "monitoring" / "grafana-dashboard.json").read_text())
    for panel in dash["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    return out


def test_every_metric_and_label_the_rules_and_dashboard_use_is_exported(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """A renamed metric or label breaks this test, not the dashboard on the day."""
    h = BotHarness(qsim, tmp_path, metrics_port=free_port()).start()
    try:
        # a short outage, so that the series labelled by what happened have samples too
        # (errors by kind, fail-closed time by reason)
        qsim.fault("ws_freeze")
        qsim.fault("http_500", path="/api/v1/orderbook")
        h.tick(20)
        qsim.clear_fault("http_500")
        qsim.clear_fault("ws_freeze")
        h.tick(3)
        names, labels = exported_series(h)
        labels |= {"job", "instance", "le"}  # Prometheus's own and the histogram's
        missing = []
        for raw in exprs():
            e = re.sub(r'"[^"]*"', '""', raw)  # label values and strings
            for tok in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
                if tok in PROM_WORDS or tok in ("s", "m", "h", "d"):
                    continue
                if re.search(rf"\b{tok}\s*(=~|!=|=)", e) or re.search(rf"by \([^)]*\b{tok}\b", e):
                    if tok not in labels:
                        missing.append(f"label {tok}")
                elif tok.startswith(("spike_", "process_")) and tok not in names:
                    missing.append(f"metric {tok}")
        assert not missing, sorted(set(missing))
        assert len(exprs()) >= 10
    finally:
        h.stop()
