#!/usr/bin/env python3
"""Price age when a quote is computed (issue 15): spike_bot on the simulator at 1x (the real
clock), the model reading the oracle's stream (Hermes SSE, price_source=pyth) against the 2 s
Turbine poll (price_source=turbine), same seed, one after the other in the same run. Sampled at
every quote: the true age of the price the model used, i.e. how long ago the simulator
published that value (stream and poll alike). Goal: p50 below 0.5 s on the stream.

    python bench/bench_price_age.py [--seconds 60] [--json]

The simulator publishes on its 1 s model grid (Pyth publishes every 400 ms), so the stream's
age here is an upper bound of what Hermes gives live.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import turbine_sim as ts
from harness import BotHarness, wait_until


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def measure(source: str, seconds: float, seed: int) -> dict[str, Any]:
    sim = ts.start_sim(ts.SimConfig(speed=1.0, seed=seed, market_age_s=5))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="price-age-"))
    h = BotHarness(
        sim, tmp, price_source=source, hermes_url=sim.base_url, fair_source="model"
    )
    ages: list[float] = []
    h.start(wait_quotes=False)
    bot = h.bot
    quote = bot.quote

    def sampled(s: Any) -> None:
        """The engine thread, as it quotes: the true age of the price the model uses, i.e. how
        long ago the simulator published that value (for the poll too: the age of the value
        read, not the time since the read)."""
        asset = s.key.asset
        streamed = bot.prices.streamed(asset)
        px = streamed[0] if streamed is not None else bot.prices.asset_px.get(asset)
        if px is not None:
            with contextlib.suppress(RuntimeError):  # the simulator's thread appends
                hist = list(sim.app.ex.price_hist[asset])[-120:]
            # Hermes carries 8 decimals: the value matches the simulator's to 1e-8 or so
            t_pub = next((t for t, p in reversed(hist) if abs(p - px) < 1e-6), None)
            if t_pub is not None:
                ages.append(max(0.0, sim.clock.now() - t_pub))
        quote(s)

    try:
        wait_until(lambda: bot.prices.state("BTC")[0] == source, 30)
        bot.quote = sampled  # type: ignore[method-assign]
        time.sleep(seconds)
        n = sim.state()["counters"]
    finally:
        h.stop()
        sim.stop()
    return {
        "source": source,
        "quotes": len(ages),
        "p50_s": round(pct(ages, 0.5), 3),
        "p99_s": round(pct(ages, 0.99), 3),
        "turbine_price_requests": n.get("price_requests", 0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="real seconds per source")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = [measure(src, a.seconds, a.seed) for src in ("turbine", "pyth")]
    ratio = rows[1]["p50_s"] / rows[0]["p50_s"] if rows[0]["p50_s"] else float("nan")
    out = {"rows": rows, "p50_stream_over_poll": round(ratio, 3)}
    if a.json:
        print(json.dumps(out))
    else:
        for r in rows:
            print(
                f"{r['source']:8s} quotes {r['quotes']:5d}  p50 {r['p50_s']:.3f} s  "
                f"p99 {r['p99_s']:.3f} s  turbine price requests {r['turbine_price_requests']}"
            )
        print(f"p50 stream / poll: {out['p50_stream_over_poll']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
