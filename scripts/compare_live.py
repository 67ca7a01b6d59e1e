#!/usr/bin/env python3
"""Start the side-by-side live run: spike_bot and official_spike_bot in one tmux session.

    python scripts/compare_live.py --spike-env spike.env --official-env official.env \\
        [--duration 24h] [--out compare-YYYYmmdd-HHMM] [--session spike-compare] \\
        [--host URL] [--hermes-url URL] [--record] [--paper] [--replace] \\
        [--spike-port 9108] [--official-port 9109] [--report-every 300]

Checks first and refuses to start (exit 2) when: an env file is missing, both name the same
file or the same wallet, the ports are equal, a tmux session of that name exists, or a running
bot holds one of the state or log files. Then both preflights, each with its canary order,
must pass (exit 3 otherwise).
Window `spike` and window `official` run the bots (own env file, state file, log file and
metrics port; `--duration`, then a clean stop); window `report` refreshes the side-by-side
report every few minutes and, once both bots have stopped, writes the final report and charts
to the output folder (report.txt, *.png).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import spike_bot as sb  # noqa: E402 -- after the sys.path line


class Refused(Exception):
    """A reason not to start, printed as one line."""


def plan(a: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Validate the arguments and return each bot's files; raise Refused."""
    for f in (a.spike_env, a.official_env):
        if not os.path.isfile(f):
            raise Refused(f"no such env file: {f}")
    if os.path.realpath(a.spike_env) == os.path.realpath(a.official_env):
        raise Refused("each bot needs its own env file (and wallet)")
    keys = [
        sb.read_env_file(f).get(sb.ENV_PRIVATE_KEY, "").lower().removeprefix("0x")
        for f in (a.spike_env, a.official_env)
    ]
    if keys[0] and keys[0] == keys[1]:
        raise Refused(
            "both env files hold the same wallet: each bot cancels the wallet's "
            "open orders at start, so give each its own wallet"
        )
    if a.spike_port == a.official_port and a.spike_port != 0:  # 0: metrics off
        raise Refused("--spike-port and --official-port must differ")
    out = pathlib.Path(a.out)
    bots = {
        "spike": {
            "script": "spike_bot.py",
            "env": a.spike_env,
            "port": str(a.spike_port),
            "log": str(out / "spike_bot.log"),
            "state": str(out / "spike_state.json"),
        },
        "official": {
            "script": "official_spike_bot.py",
            "env": a.official_env,
            "port": str(a.official_port),
            "log": str(out / "official_spike_bot.log"),
            "state": str(out / "official_spike_state.json"),
        },
    }
    for b in bots.values():
        for path in (b["log"], b["state"]):
            if os.path.exists(sb.lock_path(path)) and not sb.file_lock_free(path):
                raise Refused(f"{path} is in use by a running bot")
    if (
        shutil.which("tmux")
        and subprocess.run(
            ["tmux", "has-session", "-t", a.session], capture_output=True, check=False
        ).returncode
        == 0
    ) and not a.replace:
        raise Refused(
            f"a tmux session named {a.session!r} exists (a run, or a finished one kept for its "
            f"panes): look at it with `tmux attach -t {a.session}`, or add --replace to stop "
            "its bots cleanly (Ctrl-C: orders cancelled) and start anew"
        )
    return bots


