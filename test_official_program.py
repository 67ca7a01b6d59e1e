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
