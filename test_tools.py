"""The comparison report over JSON logs: known totals, corrupt lines, charts."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import pytest

import spike_bot as sb
import spike_tools as st


def ev(t: float, event: str, level: str = "INFO", bot: str = "spike_bot", **kw: Any) -> str:
    return json.dumps(
        {"ts": "2026-01-01T00:00:00.000Z", "t": t, "level": level, "bot": bot, "event": event, **kw}
    )


def hand_made_log(path: pathlib.Path, bot: str = "spike_bot") -> None:
    lines = [
        ev(0, "start", bot=bot),
        ev(1, "order_placed", bot=bot, size=5.0, price=0.3, side="BUY", order_hash="a"),
        ev(1, "order_placed", bot=bot, size=5.0, price=0.7, side="SELL", order_hash="b"),
        '{"ts": "2026-01-01T00:00:01Z", "event": "fill", "trunc',  # truncated line
        "not json at all",
        ev(100, "fill", bot=bot, size=2.0, price=0.3, position=2.0, realized=0.0, fee=0.01),
        ev(200, "fill", bot=bot, size=3.0, price=0.7, position=-1.0, realized=0.8, fee=0.02),
        ev(300, "fail_closed", "WARNING", bot=bot, reason="stale_feed"),
        ev(330, "resumed", bot=bot, after="stale_feed", closed_s=30.0),
        ev(400, "order_cancelled", bot=bot, order_hash="a", reason="requote"),
        ev(450, "stream_disconnected", "WARNING", bot=bot),
        ev(
            900,
            "rollover",
            bot=bot,
            old_market="0xm1",
            old_end=898,
            new_market="0xm2",
            seconds=0.02,
        ),
        ev(930, "error", "WARNING", bot=bot, kind="rate_limited", job="positions"),
        ev(940, "error", "WARNING", bot=bot, kind="rate_limited", job="positions"),
        ev(950, "error", "WARNING", bot=bot, kind="network", job="quote"),
        ev(958, "claim", bot=bot, market="0xm1", amount=2.0, tx="0x1"),
        ev(1200, "shutdown", bot=bot, realized=0.8, unrealized=-0.1, requests=40),
    ]
    path.write_text("\n".join(lines) + "\n")


def test_summary_known_totals_and_corrupt_lines(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "a.log"
    hand_made_log(p)
    events, bad = st.read_events(str(p))
    s = st.summarize(events, bad)
    assert bad == 2 and s["events"] == 15
    assert s["run_minutes"] == 20.0 and s["requests_per_min"] == 2.0
    assert s["orders_placed"] == 2 and s["orders_cancelled"] == 1
    assert s["fills"] == 2 and s["fill_rate_size"] == 0.5 and s["fill_rate_count"] == 1.0
    assert s["markets"] == 2 and s["fills_per_market"] == 1.0
    assert s["realized_pnl"] == 0.8 and s["unrealized_pnl"] == -0.1
    assert s["fees"] == pytest.approx(0.03) and s["max_inventory"] == 2.0
    assert s["errors"] == 3 and s["errors_by_kind"] == {"rate_limited": 2, "network": 1}
    assert s["fail_closed"] == 1 and s["fail_closed_s"] == 30.0
    assert s["uptime_quoting"] == pytest.approx(1 - 30 / 1200, abs=1e-4)
    assert s["reconnects"] == 1
    assert s["rollover_latency_s"] == 2.0 and s["claim_latency_s"] == 60.0
    assert s["claims"] == 1 and s["claimed_usdc"] == 2.0


def test_report_side_by_side_and_cli(tmp_path: pathlib.Path, capsys: Any) -> None:
    a, b = tmp_path / "spike.log", tmp_path / "official.log"
    hand_made_log(a)
    hand_made_log(b, bot="official_spike_bot")
    with b.open("a") as fh:
        fh.write(
            ev(1300, "fail_closed", "WARNING", bot="official_spike_bot", reason="stale_feed") + "\n"
        )
        fh.write(ev(1400, "order_placed", bot="official_spike_bot", size=1.0) + "\n")
    assert sb.main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "spike.log" in out and "official.log" in out and "official_spike_bot" in out
    row = next(line for line in out.splitlines() if line.startswith("fail_closed_s"))
    assert row.split()[1:] == ["30.0", "130.0"]  # the open period counts to the end
    assert sb.main(["report", str(tmp_path / "missing.log")]) == 2
    assert sb.main(["report", "--json", str(a)]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["fills"] == 2


def test_report_plots_are_written(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    p = tmp_path / "a.log"
    hand_made_log(p)
    runs = st.report([str(p)], str(tmp_path / "charts"), out=open(tmp_path / "o.txt", "w"))
    assert runs[0]["fills"] == 2
    for name in ("pnl.png", "inventory.png", "fills_per_hour.png", "errors_per_hour.png"):
        f = tmp_path / "charts" / name
        assert f.exists() and f.stat().st_size > 1000
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("markets", ["BTC:15", "BTC:15,ETH:15"])
def test_replay_of_a_recording_gives_the_live_fills(tmp_path: pathlib.Path, markets: str) -> None:
    """Record a live run on the simulator where takers hit the bot; replaying the recording
    with the same settings runs the same engine and gets the same fills (with two markets
    recorded, both are replayed)."""
    import turbine_sim as ts
    from harness import BotHarness, quiet_sim_cfg

    # a flat price: the quotes depend on the book alone, not on when a step ran
    sim = ts.start_sim(quiet_sim_cfg(annual_vol=1e-9, assets=("BTC", "ETH")))
    rec = tmp_path / "rec.jsonl"
    h = BotHarness(sim, tmp_path, record=rec, markets=markets).start()
    try:
        for side in (ts.SELL, ts.BUY):  # hit the bid, then lift the ask
            oo = h.open_orders(h.market_id())
            o = next(x for x in oo if x["side"] == (ts.BUY if side == ts.SELL else ts.SELL))
            # a limit through the whole book (ours is the only order in it): it fills at our
            # price even if the bot requoted between this read and the take (a loaded machine)
            limit = 10_000 if side == ts.SELL else 990_000

            def go(o: dict[str, Any] = o, side: int = side, limit: int = limit) -> None:
                ex = sim.app.ex
                ex.ledger.ensure("0x" + "7a" * 20, 10**15)
                ex.ledger.allowance["0x" + "7a" * 20] = ts.MAX_UINT
                ex.place_internal(
                    "0x" + "7a" * 20, o["marketId"], side, ts.YES, limit, o["size"], True
                )
                sim.app.flush()

            sim.call(go)
            n = len(h.events("fill"))
            h.tick_until(lambda n=n: len(h.events("fill")) > n)
            h.tick(3)
        h.tick(10)
    finally:
        h.stop()
        sim.stop()
    live = [(e["side"], e["price"], e["size"]) for e in h.events("fill")]
    assert len(live) == 2
    recs = st.read_recording(str(rec))
    assert {r["k"] for r in recs} >= {"book", "trade", "price", "market"}
    cfg = dataclasses.replace(
        h.cfg, state_file=str(tmp_path / "replay_state.json"), bot_name="replay"
    )
    out = tmp_path / "replay.log"
    s = st.replay_run(recs, cfg, str(out))
    replayed = [
        (e["side"], e["price"], e["size"])
        for e in st.read_events(str(out))[0]
        if e["event"] == "fill"
    ]
    assert replayed == live, (replayed, live)  # the same fills: side, price, size
    assert s["fills"] == 2 and s["errors"] == 0
    assert st.recording_markets(recs) == markets.split(",")
    assert set(s["per_market"]) == set(markets.split(","))
    assert s["per_market"]["BTC:15"]["fills"] == 2


def test_replay_cli_grid_and_bad_input(tmp_path: pathlib.Path, capsys: Any) -> None:
    rec = tmp_path / "r.jsonl"
    m = {
        "market_id": "0x" + "ab" * 32,
        "contract": "0x" + "cd" * 20,
        "asset": "BTC",
        "strike": 100.0,
        "start": 0,
        "end": 900,
        "resolved": False,
        "settlement": "",
    }
    lines = [{"r": 0.0, "k": "market", "d": m}, {"r": 0.0, "k": "price", "d": 100.0}]
    for i in range(1, 120):
        t = i * 5.0
        lines.append({"r": t, "k": "price", "d": 100.0 + (i % 7) * 0.01})
        lines.append(
            {
                "r": t,
                "k": "book",
                "d": {"m": m["market_id"], "b": [[400000, 10**7]], "a": [[600000, 10**7]]},
            }
        )
        if i % 20 == 0:
            lines.append(
                {
                    "r": t + 1,
                    "k": "trade",
                    "d": {"marketId": m["market_id"], "price": 100000, "size": 10**8},
                }
            )
    rec.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    assert sb.main(["replay", str(rec), "--grid", "base_spread=0.2,0.6", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["bot"] for r in runs] == ["replay[base_spread=0.2]", "replay[base_spread=0.6]"]
    assert runs[0]["fills"] > 0  # the tighter bid is reached by the prints
    assert runs[0]["fills"] >= runs[1]["fills"]
    assert sb.main(["replay", str(rec), "--set", "nonsense=1"]) == 2
    assert sb.main(["replay", str(rec), "--set", "base_spread=5"]) == 2
    assert sb.main(["replay", str(tmp_path / "none.jsonl")]) == 2


def test_replay_carries_the_streamed_prices(tmp_path: pathlib.Path) -> None:
    """price_source=pyth: every Hermes update goes into the recording with its publish time;
    replay feeds them to the model as the stream did (source pyth, the same fair values),
    and never connects anywhere."""
    import turbine_sim as ts
    from harness import BotHarness, quiet_sim_cfg

    sim = ts.start_sim(quiet_sim_cfg(annual_vol=0.3))
    rec = tmp_path / "rec.jsonl"
    h = BotHarness(
        sim,
        tmp_path,
        record=rec,
        price_source="pyth",
        hermes_url=sim.base_url,
        fair_source="model",
    ).start()
    try:
        h.tick_until(lambda: h.bot.prices.state("BTC")[0] == "pyth")
        h.tick(20)
    finally:
        h.stop()
        sim.stop()
    recs = st.read_recording(str(rec))
    pyth = [r for r in recs if r["k"] == "price" and r["d"].get("s") == "pyth"]
    assert len(pyth) >= 20 and all(r["d"]["t"] <= r["r"] for r in pyth)
    cfg = dataclasses.replace(
        h.cfg,
        state_file=str(tmp_path / "rs.json"),
        bot_name="replay",
        hermes_url="http://127.0.0.1:9",  # nothing listens: a connection attempt would fail
    )
    out = tmp_path / "replay.log"
    st.replay_run(recs, cfg, str(out))
    events = st.read_events(str(out))[0]
    end = float(recs[-1]["r"])  # after it, replay steps on until claims: the price goes stale
    src = [e["source"] for e in events if e["event"] == "price_source" and e["t"] <= end]
    # as the live run had it: a first step before the stream's first update polls Turbine once
    live_src = [e["source"] for e in h.events("price_source")]
    assert src in (["pyth"], ["turbine", "pyth"]) and src == live_src[: len(src)], (src, live_src)
    live_q = [(e["price"], e["side"]) for e in h.events("order_placed")]
    replay_q = [(e["price"], e["side"]) for e in events if e["event"] == "order_placed"]
    assert replay_q[: len(live_q)] == live_q  # the same quotes from the same prices


# -- the verdict: paired per-market statistics on made-up logs with known answers ------------
def market_log(path: pathlib.Path, bot: str, pnls: dict[str, float], **start: Any) -> None:
    """One fill and one settlement per market, so that each market's PnL is known exactly:
    a BUY of 1 at 0.50 (fair 0.55) that realizes nothing, settled at `pnl`."""
    lines = [ev(0, "start", bot=bot, config={"base_spread": 0.04, **start})]
    t = 1.0
    for mid, pnl in pnls.items():
        lines.append(ev(t, "order_placed", bot=bot, size=1.0, ms=10.0 + t))
        lines.append(ev(t, "fill", bot=bot, market=mid, side="BUY", size=1.0, price=0.5,
                        realized=0.0, fair=0.55, position=1.0))
        lines.append(ev(t + 1, "claim_none", bot=bot, market=mid, settled_pnl=pnl,
                        yes_won=pnl > 0))
        t += 900
    path.write_text("\n".join(lines) + "\n")


def test_paired_difference_mean_interval_and_verdict(tmp_path: pathlib.Path, capsys: Any) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    # differences a - b per market: 1, 2, 3, 4, 5 (mean 3, sd 1.5811, t(4) 2.776 -> +-1.963)
    market_log(a, "spike_bot", {f"0xm{i}": 0.5 + i for i in range(1, 6)} | {"0xonly": 9.0})
    market_log(b, "official_spike_bot", {f"0xm{i}": 0.5 for i in range(1, 6)}, base_spread=0.06)
    runs = [{**st.summarize(*st.read_events(str(p))), "_events": st.read_events(str(p))[0]}
            for p in (a, b)]
    cmp = st.paired(runs)
    assert cmp["markets"] == 5 and cmp["mean_diff"] == 3.0  # 0xonly: one bot only, left out
    lo, hi = cmp["interval"]
    assert lo == pytest.approx(3 - 1.963, abs=1e-3) and hi == pytest.approx(3 + 1.963, abs=1e-3)
    assert cmp["verdict"].endswith("a real difference") and "+3.00 a market" in cmp["verdict"]
    d = cmp["decomposition"]["spike_bot"]
    assert d["fills"] == 5 and d["edge_vs_fair"] == pytest.approx(0.25)  # 5 x (0.55 - 0.50)
    assert d["markout_to_settlement"] == pytest.approx(2.5)  # YES won each: 5 x (1 - 0.5)
    assert d["place_ms_p50"] is not None
    # the same markets, no systematic difference: not distinguishable
    market_log(b, "official_spike_bot", {f"0xm{i}": 0.5 + i + (-1) ** i for i in range(1, 6)})
    runs[1] = {**st.summarize(*st.read_events(str(b))), "_events": st.read_events(str(b))[0]}
    assert st.paired(runs)["verdict"].endswith("not distinguishable")
    # the report's first screen says it, with the settings that differ and the JSON form
    market_log(b, "official_spike_bot", {f"0xm{i}": 0.5 for i in range(1, 6)}, base_spread=0.06)
    assert sb.main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== verdict\nspike_bot +3.00 a market against official_spike_bot")
    assert "base_spread: spike_bot 0.04, official_spike_bot 0.06" in out
    assert sb.main(["report", "--json", str(a), str(b)]) == 0
    assert json.loads(capsys.readouterr().out)["comparison"]["mean_diff"] == 3.0
    # the same settings: the report names them instead of printing nothing (issue 30)
    market_log(b, "official_spike_bot", {f"0xm{i}": 0.5 for i in range(1, 6)})
    assert sb.main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "== identical settings (base_spread 0.04)" in out and "settings that differ" not in out


def test_the_report_shows_each_bots_estimated_maker_rebates(tmp_path: pathlib.Path) -> None:
    """Rebates are their own row (the fills' estimates summed), never part of realized PnL."""
    a = tmp_path / "a.log"
    lines = [
        ev(0, "start", bot="spike_bot"),
        ev(1, "fill", bot="spike_bot", side="BUY", size=10.0, price=0.5, position=10.0,
           realized=0.0, rebate_est=round(sb.maker_rebate(0.5, 10.0, 0.2), 6)),
        ev(2, "fill", bot="spike_bot", side="SELL", size=10.0, price=0.6, position=0.0,
           realized=1.0, rebate_est=round(sb.maker_rebate(0.6, 10.0, 0.2), 6)),
        ev(3, "shutdown", bot="spike_bot", realized=1.0, unrealized=0.0),
    ]
    a.write_text("\n".join(lines) + "\n")
    s = st.summarize(*st.read_events(str(a)))
    # 0.2 x 0.25 x (p(1-p))^2 x notional: 0.015625 at 0.50 and 0.0172 at 0.60 for 10 shares
    assert s["maker_rebates_est"] == pytest.approx(0.0156 + 0.0173, abs=2e-4)
    assert s["realized_pnl"] == 1.0


def test_t_quantiles_and_live_changes() -> None:
    assert st.t975(1) == 12.706 and st.t975(30) == 2.042
    assert st.t975(60) == pytest.approx(2.000, abs=2e-3)
    assert st.t975(10**6) == pytest.approx(1.96, abs=1e-3)
    r = {"_events": [json.loads(ev(60, "params_reloaded", changed={"base_spread": [0.04, 0.06]}))]}
    assert st.live_changes(r) == [(60.0, "base_spread", 0.04, 0.06)]


def test_the_cumulative_pnl_line_ends_at_the_tables_figure(
    qsim: Any, tmp_path: pathlib.Path
) -> None:
    """A real run (fills both ways, a market resolved and claimed, the next one traded): the
    chart's cumulative line, built from the log, ends at the report table's realized PnL."""
    import turbine_sim as ts
    from conftest import BotHarness
    from test_spike_bot import bot_quotes, take

    h = BotHarness(qsim, tmp_path, claim_s=2).start()
    try:
        bid, ask = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: h.events("fill"))
        _, ask = bot_quotes(h)
        take(qsim, h.market_id(), ts.BUY, ask["price"], 2_000_000)
        h.tick_until(lambda: len(h.events("fill")) >= 2)
        qsim.fault("resolve_now")
        h.tick_until(lambda: h.events("claim") or h.events("claim_none"), 20)
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: len(h.events("fill")) >= 3)
        h.tick(2)
    finally:
        h.stop()
    events, bad = st.read_events(str(h.log_path))
    table = st.summarize(events, bad)["realized_pnl"]
    _, ys = st.pnl_series(events)
    engine = [e for e in events if e["event"] == "shutdown"][-1]["realized"]  # the bot's own
    assert len(ys) >= 4 and ys[-1] == pytest.approx(table, abs=1e-4)
    assert ys[-1] == pytest.approx(engine, abs=1e-4)


