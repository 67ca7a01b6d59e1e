#!/usr/bin/env python3
"""Live-clock runs for bench_quality: turbine_sim in a child process on a clock that runs
`speed` simulated seconds a real second, and one trader on it: the official SDK's own market
maker program in its own process (bench/sdk_runner.py, from a source snapshot), or spike_bot
(its engine in this process on the same clock). Judged like every bench_quality run, from the
simulator's ledger (bench_soak.market_stats).

At 20x a loopback request of 3-8 ms costs 60-160 ms of market time, about a real round trip
to a remote exchange: both traders pay it, which is why spike_bot is run this way too when it
is compared with the official program.

    python bench/bench_live.py --trader official|spike [--preset deep] [--seed 2001]
                               [--hours 1] [--speed 20] [--sdk PATH]

The SDK snapshot: --sdk PATH or TURBINE_SDK_SRC (a checkout of
https://github.com/ojo-network/turbine-py-client; never copied into this repository).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from eth_account import Account

import spike_bot as sb
import turbine_sim as ts
from bench_soak import market_stats
from harness import SIM_START, creds_for

SDK_ENV = "TURBINE_SDK_SRC"
HERE = pathlib.Path(__file__).resolve().parent
# the program's settings in a run: BTC 15-minute markets only, as spike_bot trades; everything
# else (allocation, spread, levels, vol) its own defaults
OFFICIAL_ARGS = ["--assets", "BTC", "--intervals", "15"]
# how long after the last simulated hour the run goes on, so its last market resolves
TAIL_S = 60.0


def sdk_source(path: str | None = None) -> pathlib.Path | None:
    """The SDK snapshot to run, or None (no path given, or not a checkout of the SDK)."""
    p = path or os.environ.get(SDK_ENV)
    if not p:
        return None
    root = pathlib.Path(p).expanduser()
    ok = (root / "examples" / "market_maker.py").is_file() and (root / "turbine_client").is_dir()
    return root if ok else None


SDK_HELP = (
    f"the official program baseline needs an SDK snapshot: git clone "
    f"https://github.com/ojo-network/turbine-py-client /some/dir, then {SDK_ENV}=/some/dir "
    f"or --sdk /some/dir"
)


def _sim_child(conn: Any, seed: int, sim_kw: dict[str, Any], speed: float) -> None:
    clock = ts.Clock(SIM_START, speed, False, real=time.time)
    sim = ts.Sim(ts.SimConfig(start_time=SIM_START, speed=speed, seed=seed, **sim_kw), clock)
    conn.send((sim.base_url, clock._real0))
    while True:
        cmd, arg = conn.recv()
        if cmd == "register":
            conn.send(creds_for(sim, arg))
        elif cmd == "market_stats":
            conn.send(sim.call(lambda a=arg: market_stats(sim.app.ex, a)))
        elif cmd == "open_orders":
            st = sim.state()
            conn.send(sum(1 for o in st["open_orders"] if o["trader"] == arg))
        else:
            sim.stop()
            conn.send(None)
            return


class LiveSim:
    """turbine_sim on a real clock at `speed`, in a child process."""

    def __init__(self, seed: int, sim_kw: dict[str, Any], speed: float) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sim_child, args=(child, seed, sim_kw, speed), daemon=True)
        self.proc.start()
        self.base_url, real0 = self.conn.recv()
        self.speed = speed
        self.clock = ts.Clock(SIM_START, speed, False, real=time.time)
        self.clock._real0 = real0  # the child's clock, to the microsecond

    def ask(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        return self.conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self.proc.join(10)


def run_live(
    trader: str,
    preset: str,
    seed: int,
    hours: float,
    speed: float = 20.0,
    overrides: dict[str, Any] | None = None,
    sdk: pathlib.Path | None = None,
    sim_kw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One trader alone on one seeded simulator for `hours` of simulated time at `speed`."""
    sim = LiveSim(seed, {"preset": preset, **(sim_kw or {})}, speed)
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    addr = Account.from_key(key).address.lower()
    kid, secret = sim.ask("register", key)
    end = SIM_START + hours * 3600 + TAIL_S
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"live-{trader}-"))
    t0 = time.perf_counter()
    try:
        if trader == "official":
            if sdk is None:
                raise ValueError(SDK_HELP)
            info = _run_official(sim, sdk, key, kid, secret, end, tmp)
        else:
            info = _run_spike(sim, key, kid, secret, end, tmp, overrides or {})
        left = sim.ask("open_orders", addr)
        per_market = sim.ask("market_stats", addr)
    finally:
        sim.stop()
    return {
        "label": trader,
        "per_market": per_market,
        "markets": len(per_market),
        "orders_left": left,
        "wall_s": round(time.perf_counter() - t0, 1),
        "errors": int(bool(info.get("traceback")) or bool(info.get("died_early"))),
        "orders_left_after_rollover": 0,  # not sampled on a live clock; orders_left at the end
        **info,
    }


