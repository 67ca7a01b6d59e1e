#!/usr/bin/env python3
"""Rehearse the 24-hour comparison in minutes: spike_bot and official_spike_bot, each in its
own process, quote the same seeded simulator at once (default 24 simulated hours at 720x, two
real minutes); then the comparison report and charts are written to one folder.

    python bench/sim_day.py [--hours 24] [--speed 720] [--seed 7] [--out sim_day]
                            [--markets BTC:15,BTC:60,ETH:15]

Both bots read the simulator's clock (start + monotonic elapsed x speed: the same in every
process on the machine) and get their own key, env-free credentials, log, state and metrics.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from eth_account import Account

import spike_bot as sb
import spike_tools
import turbine_sim as ts


def run_bot(
    kind: str,
    url: str,
    clock: ts.Clock,
    key: str,
    kid: str,
    secret: str,
    out: pathlib.Path,
    seconds: float,
    speed: float,
    markets: str,
) -> None:
    if kind == "official":
        import official_spike_bot as ob

        factory, base = ob.official_exchange, ob.DEFAULTS
    else:
        factory, base = sb.spike_exchange, sb.Config()
    cfg = sb.validate(
        sb.Config(
            **{
                **sb.dataclasses.asdict(base),
                "host": url,
                "log_file": str(out / f"{base.bot_name}.log"),
                "state_file": str(out / f"{base.bot_name}_state.json"),
                "rate_limit_per_s": min(10_000, 8 * speed),
                "status_every_s": 0,
                "markets": markets,
            }
        )
    )
    metrics = sb.Metrics(cfg.bot_name)
    log = sb.EventLog(cfg.log_file, cfg.bot_name)
    bot = sb.Bot(cfg, factory(cfg, key, kid, secret, metrics), clock, log, metrics)
    bot.run(seconds)
    log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--speed", type=float, default=720.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="sim_day")
    ap.add_argument("--markets", default="BTC:15", help="what both bots quote (--markets)")
    ap.add_argument(
        "--no-rebates", action="store_true", help="the simulator pays no maker rebates"
    )
    a = ap.parse_args()
    keys = sb.parse_markets(a.markets)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*"):
        if f.suffix in (".log", ".json", ".png"):
            f.unlink()
    sim = ts.start_sim(
        ts.SimConfig(
            speed=a.speed,
            seed=a.seed,
            assets=tuple(dict.fromkeys(k.asset for k in keys)),
            intervals=tuple(sorted({k.interval for k in keys})),
            maker_rebate=not a.no_rebates,  # spec 1.4; the report's estimates beside them
        )
    )
    seconds = a.hours * 3600 / a.speed
    ctx = mp.get_context("fork")
    procs = []
    addrs = {}
    for kind in ("spike", "official"):
        key = "0x" + Account.create().key.hex().removeprefix("0x")
        addrs[kind] = Account.from_key(key).address.lower()
        kid, secret = ts.new_api_credentials_for_tests(sim, key)
        p = ctx.Process(
            target=run_bot,
            args=(
                kind, sim.base_url, sim.clock, key, kid, secret, out, seconds, a.speed, a.markets
            ),
        )
        p.start()
        procs.append(p)
    t0 = time.time()
    for p in procs:
        p.join(seconds + 120)
    st = sim.state()
    sim.stop()
    print(
        f"simulated {a.hours:g} h at {a.speed:g}x in {time.time() - t0:.0f} s; "
        f"simulator invariants ok: {st['invariants_ok']}"
    )
    logs = [str(out / "spike_bot.log"), str(out / "official_spike_bot.log")]
    with open(out / "report.txt", "w") as fh:
        runs = spike_tools.report(logs, str(out), out=fh)
        if not a.no_rebates:  # the bots' own estimates against what the simulator accrued
            paid = st.get("rebates", {})
            print("== maker rebates: each bot's estimate against the simulator's accrual", file=fh)
            for r, kind in zip(runs, ("spike", "official"), strict=True):
                print(
                    f"{r.get('bot')}: estimated {r.get('maker_rebates_est')}, simulator "
                    f"{paid.get(addrs[kind], 0) / 1e6:.4f} USDC",
                    file=fh,
                )
    print((out / "report.txt").read_text())
    return 0 if all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
