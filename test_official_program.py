"""The official SDK's own market maker program as a baseline (bench/sdk_runner.py,
bench/bench_live.py): found only where a snapshot is given, skipped with instructions
otherwise, and, where a snapshot is given (TURBINE_SDK_SRC), run against turbine_sim the way
it runs live: it approves, quotes, trades and cancels everything when stopped."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "bench"))

import bench_live


def test_no_snapshot_no_official_baseline(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(bench_live.SDK_ENV, raising=False)
    assert bench_live.sdk_source(None) is None
    assert bench_live.sdk_source(str(tmp_path)) is None  # not a checkout of the SDK
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "market_maker.py").write_text("")
    (tmp_path / "turbine_client").mkdir()
    assert bench_live.sdk_source(str(tmp_path)) == tmp_path
    monkeypatch.setenv(bench_live.SDK_ENV, str(tmp_path))
    assert bench_live.sdk_source(None) == tmp_path
    assert "git clone https://github.com/ojo-network/turbine-py-client" in bench_live.SDK_HELP


@pytest.mark.skipif(
    bench_live.sdk_source(None) is None,
    reason=f"no SDK snapshot: {bench_live.SDK_HELP}",
)
def test_the_official_program_trades_on_the_simulator_and_cleans_up() -> None:
    sdk = bench_live.sdk_source(None)
    r = bench_live.run_live("official", "classic", 5, 0.1, speed=20.0, sdk=sdk)
    out = pathlib.Path(r["output"]).read_text()
    assert r["exit"] == 0 and not r["traceback"] and not r["died_early"], out[-2000:]
    assert "USDC approved" in out and "Placed" in out
    assert r["orders_left"] == 0  # its Ctrl-C path cancelled every order
    assert os.path.exists(r["output"])


def test_the_ledger_arithmetic_counts_both_outcomes_and_ignores_self_trades() -> None:
    """The official program trades NO as well as YES: its PnL per market is cash plus the
    shares of the winning outcome, whatever the outcome of each trade."""
    import turbine_sim as ts
    from bench_soak import market_stats
    from conftest import SIM_START

    cfg = ts.SimConfig(
        manual_clock=True, start_time=SIM_START + 1, participants=False, settle_delay_s=0
    )
    ex = ts.Exchange(cfg, ts.Clock(SIM_START + 1, 1.0, manual=True))
    a, b = "0x" + "aa" * 20, "0x" + "bb" * 20
    for who in (a, b):
        ex.ledger.ensure(who, 10**12)
        ex.ledger.allowance[who] = ts.MAX_UINT
        ex.ctf_approved.add(who)
    m = ex.markets[next(iter(ex.current.values()))]
    sh = 10**6
    ex.place_internal(b, m.market_id, ts.SELL, ts.NO, 400_000, 10 * sh, False)
    ex.place_internal(a, m.market_id, ts.BUY, ts.NO, 400_000, 10 * sh, True)  # a: +10 NO, -4
    ex.place_internal(b, m.market_id, ts.BUY, ts.YES, 700_000, 5 * sh, False)
    ex.place_internal(a, m.market_id, ts.SELL, ts.YES, 700_000, 5 * sh, True)  # a: -5 YES, +3.5
    ex.place_internal(a, m.market_id, ts.BUY, ts.YES, 600_000, 2 * sh, False)
    ex.place_internal(a, m.market_id, ts.SELL, ts.YES, 600_000, 2 * sh, True)  # with itself
    ex.step_to(m.end + cfg.resolve_delay_s + 2, None)
    # place_internal's orders are the simulator's own: their trades are kept as an API client's
    ex.api_trades.update({k: list(v) for k, v in ex.trades.items()})
    (row,) = [r for r in market_stats(ex, a) if r["market"] == m.market_id]
    want = -4.0 + 3.5 + (10.0 if m.outcome == ts.NO else -5.0)
    assert row["pnl"] == pytest.approx(want)
    assert row["notional"] == pytest.approx(7.5) and row["shares"] == pytest.approx(15)