def test_a_simulated_day_gives_a_verdict_and_charts_that_agree(tmp_path: pathlib.Path) -> None:
    """`bench/sim_day.py` (both bots, one seeded simulator; two hours at 720x): the report's
    first screen is the verdict over the markets both finished, with its decomposition, and
    each bot's cumulative PnL line ends at its table figure and at its own shutdown figure."""
    import subprocess
    import sys

    out = tmp_path / "day"
    r = subprocess.run(
        [sys.executable, str(pathlib.Path(st.__file__).parent / "bench" / "sim_day.py"),
         "--hours", "2", "--speed", "720", "--seed", "7", "--out", str(out)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    text = (out / "report.txt").read_text()
    first = text.splitlines()[:3]
    assert first[0] == "== verdict" and first[1].startswith("spike_bot ")
    assert " a market against official_spike_bot, 95% interval [" in first[1]
    assert "edge_vs_fair" in text and "markout_to_settlement" in text
    for log in ("spike_bot.log", "official_spike_bot.log"):
        events, bad = st.read_events(str(out / log))
        _, ys = st.pnl_series(events)
        shutdown = [e for e in events if e["event"] == "shutdown"][-1]["realized"]
        assert ys and ys[-1] == pytest.approx(st.summarize(events, bad)["realized_pnl"], abs=1e-4)
        assert ys[-1] == pytest.approx(shutdown, abs=1e-4)
    for png in ("pnl.png", "inventory.png"):
        assert (out / png).stat().st_size > 1000


def test_a_short_run_is_compared_minute_by_minute(tmp_path: pathlib.Path) -> None:
    """Fewer than five markets finished by both (a 10-minute rehearsal): the verdict pairs the
    realized PnL of each minute instead, and says so."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    market_log(a, "spike_bot", {"0xm1": 1.5, "0xm2": 1.5})
    market_log(b, "official_spike_bot", {"0xm1": 0.5, "0xm2": 0.5})
    runs = [{**st.summarize(*st.read_events(str(p))), "_events": st.read_events(str(p))[0]}
            for p in (a, b)]
    cmp = st.paired(runs)
    assert cmp["unit"] == "a minute" and cmp["markets"] == 2
    assert "minutes (only 2 market(s) finished by both" in cmp["verdict"]
    assert sum(cmp["per_market_diff"].values()) == pytest.approx(2.0)
