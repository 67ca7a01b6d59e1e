"""turbine_sim's deep preset against the real venue it is calibrated to (Polymarket's BTC
15-minute markets; SimConfig's deep settings cite the sources): the YES book sampled every
simulated second with no client, as the real books were polled. Each figure must fall in a range
around the real one (a factor of two, or the stated bound); the classic and realistic presets,
sampled the same way, must stay what their descriptions say: thin."""

from __future__ import annotations

from typing import Any

import pytest

import turbine_sim as ts

REAL = ts.REAL_VENUE_FACTS


def test_the_deep_preset_samples_like_the_real_venue() -> None:
    """One sampling (two seeds x 2 h, about 10 s), every figure checked: one test, so that the
    parallel workers do not each sample it again."""
    deep = ts.summarize_facts([ts.book_facts("deep", s, 2.0) for s in (2001, 2002)])
    one_tick_and_wider_into_expiry(deep)
    thousands_of_shares(deep)
    thousands_of_trades_and_fast(deep)
    one_sided_near_the_end(deep)


def within(x: float, real: float, factor: float = 2.0) -> bool:
    return real / factor <= x <= real * factor


def one_tick_and_wider_into_expiry(deep: dict[str, Any]) -> None:
    assert deep["spread_median"] == pytest.approx(REAL["spread_median"])
    assert deep["spread_p90"] <= REAL["spread_p90"] + 1e-9
    assert 0.6 <= deep["spread_one_tick_share"] <= 0.95, deep
    assert within(deep["spread_last60_mean"], REAL["spread_last60_mean"]), deep
    assert deep["spread_last60_mean"] > 1.5 * deep["spread_median"]  # wider into expiry


def thousands_of_shares(deep: dict[str, Any]) -> None:
    assert within(deep["top5_depth_median"], REAL["top5_depth_median"]), deep
    assert within(deep["top5_depth_p90"], REAL["top5_depth_p90"]), deep
    # thinner in the last minute, as the real books (about half)
    assert within(deep["top5_depth_last60_median"], REAL["top5_depth_last60_median"]), deep
    assert deep["top5_depth_last60_median"] < deep["top5_depth_median"]


def thousands_of_trades_and_fast(deep: dict[str, Any]) -> None:
    assert within(deep["trades_per_market"], REAL["trades_per_market"]), deep
    assert within(deep["volume_usd_per_market_approx"], REAL["volume_usd_per_market_approx"])
    assert deep["top_changes_per_min"] >= REAL["top_changes_per_min"], deep
    assert within(deep["mid_move_first5min"], REAL["mid_move_first5min"]), deep
    assert within(deep["mid_move_last60s"], REAL["mid_move_last60s"]), deep
    assert deep["mid_move_last60s"] > 2 * deep["mid_move_first5min"]


def one_sided_near_the_end(deep: dict[str, Any]) -> None:
    both = deep["both_sides_quoted"]
    assert both[">600"] >= 0.95
    assert both[">600"] > both["300-600"] > both["60-300"] > both["10-60"] > both["<10"]
    assert 0.15 <= both["10-60"] <= 0.66 and 0.05 <= both["<10"] <= 0.4, both


@pytest.mark.parametrize("preset", ["classic", "realistic"])
def test_the_other_presets_are_thin_markets(preset: str) -> None:
    f = ts.summarize_facts([ts.book_facts(preset, 2001, 2.0)])
    assert f["top5_depth_median"] < 300 and f["trades_per_market"] < 400, f
    assert f["spread_median"] >= 0.03, f


def test_the_contested_preset_samples_like_the_real_venue() -> None:
    """The contested preset (the deep one with sub-cent steppers, official-program makers and
    latency-bound cancels on oracle moves) against the three figures issue 27 names first
    (the one-cent share of the spread, the last minute's depth, BTC's one-second volatility)
    and the deep preset's other ranges; its steppers put the spread inside a cent."""
    f = ts.summarize_facts([ts.book_facts("contested", s, 1.5) for s in (2001, 2002)])
    assert abs(f["spread_one_tick_share"] - REAL["spread_one_tick_share"]) <= 0.08, f
    assert within(f["top5_depth_last60_median"], REAL["top5_depth_last60_median"]), f
    assert 0.35 <= f["btc_1s_return_sd_bp"] <= 0.66, f
    assert f["spread_median"] <= 0.01 + 1e-9 and f["spread_p90"] <= 0.04, f
    assert within(f["spread_last60_mean"], REAL["spread_last60_mean"]), f
    assert within(f["top5_depth_median"], REAL["top5_depth_median"]), f
    assert within(f["trades_per_market"], REAL["trades_per_market"]), f
    assert within(f["volume_usd_per_market_approx"], REAL["volume_usd_per_market_approx"]), f
    assert f["top_changes_per_min"] >= REAL["top_changes_per_min"], f
    assert within(f["mid_move_last60s"], REAL["mid_move_last60s"]), f
    both = f["both_sides_quoted"]
    assert both[">600"] >= 0.95 and both[">600"] > both["60-300"] > both["<10"], both
