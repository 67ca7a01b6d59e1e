"""Webhook alerts against a local HTTP server: what is sent, when, how often, never a secret, and
never in the tick's way."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import spike_bot as sb
import turbine_sim as ts
from conftest import BotHarness, wait_until
from test_spike_bot import bot_quotes, take


class Hook:
    """A local incoming webhook: records JSON bodies; `delay` makes it slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                time.sleep(delay)
                hook.bodies.append(body)
                hook.paths.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/not-a-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [b["text"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def ev(event: str, **f: Any) -> dict[str, Any]:
    return {"event": event, "bot": "spike_bot", **f}


def test_each_alert_kind_once_then_rate_limited(hook: Hook) -> None:
    clock = FakeClock()
    cfg = sb.Config(alert_fail_closed_s=60, alert_repeat_s=300, alert_errors=5)
    a = sb.Alerter(hook.url, cfg, clock)
    try:
        a.on_event(ev("kill_switch", scope="market", slot="BTC:15", pnl=-26.1))
        a.on_event(ev("kill_switch", scope="market", slot="BTC:15", pnl=-26.5))  # repeat
        a.on_event(ev("fill_reversed", slot="BTC:15", side="BUY", size=5, price=0.4, reason="x"))
        a.on_event(ev("cancel_unconfirmed", slot="BTC:15", order_hash="0xab" * 16, error="500"))
        a.on_event(ev("risk_limit", slot="BTC:15", side="BUY", limit="net_exposure", state="on"))
        a.on_event(ev("risk_limit", slot="BTC:15", side="BUY", limit="net_exposure", state="off"))
        for _ in range(5):
            a.on_event(ev("error", kind="network", reason="ReadTimeout"))
        a.on_event(ev("fail_closed", slot="BTC:15", reason="stale_feed", t=clock.t))
        wait_until(lambda: len(hook.bodies) == 5, 5)
        clock.t += 30
        time.sleep(1.2)
        assert not any("not quoting" in t for t in hook.texts())  # 30 s: not yet
        clock.t += 31
        wait_until(lambda: any("not quoting for 61 s (stale_feed)" in t for t in hook.texts()), 5)
        a.on_event(ev("resumed", slot="BTC:15"))
        a.on_event(ev("shutdown", orders_left_ok=True, realized=1.5))
    finally:
        a.close()
    texts = hook.texts()
    assert sum("KILL SWITCH" in t for t in texts) == 1
    assert any("fill reversed" in t for t in texts)
    assert any("cancel NOT confirmed" in t for t in texts)
    assert sum("held back by net_exposure" in t for t in texts) == 1
    assert any("5 errors in 5 min" in t for t in texts)
    assert texts[-1].startswith("spike_bot: STOPPED") and "no order left" in texts[-1]
    assert all(b["content"] == b["text"] for b in hook.bodies)  # Slack and Discord shapes
    assert "not-a-token" not in repr(a)


def test_a_slow_webhook_never_delays_the_caller() -> None:
    slow = Hook(delay=2.0)
    a = sb.Alerter(slow.url, sb.Config(alert_repeat_s=0), FakeClock())
    try:
        t0 = time.perf_counter()
        for i in range(200):
            a.on_event(ev("kill_switch", scope="market", slot=f"S{i}", pnl=-30))
        assert time.perf_counter() - t0 < 0.5  # filing only: the post runs on its own thread
    finally:
        a.q.queue.clear()
        a.close(timeout=3)
        slow.close()


def test_webhook_setting_is_a_secret_checked_at_start() -> None:
    with pytest.raises(sb.ConfigError) as e:
        sb.load_config({}, {"SPIKE_ALERT_WEBHOOK": "hooks.example/secret-token"})
    assert "secret-token" not in str(e.value) and "http(s) URL" in str(e.value)
    cfg, sec = sb.load_config({}, {"SPIKE_ALERT_WEBHOOK": "https://hooks.example/T/B/tok"})
    assert "tok" not in repr(sec) and "tok" not in json.dumps(sb.dataclasses.asdict(cfg))


def test_bot_kill_switch_and_stop_reach_the_webhook(
    qsim: ts.Sim, tmp_path: pathlib.Path, hook: Hook
) -> None:
    """A bot with alerts on: the day's loss limit trips and the bot stops; both reach the
    webhook, and no body carries the wallet key, the API secret or the webhook's token."""
    h = BotHarness(qsim, tmp_path, max_loss_per_day=0.5, alert_fail_closed_s=4)
    h.bot_kw["alerter"] = sb.Alerter(hook.url, h.cfg, qsim.clock.now)
    h.start()
    try:
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        price = qsim.state()["prices"]["BTC"]
        qsim.call(lambda: qsim.app.ex.prices.__setitem__("BTC", price * 0.98))
        h.tick_until(lambda: h.events("kill_switch"))
        h.tick(4)
        wait_until(lambda: any("KILL SWITCH (day)" in t for t in hook.texts()), 5)
        wait_until(lambda: any("not quoting for" in t for t in hook.texts()), 5)
    finally:
        h.stop()
    wait_until(lambda: any("STOPPED" in t for t in hook.texts()), 5)
    blob = json.dumps(hook.bodies)
    for secret in (h.key[2:], h.secret, "not-a-token"):
        assert secret not in blob


def test_prometheus_rules_name_metrics_the_bot_exports() -> None:
    """Every spike_* series alerts.yml uses exists in the bot's registry."""
    import re

    from prometheus_client import generate_latest

    m = sb.Metrics("spike_bot")
    m.market(sb.MarketKey("BTC", 15))
    m.error("network")
    exported = generate_latest(m.registry).decode()
    rules = (pathlib.Path(__file__).parent / "alerts.yml").read_text()
    exprs = " ".join(re.findall(r"expr: (.*)", rules))
    used = set(re.findall(r"\b(spike_[a-z_]+)\b", exprs))
    assert used
    for name in used:
        assert re.search(rf"^{name}\b", exported, re.M), name
