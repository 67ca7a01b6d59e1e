"""turbine_sim's realistic market preset: its calibration figures, the oracle lagging the fast
price, informed takers trading on the fast price, heavy-tailed noise, competing makers, maker
rebates (spec 1.4), and determinism however time is reached. The classic preset is covered by
test_sim_time.py and stays bit-identical."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

import turbine_sim as ts
from conftest import SIM_START


def exchange(seed: int = 3, **kw: Any) -> tuple[ts.Exchange, ts.Participants]:
    cfg = ts.SimConfig(
        manual_clock=True, start_time=SIM_START + 1, seed=seed, preset="realistic", **kw
    )
    ex = ts.Exchange(cfg, ts.Clock(SIM_START + 1, 1.0, manual=True))
    return ex, ts.Participants(ex)


@pytest.fixture(scope="module")
def day() -> ts.Exchange:
    ex, parts = exchange()
    ex.step_to(SIM_START + 1 + 86_400, parts)
    return ex


def test_a_day_has_btc_like_returns(day: ts.Exchange) -> None:
    """About 50% annualised vol over the day (real_vol 0.45 plus clustering and jumps), fat
    tailed 1-minute returns, hourly vol that moves (clustering and the intraday season)."""
    h = [p for _, p in day.price_hist["BTC"]]
    r = [math.log(h[i + 60] / h[i]) for i in range(0, len(h) - 60, 60)]
    var = statistics.fmean(x * x for x in r)
    ann = math.sqrt(var * 525_600)
    kurt = statistics.fmean(x**4 for x in r) / var**2 - 3
    hourly = [
        math.sqrt(statistics.fmean(x * x for x in r[i : i + 60]) * 525_600)
        for i in range(0, len(r) - 60, 60)
    ]
    assert 0.35 < ann < 0.8, ann
    assert kurt > 2, kurt  # a normal has 0
    assert max(hourly) / min(hourly) > 2.5, (min(hourly), max(hourly))


def test_the_oracle_lags_the_fast_price(day: ts.Exchange) -> None:
    fast = list(day.fast_hist["BTC"])
    pub = dict(day.price_hist["BTC"])
    lag = round(day.cfg.oracle_lag_s)
    for t, _f, _ in fast[-100:]:
        assert pub[t] == pytest.approx(next(x[1] for x in fast if x[0] == t - lag))
    assert fast[-1][1] != pub[fast[-1][0]]


def test_participants_trade_like_the_preset_says(day: ts.Exchange) -> None:
    c = day.counters
    assert c["informed_orders"] > 1000 and c["noise_orders"] > 5000
    # self-exciting noise: the base rate is 4 a minute; branching 0.6 gives 1 / (1 - 0.6)
    assert 1.8 < c["noise_orders"] / (4 * 1440) < 3.5
    noise = "0x" + ts.keccak(b"participant:noise").hex()[-40:]
    by_order: dict[str, float] = {}  # what each noise order took (its size, or the book's)
    for trades in day.trades.values():
        for tr in trades:
            if tr["taker"] == noise:
                by_order[tr["takerOrderHash"]] = by_order.get(tr["takerOrderHash"], 0) + tr["size"]
    sizes = sorted(by_order.values())
    assert sizes[-1] > 10 * statistics.median(sizes)  # a heavy tail
    makers = {
        "0x" + ts.keccak(f"participant:maker{i}".encode()).hex()[-40:]
        for i in range(len(day.cfg.makers))
    }
    assert makers & {tr["maker"] for trades in day.trades.values() for tr in trades}


def test_same_seed_same_day_however_time_is_reached() -> None:
    a, pa = exchange(seed=5)
    b, pb = exchange(seed=5)
    a.step_to(SIM_START + 1 + 1800, pa)
    t = SIM_START + 1.0
    while t < SIM_START + 1 + 1800:
        t += 0.7
        b.step_to(t, pb)
    assert list(a.price_hist["BTC"]) == list(b.price_hist["BTC"])
    assert a.counters == b.counters
    c, pc = exchange(seed=6)
    c.step_to(SIM_START + 1 + 1800, pc)
    assert list(c.price_hist["BTC"]) != list(a.price_hist["BTC"])


def test_maker_rebates_follow_the_spec_schedule() -> None:
    ex, _ = exchange(maker_rebate=True)
    mid = next(iter(ex.current.values()))
    for a in ("0x" + "aa" * 20, "0x" + "bb" * 20):
        ex.ledger.ensure(a, 10**12)
        ex.ledger.allowance[a] = ts.MAX_UINT
    ex.place_internal("0x" + "aa" * 20, mid, ts.SELL, ts.YES, 500_000, 10 * 10**6, False)
    ex.place_internal("0x" + "bb" * 20, mid, ts.BUY, ts.YES, 500_000, 10 * 10**6, True)
    # $5 of notional at 0.50: 20% of a 1.5625% virtual fee = $0.015625, to the maker only
    assert ex.rebates["0x" + "aa" * 20] == 15_625
    assert ex.rebates["0x" + "bb" * 20] == 0
    assert ex.rebates_by_market[("0x" + "aa" * 20, mid)] == 15_625


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        ts.Exchange(
            ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, preset="wild"),
            ts.Clock(SIM_START + 1, 1.0, manual=True),
        )
