"""scripts/compare_live.py: refusals without tmux, and a short real run under tmux."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import time
from typing import Any

import pytest
from eth_account import Account

import spike_bot as sb
import turbine_sim as ts
from conftest import ROOT, wait_until

spec = importlib.util.spec_from_file_location("compare_live", ROOT / "scripts" / "compare_live.py")
cl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cl)


def env(tmp: pathlib.Path, name: str, key: str | None = None) -> str:
    key = key or "0x" + Account.create().key.hex().removeprefix("0x")
    p = tmp / name
    p.write_text(f"TURBINE_PRIVATE_KEY={key}\nSPIKE_ORDER_SIZE=2\n")
    return str(p)


def test_refusals(tmp_path: pathlib.Path, capsys: Any) -> None:
    a, b = env(tmp_path, "a.env"), env(tmp_path, "b.env")
    out = str(tmp_path / "out")
    base = ["--out", out, "--session", f"t-{time.time_ns()}"]
    assert cl.main(["--spike-env", a, "--official-env", str(tmp_path / "none"), *base]) == 2
    assert "no such env file" in capsys.readouterr().err
    assert cl.main(["--spike-env", a, "--official-env", a, *base]) == 2
    assert "own env file" in capsys.readouterr().err
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    c, d = env(tmp_path, "c.env", key), env(tmp_path, "d.env", key)
    assert cl.main(["--spike-env", c, "--official-env", d, *base]) == 2
    assert "same wallet" in capsys.readouterr().err
    assert (
        cl.main(
            [
                "--spike-env",
                a,
                "--official-env",
                b,
                "--spike-port",
                "9000",
                "--official-port",
                "9000",
                *base,
            ]
        )
        == 2
    )
    assert "must differ" in capsys.readouterr().err
    pathlib.Path(out).mkdir()
    lock = sb.hold_file_lock(str(pathlib.Path(out) / "spike_state.json"))
    try:
        assert cl.main(["--spike-env", a, "--official-env", b, *base]) == 2
        assert "in use by a running bot" in capsys.readouterr().err
    finally:
        lock.close()
    with pytest.raises(SystemExit):
        cl.main(["--spike-env", a, "--official-env", b, "--duration", "soon", *base])


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed")
def test_existing_session_is_refused(tmp_path: pathlib.Path, capsys: Any) -> None:
    name = f"spike-test-{time.time_ns()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "sleep 30"], check=True)
    try:
        a, b = env(tmp_path, "a.env"), env(tmp_path, "b.env")
        assert (
            cl.main(
                [
                    "--spike-env",
                    a,
                    "--official-env",
                    b,
                    "--session",
                    name,
                    "--out",
                    str(tmp_path / "o"),
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "exists" in err and f"tmux attach -t {name}" in err and "--replace" in err
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed")
def test_short_comparison_under_tmux(tmp_path: pathlib.Path) -> None:
    sim = ts.start_sim(ts.SimConfig(seed=5, market_age_s=5))
    name = f"spike-test-{time.time_ns()}"
    out = tmp_path / "cmp"
    a, b = env(tmp_path, "a.env"), env(tmp_path, "b.env")
    try:
        assert (
            cl.main(
                [
                    "--spike-env",
                    a,
                    "--official-env",
                    b,
                    "--host",
                    sim.base_url,
                    "--duration",
                    "8",
                    "--out",
                    str(out),
                    "--session",
                    name,
                    "--report-every",
                    "2",
                    "--spike-port",
                    "0",
                    "--official-port",
                    "0",
                    "--record",
                    "--hermes-url",  # the rehearsal streams the oracle price as live would
                    sim.base_url,
                ]
            )
            == 0
        )
        wait_until(
            lambda: (out / "report.txt").exists() and "charts:" in (out / "report.txt").read_text(),
            90,
            0.5,
        )
        text = (out / "report.txt").read_text()
        assert text.startswith("== verdict") and "spike_bot" in text and "orders_placed" in text
        assert (out / "spike_bot.rec").stat().st_size > 0
        assert (out / "official_spike_bot.rec").stat().st_size > 0
        log = (out / "spike_bot.log").read_text()
        assert '"source":"pyth"' in log  # streamed, not polled
        for png in ("pnl.png", "inventory.png"):
            assert (out / png).stat().st_size > 1000
        assert all(
            o["trader"]
            not in (
                sb.Signer(sb.read_env_file(e)[sb.ENV_PRIVATE_KEY], 137).address.lower()
                for e in (a, b)
            )
            for o in sim.state()["open_orders"]
        )
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)
        sim.stop()



def test_paper_and_record_reach_both_bots(tmp_path: pathlib.Path) -> None:
    """--paper and --record go to both bots' command lines (each its own recording), the
    rehearsal's --hermes-url makes both stream the oracle price."""
    import argparse

    a = argparse.Namespace(
        duration=60.0, host=None, hermes_url="http://127.0.0.1:1", record=True, paper=True,
        out=str(tmp_path),
    )
    for script in ("spike_bot.py", "official_spike_bot.py"):
        b = {"script": script, "env": "x.env", "log": "l", "state": "s", "port": "0"}
        cmd = cl.bot_command(b, a, "python")
        assert "--paper" in cmd and cmd[cmd.index("--price-source") + 1] == "pyth"
        assert cmd[cmd.index("--record") + 1] == str(tmp_path / (script[:-3] + ".rec"))
