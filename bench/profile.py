#!/usr/bin/env python3
"""Profiles samlgate's authenticated proxy path; started by bench/profile.sh.

Same setup as bench/run.py (nginx upstream, minted session cookie, 100 tenants), then:

- callgrind: samlgate runs under `valgrind --tool=callgrind`; after a warm-up the
  counters are zeroed, wrk sends authenticated requests for a while, and the
  instructions executed are divided by the requests answered. Instruction counts
  do not depend on what else the machine is doing, so this number compares builds
  where requests/s on a shared 2-core machine cannot. samlgate's functions and a few
  library entry points, with their instructions per request (inclusive), go into
  bench/profile.json.
- perf (when `perf record` works here and inferno is installed): samples samlgate's
  threads, kernel included, under wrk -c64, and draws bench/flamegraph-proxy.svg.

bench/report puts the results into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the shared setup)

OUT = run.ROOT / "bench" / "profile.json"
# Library entry points whose inclusive cost bench/report shows beside samlgate's own.
LIBRARY_FRAMES = (
    "hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch",
    "hyper::proto::h1::io::Buffered<T,B>::parse",
    "hyper_util::client::legacy::client::Client<C,B>::send_request",
    "tokio::runtime::io::registration::Registration::poll_io",
    "malloc",
    "free",
)
FLAMEGRAPH = run.ROOT / "bench" / "flamegraph-proxy.svg"


def wait_ready(admin: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise run.Failure(f"samlgate exited with status {proc.returncode}")
        try:
            status, _, _ = run.request(admin, "/readyz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise run.Failure("samlgate under valgrind did not become ready")


def annotate(path: Path, count: int) -> list[dict]:
    """The functions with the most instructions, inclusive of their callees."""
    args = ["callgrind_annotate", "--inclusive=yes", str(path)]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in text.splitlines():
        match = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if not match or "PROGRAM TOTALS" in line:
            continue
        # "file:function [object]" -> function
        name = re.sub(r"\s*\[[^\]]*\]$", "", match.group(2))
        name = re.sub(r" \([\d,]+x\)$", "", name)
        name = name.split(":", 1)[1] if ":" in name and not name.startswith("???") else name
        rows.append({"function": name[:160], "instructions": int(match.group(1).replace(",", ""))})
    return rows[:count]


def callgrind(bench: run.Bench, seconds: int) -> dict:
    port, admin = run.free_port(), run.free_port()
    out = bench.tmp / "callgrind.out"
    env = dict(os.environ, RUST_LOG="warn", SAMLGATE_LISTEN=f"127.0.0.1:{port}",
               SAMLGATE_ADMIN_LISTEN=f"127.0.0.1:{admin}")
    proc = bench.procs.start("samlgate (callgrind)",
                             ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              run.SAMLGATE, "run", "--config", bench.config],
                             bench.tmp / "callgrind.log", env=env)
    wait_ready(admin, proc)
    url = f"http://127.0.0.1:{port}/"
    run.log("callgrind: warm-up")
    run.wrk(url, 8, 3, [bench.cookie])
    subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True,
                   capture_output=True)
    run.log(f"callgrind: {seconds} s of authenticated requests")
    result = run.wrk(url, 8, seconds, [bench.cookie])
    subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True,
                   capture_output=True)
    bench.procs.stop(proc, timeout=60)
    dumps = sorted(bench.tmp.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise run.Failure("callgrind wrote no dump")
    dump = dumps[-1]
    totals = re.search(r"^summary:\s+(\d+)", dump.read_text(errors="replace"), re.M) or \
        re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
    if not totals or result["requests"] == 0:
        raise run.Failure("no instruction total or no requests in the callgrind run")
    instructions = int(totals.group(1))
    requests = result["requests"]
    # Inlined code is listed once per source file; keep each function's largest row.
    inclusive: dict[str, int] = {}
    for row in annotate(dump, 2000):
        name = row["function"]
        inclusive[name] = max(inclusive.get(name, 0), row["instructions"])

    def rows(names: list[str]) -> list[dict]:
        return [{"function": n, "per_request": round(inclusive[n] / requests)} for n in names]

    own = sorted((n for n in inclusive if n.startswith("samlgate::")),
                 key=lambda n: -inclusive[n])
    libraries = sorted((n for n in inclusive if any(n.startswith(p) for p in LIBRARY_FRAMES)),
                       key=lambda n: -inclusive[n])
    return {
        "requests": requests,
        "instructions": instructions,
        "instructions_per_request": round(instructions / requests),
        "samlgate_inclusive": rows(own[:14]),
        "library_inclusive": rows(libraries),
    }


def flamegraph(bench: run.Bench, seconds: int) -> str:
    if not shutil.which("perf") or not shutil.which("inferno-collapse-perf"):
        return "skipped: needs perf (linux-perf) and inferno (cargo install inferno)"
    proc, port, _, _ = bench.start_samlgate("samlgate (perf)")
    data = bench.tmp / "perf.data"
    load = subprocess.Popen([run.program("wrk"), "-t2", "-c64", f"-d{seconds + 4}s",
                             "-H", bench.cookie, f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.DEVNULL)
    time.sleep(2)
    record = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g",
                             "--call-graph", "dwarf,16384", "-p", str(proc.pid), "-o", str(data),
                             "--", "sleep", str(seconds)], capture_output=True, text=True)
    load.wait()
    bench.procs.stop(proc)
    if record.returncode != 0:
        return f"skipped: perf record failed: {record.stderr.strip()[:200]}"
    script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True)
    folded = subprocess.run(["inferno-collapse-perf"], input=script.stdout, capture_output=True)
    svg = subprocess.run(["inferno-flamegraph", "--minwidth", "0.2", "--title",
                          "samlgate, authenticated GET under wrk -c64 (perf, cpu-clock)"],
                         input=folded.stdout, capture_output=True)
    if svg.returncode != 0 or not svg.stdout:
        return "skipped: inferno failed"
    FLAMEGRAPH.write_bytes(svg.stdout)
    return f"written: bench/{FLAMEGRAPH.name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per profile")
    args = parser.parse_args()
    for program in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(program):
            print(f"bench/profile.py: missing {program} (apt-get install valgrind)",
                  file=sys.stderr)
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="samlgate-profile-"))
    bench = run.Bench(argparse.Namespace(smoke=False, duration=None, repeats=None,
                                         login_responses=None, idle_connections=None,
                                         keep=False, out=None), tmp)
    try:
        bench.setup()
        results = {"meta": run.meta(bench), "callgrind": callgrind(bench, args.seconds),
                   "flamegraph": flamegraph(bench, args.seconds)}
    except run.Failure as failure:
        print(f"bench/profile.py: {failure}", file=sys.stderr)
        return 1
    finally:
        bench.procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    results["meta"]["date"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{results['callgrind']['instructions_per_request']:,} instructions per proxied "
          f"request; flamegraph {results['flamegraph']}; wrote {OUT.relative_to(run.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