def end_session(session: str, wait_s: float = 60.0) -> None:
    """--replace: Ctrl-C to each bot window (a clean stop: orders cancelled, state saved),
    wait until no python runs in the session, then close it."""
    for w in ("spike", "official"):
        subprocess.run(["tmux", "send-keys", "-t", f"{session}:{w}", "C-c"], check=False)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        r = subprocess.run(
            ["tmux", "list-panes", "-s", "-t", session, "-F", "#{pane_current_command}"],
            capture_output=True, text=True, check=False,
        )
        if r.returncode != 0 or "python" not in r.stdout:
            break
        time.sleep(1)
    subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def bot_command(b: dict[str, str], a: argparse.Namespace, python: str) -> list[str]:
    cmd = [
        python,
        str(ROOT / b["script"]),
        "--env-file",
        b["env"],
        "--log-file",
        b["log"],
        "--state-file",
        b["state"],
        "--metrics-port",
        b["port"],
        "--duration",
        str(a.duration),
    ]
    if a.host:
        cmd += ["--host", a.host]
    if a.hermes_url:  # the oracle's stream, as a live run with a Pyth key reads it
        cmd += ["--hermes-url", a.hermes_url, "--price-source", "pyth"]
    if a.record:
        cmd += ["--record", str(pathlib.Path(a.out) / f"{pathlib.Path(b['script']).stem}.rec")]
    if a.paper:
        cmd += ["--paper"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spike-env", required=True, help="spike_bot's env file (its own wallet)")
    ap.add_argument(
        "--official-env", required=True, help="official_spike_bot's env file (another wallet)"
    )
    ap.add_argument(
        "--duration",
        type=sb.parse_duration,
        default=24 * 3600.0,
        help="how long both bots run, then stop cleanly: seconds, or 90m, 24h (default: 24h)",
    )
    ap.add_argument(
        "--out",
        default=time.strftime("compare-%Y%m%d-%H%M"),
        help="folder for both logs, state files, recordings and the final report and charts "
        "(default: compare-<date>-<time>)",
    )
    ap.add_argument(
        "--session", default="spike-compare", help="tmux session name (default: spike-compare)"
    )
    ap.add_argument("--host", default=None, help="API host for both (default: their env files)")
    ap.add_argument(
        "--hermes-url",
        default=None,
        help="stream the oracle price from this Hermes (both bots, price_source pyth); for a "
        "rehearsal on turbine_sim give the simulator's URL, which serves Hermes too",
    )
    ap.add_argument(
        "--record",
        action="store_true",
        help="each bot records what it receives to <out>/<bot>.rec, for `spike_bot.py replay`",
    )
    ap.add_argument(
        "--paper",
        action="store_true",
        help="both bots paper-trade (live data, orders on a local paper venue; no canary)",
    )
    ap.add_argument(
        "--replace",
        action="store_true",
        help="a session of that name exists: stop its bots cleanly, close it, start anew",
    )
    ap.add_argument(
        "--spike-port", type=int, default=9108, help="spike_bot's metrics port (0: off)"
    )
    ap.add_argument(
        "--official-port", type=int, default=9109, help="official_spike_bot's metrics port"
    )
    ap.add_argument(
        "--report-every",
        type=float,
        default=300.0,
        help="seconds between refreshes of the report window (default: 300; every 10 s until "
        "both logs can be read)",
    )
    ap.add_argument(
        "--python", default=sys.executable, help="the interpreter for the bots (default: this)"
    )
    ap.add_argument(
        "--check-only",
        action="store_true",
        help="run the checks and both preflights, start nothing",
    )
    a = ap.parse_args(argv)
    try:
        bots = plan(a)
    except Refused as e:
        print(f"compare_live: refused: {e}", file=sys.stderr)
        return 2
    if not shutil.which("tmux") and not a.check_only:
        print("compare_live: refused: tmux is not installed (apt install tmux)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    for name, b in bots.items():
        pre = [
            a.python,
            str(ROOT / b["script"]),
            "preflight",
            *([] if a.paper else ["--canary"]),  # one real order through the adapter, cancelled
            "--env-file",
            b["env"],
            "--log-file",
            b["log"],
            "--state-file",
            b["state"],
        ]
        if a.host:
            pre += ["--host", a.host]
        r = subprocess.run(pre, capture_output=True, text=True, check=False)
        print(f"-- preflight {name}\n{r.stdout.rstrip()}")
        if r.returncode != 0:
            print(f"compare_live: {name} preflight failed: nothing started", file=sys.stderr)
            return 3
    if a.check_only:
        return 0
    if a.replace:
        end_session(a.session)
    q = shlex.join
    logs = [bots["spike"]["log"], bots["official"]["log"]]
    done = {n: str(pathlib.Path(a.out) / f".{n}.done") for n in bots}
    for f in done.values():
        if os.path.exists(f):
            os.unlink(f)
    report = [a.python, str(ROOT / "spike_bot.py"), "report", *logs]
    final = [*report, "--plot", a.out]
    # check for the end every 2 s; refresh the report every --report-every seconds
    every = max(2, int(a.report_every))
    # until the first report reads both logs, every 10 s; then every --report-every
    watcher = (
        f"n=0; ok=0; while [ ! -e {shlex.quote(done['spike'])} ] || "
        f"[ ! -e {shlex.quote(done['official'])} ]; do "
        f"if [ $ok = 0 ] && [ $((n % 10)) -lt 2 ] || [ $((n % {every})) -lt 2 ]; then "
        f"out=$({q(report)} 2>/dev/null) && ok=1; clear; date; "
        "echo \"${out:-waiting for both logs}\" | head -n 46; fi; "  # its first screen
        "n=$((n + 2)); sleep 2; done; "
        f"{q(final)} | tee {shlex.quote(str(pathlib.Path(a.out) / 'report.txt'))}; "
        "echo; echo 'final report written; both bots have stopped'; read -r _"
    )
    first = True
    for name, b in bots.items():
        cmd = f"{q(bot_command(b, a, a.python))}; echo $? > {shlex.quote(done[name])}; read -r _"
        if first:
            subprocess.run(  # wide enough for the status line and the report
                ["tmux", "new-session", "-d", "-x", "200", "-y", "50", "-s", a.session,
                 "-n", name, cmd],
                check=True,
            )
            first = False
        else:
            subprocess.run(["tmux", "new-window", "-t", a.session, "-n", name, cmd], check=True)
    subprocess.run(["tmux", "new-window", "-t", a.session, "-n", "report", watcher], check=True)
    print(
        f"started tmux session {a.session!r} (windows: spike, official, report); "
        f"results in {a.out}/. Attach: tmux attach -t {a.session}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
