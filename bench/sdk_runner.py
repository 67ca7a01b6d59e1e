#!/usr/bin/env python3
"""Run the official SDK's own market maker program (examples/market_maker.py, unmodified) from a
source snapshot against turbine_sim, the way it runs on the real exchange: its own process, its
TurbineClient from the snapshot, its Pyth price from the simulator's Hermes, and its clock and
sleeps on the simulator's time (a simulator at N x speed runs N simulated seconds a real second).

    python bench/sdk_runner.py --sdk PATH --clock START,REAL0,SPEED --hermes URL [-- ARGS...]

START,REAL0,SPEED: simulated time is START + (time.time() - REAL0) x SPEED, the simulator's
own clock (turbine_sim.Clock on the wall clock). Environment: TURBINE_HOST, CHAIN_ID,
TURBINE_PRIVATE_KEY, TURBINE_API_KEY_ID, TURBINE_API_PRIVATE_KEY, as the program reads them.
ARGS go to the program (e.g. --assets BTC --intervals 15). SIGTERM stops it the way Ctrl-C
does (its shutdown cancels its orders).

What is not the program's own: its clock (the program module's `time` and `asyncio` names
are bound to proxies whose time(), sleep() follow the simulator's clock; the SDK library keeps
the real clock, as the simulator checks bearer tokens against the wall clock) and
PYTH_HERMES_URL, a module constant the program has no option for, set to the simulator's
Hermes. Nothing is copied from the snapshot into this repository.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib.util
import os
import pathlib
import signal
import sys
import time


class SimTime:
    """The program's `time` module on the simulator's clock: time() is simulated time, sleep()
    lasts the simulated seconds asked; everything else is the real module's."""

    def __init__(self, start: float, real0: float, speed: float) -> None:
        self.start, self.real0, self.speed = start, real0, speed

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def time(self) -> float:
        return self.start + (time.time() - self.real0) * self.speed

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speed)


class SimAsyncio:
    """The program's `asyncio` module with sleep() on the simulator's clock."""

    def __init__(self, speed: float) -> None:
        self.speed = speed

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: object = None) -> object:
        return await asyncio.sleep(max(0.0, delay) / self.speed, result)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdk", required=True, help="turbine-py-client source snapshot (a checkout)")
    ap.add_argument("--clock", required=True, metavar="START,REAL0,SPEED")
    ap.add_argument("--hermes", required=True, help="the simulator's base URL (its Hermes)")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    sdk = pathlib.Path(a.sdk).resolve()
    program = sdk / "examples" / "market_maker.py"
    if not program.is_file():
        print(f"sdk_runner: no {program}", file=sys.stderr)
        return 2
    start, real0, speed = (float(x) for x in a.clock.split(","))
    sys.path.insert(0, str(sdk))  # the snapshot's turbine_client, not an installed one
    faulthandler.register(signal.SIGUSR1)  # a stuck program's stacks, on request
    # Ctrl-C as in a terminal: a background job of a non-interactive shell starts with SIGINT
    # ignored, and asyncio.run then leaves it so (the program would never shut down)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # SIGTERM as Ctrl-C: asyncio.run cancels the program's main task, its finally cancels orders
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    os.chdir(sdk / "examples")
    spec = importlib.util.spec_from_file_location("market_maker", program)
    assert spec is not None and spec.loader is not None
    mm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mm)
    mm.PYTH_HERMES_URL = a.hermes.rstrip("/") + "/v2/updates/price/latest"
    mm.time = SimTime(start, real0, speed)
    mm.asyncio = SimAsyncio(speed)
    sys.argv = [str(program), *[x for x in a.args if x != "--"]]
    try:
        asyncio.run(mm.main())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