def _run_official(
    sim: LiveSim, sdk: pathlib.Path, key: str, kid: str, secret: str, end: float, tmp: pathlib.Path
) -> dict[str, Any]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TURBINE_")},
        "TURBINE_HOST": sim.base_url,
        "CHAIN_ID": "137",
        "TURBINE_PRIVATE_KEY": key,
        "TURBINE_API_KEY_ID": kid,
        "TURBINE_API_PRIVATE_KEY": secret,
        "PYTHONUNBUFFERED": "1",
    }
    clock = f"{SIM_START},{sim.clock._real0},{sim.speed}"
    out = (tmp / "official.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sdk_runner.py"), "--sdk", str(sdk), "--clock", clock,
         "--hermes", sim.base_url, "--", *OFFICIAL_ARGS],
        env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
    )  # fmt: skip
    while sim.clock.now() < end and proc.poll() is None:
        time.sleep(0.2)
    crashed = proc.poll()
    if crashed is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: its shutdown cancels its orders
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # its stacks into its output, then kill
            time.sleep(0.5)
            proc.kill()
            proc.wait(10)
    out.close()
    text = (tmp / "official.out").read_text(errors="replace")
    return {
        "exit": proc.returncode,
        "died_early": crashed is not None,
        "output": str(tmp / "official.out"),
        "rebalances": text.count("REBALANCE"),
        "circuit_breaks": text.count("ADVERSE SELECTION"),
        "traceback": "Traceback" in text,
    }


def _run_spike(
    sim: LiveSim,
    key: str,
    kid: str,
    secret: str,
    end: float,
    tmp: pathlib.Path,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    cfg = sb.Config(
        host=sim.base_url,
        log_file=str(tmp / "bot.log"),
        state_file=str(tmp / "state.json"),
        status_every_s=0,
        bot_name="spike_live",
    )
    # the pacer counts real seconds: 8 a simulated second at any speed, as spike_bot --sim does
    cfg.rate_limit_per_s *= sim.speed
    for k, v in overrides.items():
        setattr(cfg, k, sim.base_url if v == "<sim>" else v)
    sb.validate(cfg)
    metrics = sb.Metrics("spike_live")
    ex = sb.TurbineExchange(cfg, sb.Signer(key, 137), sb.BearerAuth(kid, secret), metrics)
    log = sb.EventLog(cfg.log_file, "spike_live")
    bot = sb.Bot(cfg, ex, sim.clock, log, metrics)
    th = threading.Thread(target=bot.run, daemon=True)
    th.start()
    while sim.clock.now() < end and th.is_alive():
        time.sleep(0.2)
    died = not th.is_alive()
    bot.stop()
    th.join(60)
    log.close()
    return {"died_early": died, "requests": metrics.requests_total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trader", choices=("official", "spike"), default="official")
    ap.add_argument("--preset", choices=ts.PRESETS, default="realistic")
    ap.add_argument("--seed", type=int, default=2001)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--sdk", default=None, help=f"SDK snapshot (default: ${SDK_ENV})")
    a = ap.parse_args()
    sdk = sdk_source(a.sdk)
    if a.trader == "official" and sdk is None:
        print(SDK_HELP)
        return 2
    r = run_live(a.trader, a.preset, a.seed, a.hours, a.speed, sdk=sdk)
    pnl = [x["pnl"] for x in r["per_market"]]
    print(
        json.dumps(
            {k: v for k, v in r.items() if k != "per_market"}
            | {
                "pnl_per_market": [round(x, 3) for x in pnl],
                "notional_per_market": [round(x["notional"], 1) for x in r["per_market"]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
