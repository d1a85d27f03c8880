#!/usr/bin/env python3
"""samlgate's end-to-end benchmark; started by bench/run.sh (which builds first).

Everything runs on 127.0.0.1, on free ports, in a temporary directory:

- upstream: nginx answering a fixed 1 KiB body with `X-Identity-Seen: present|absent`
  (whether it received samlgate's identity header), plus a fixed JSON answer to the
  panel's account lookup API and an echo of the identity header for the checks;
- nginx as a plain reverse proxy (proxy_pass with upstream keep-alive) in front of it;
- samlgate (target/release/samlgate, generated keys, 100 static tenants, JSON logs,
  RUST_LOG=warn) in front of the same upstream, with a session cookie minted by
  `examples/mint_session.rs`.

Scenarios (wrk, -t2): authenticated proxying through nginx and samlgate (-c16, -c64),
samlgate's unauthenticated browser navigation (302) and API (401) answers, logins at
/saml/acs with pre-minted unique signed responses (bench/mint_responses.rs, a
2048-bit RSA IdP key, the account lookup answered from cache; only 303s count),
samlgate's RSS idle / under load / at 1,000 connections, 10,000 idle keep-alive
connections, and the time from process start to /readyz 200 with 100 tenants.

Nothing here asserts a timing. It fails (exit 1) only when a component does not work:
a process does not start, an answer has the wrong status, a scenario serves nothing.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = Path(os.environ.get("BENCH_BIN_DIR", ROOT / "target" / "release")).resolve()
SAMLGATE = RELEASE / "samlgate"
MINT_SESSION = RELEASE / "examples" / "mint_session"
MINT_RESPONSES = RELEASE / "examples" / "bench_mint_responses"
ACS_LUA = ROOT / "bench" / "acs.lua"

PUBLIC_URL = "http://gate.bench.test"
COMPANY = "bench"
NAME_ID = "alice@bench.test"
ACCOUNT_ID = "u-bench-1"
TENANTS = 100
WRK_THREADS = 2
BODY = ("samlgate benchmark upstream body " * 40)[:1023] + "\n"  # 1 KiB
assert len(BODY) == 1024


class Failure(Exception):
    """A component did not work: the run fails."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if not found:
        raise Failure(f"{name} is not installed (scripts/test installs it)")
    return found


def wait_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)
    raise Failure(f"{what} did not listen on port {port} within {timeout} s")


def request(port: int, path: str, method: str = "GET", headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        headers_: dict[str, str] = {}
        for name, value in response.getheaders():
            name = name.lower()
            headers_[name] = f"{headers_[name]}, {value}" if name in headers_ else value
        return response.status, headers_, response.read()
    finally:
        conn.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of `pid` in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


class Processes:
    """Everything this run started; all stopped at the end, by their own ids."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list, log_path: Path, env: dict | None = None,
              **kwargs) -> subprocess.Popen:
        out = open(log_path, "ab")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, **kwargs)
        out.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.procs)):
            self.stop(proc, timeout=5)


# ---------------------------------------------------------------------------- wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise Failure(f"cannot parse wrk latency {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_wrk(output: str) -> dict:
    result: dict = {}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.M)
    if not rps or not total:
        raise Failure(f"cannot parse wrk output:\n{output}")
    result["requests_per_s"] = float(rps.group(1))
    result["requests"] = int(total.group(1))
    result["duration_ms"] = parse_duration_ms(total.group(2))
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        if match:
            result[f"p{pct}_ms"] = round(parse_duration_ms(match.group(1)), 3)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups())))
        if errors else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx_3xx"] = int(non2xx.group(1)) if non2xx else 0
    acs = re.search(r"ACS logins=(\d+) others=(\d+) exhausted=(\d+) duration_us=(\d+)", output)
    if acs:
        logins, others, exhausted, duration_us = map(int, acs.groups())
        result.update(logins=logins, refused=others, exhausted=bool(exhausted),
                      logins_per_s=round(logins / (duration_us / 1e6), 1))
    return result


def wrk(url: str, connections: int, seconds: float, headers: list[str] = (),
        script: list[str] | None = None) -> dict:
    args = [program("wrk"), f"-t{min(WRK_THREADS, connections)}", f"-c{connections}",
            f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for header in headers:
        args += ["-H", header]
    if script:
        args += ["-s", script[0]]
    args.append(url)
    if script:
        args += ["--"] + script[1:]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise Failure(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    result = parse_wrk(done.stdout)
    result["connections"] = connections
    return result


def median_of(runs: list[dict]) -> dict:
    keys = ("requests_per_s", "p50_ms", "p99_ms", "logins_per_s")
    out = {k: round(statistics.median(r[k] for r in runs), 3)
           for k in keys if all(k in r for r in runs)}
    out["connections"] = runs[0]["connections"]
    out["non_2xx_3xx"] = sum(r["non_2xx_3xx"] for r in runs)
    out["socket_errors"] = sum(sum(r["socket_errors"].values()) for r in runs)
    if any("exhausted" in r for r in runs):
        out["exhausted"] = any(r.get("exhausted") for r in runs)
    return out


# ----------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.smoke = args.smoke
        self.tmp = tmp
        self.procs = Processes()
        self.duration = args.duration or (1 if self.smoke else 10)
        self.repeats = args.repeats or (1 if self.smoke else 3)
        self.connections = [16, 64]
        self.logins_to_mint = args.login_responses or (1500 if self.smoke else 60000)
        self.idle_connections = args.idle_connections or 10000
        self.results: dict = {"scenarios": {}, "checks": {}}

    # ---- setup

    def setup(self) -> None:
        if not SAMLGATE.exists() or not MINT_SESSION.exists() or not MINT_RESPONSES.exists():
            raise Failure(f"binaries missing in {RELEASE}: run bench/run.sh (it builds them)")
        keys = self.tmp / "keys"
        self.run([SAMLGATE, "keys", "generate", "--out", keys], "samlgate keys generate")
        self.session_key = keys / "session.key"
        self.identity_key = keys / "identity.pem"
        self.idp_key, self.idp_cert = self.tmp / "idp-key.pem", self.tmp / "idp-cert.pem"
        self.run([program("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                  "-days", "2", "-subj", "/CN=samlgate bench IdP", "-keyout", self.idp_key,
                  "-out", self.idp_cert], "openssl req (IdP key)")
        self.issuer = "http://www.okta.com/bench000"
        self.upstream_port = free_port()
        self.nginx_port = free_port()
        self.start_upstream()
        self.start_nginx_proxy()
        self.config = self.tmp / "samlgate.toml"
        self.config.write_text(self.samlgate_toml())
        cookie = self.run([MINT_SESSION, "--secret-file", self.session_key,
                           "--company-id", COMPANY, "--account-id", ACCOUNT_ID,
                           "--name-id", NAME_ID], "mint_session").strip()
        if not cookie or "\n" in cookie:
            raise Failure(f"mint_session printed {cookie!r}")
        self.cookie = f"Cookie: samlgate_session={cookie}"

    def run(self, args: list, what: str) -> str:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
        if done.returncode != 0:
            raise Failure(f"{what} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def nginx_conf(self, name: str, http_body: str) -> Path:
        d = self.tmp / name
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text(f"""daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
{http_body}
}}
""")
        return conf

    def start_nginx(self, name: str, conf: Path, port: int) -> subprocess.Popen:
        nginx = program("nginx")
        d = conf.parent
        proc = self.procs.start(name, [nginx, "-p", d, "-c", conf, "-e", d / "error.log"],
                                d / "stdout.log")
        wait_port(port, proc, name)
        return proc

    def start_upstream(self) -> None:
        account = json.dumps({"account_id": ACCOUNT_ID, "email": NAME_ID,
                              "name": "Bench User", "roles": ["admin"]})
        conf = self.nginx_conf("upstream", f"""
  map $http_x_samlgate_assertion $identity_seen {{
    ""      absent;
    default present;
  }}
  server {{
    listen 127.0.0.1:{self.upstream_port} backlog=4096;
    default_type text/plain;
    location = /internal/samlgate/accounts {{
      default_type application/json;
      return 200 '{account}';
    }}
    location = /bench/echo-identity {{
      return 200 "$http_x_samlgate_assertion";
    }}
    location / {{
      add_header X-Identity-Seen $identity_seen always;
      return 200 "{BODY[:-1]}\\n";
    }}
  }}""")
        self.upstream = self.start_nginx("upstream nginx", conf, self.upstream_port)

    def start_nginx_proxy(self) -> None:
        conf = self.nginx_conf("proxy", f"""
  upstream panel {{
    server 127.0.0.1:{self.upstream_port};
    keepalive 256;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{self.nginx_port} backlog=4096;
    location / {{
      proxy_pass http://panel;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }}
  }}""")
        self.nginx = self.start_nginx("nginx reverse proxy", conf, self.nginx_port)

    def samlgate_toml(self) -> str:
        tenants = []
        for i in range(TENANTS):
            company = COMPANY if i == 0 else f"tenant{i:03d}"
            tenants.append(f"""
[[tenants]]
company_id = "{company}"
idp_sso_url = "https://bench{i:03d}.okta.test/app/bench/exk{i:03d}/sso/saml"
idp_issuer = "http://www.okta.com/bench{i:03d}"
idp_certificate_file = "{self.idp_cert}"
""")
        return f"""# Generated by bench/run.py.
public_url = "{PUBLIC_URL}"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:{self.upstream_port}"

[session]
secret_file = "{self.session_key}"

[identity]
key_file = "{self.identity_key}"
algorithm = "ES256"

[account_lookup]
url = "http://127.0.0.1:{self.upstream_port}/internal/samlgate/accounts"
cache_ttl = "24h"

[log]
format = "json"
{"".join(tenants)}"""

    def start_samlgate(self, name: str = "samlgate") -> tuple[subprocess.Popen, int, int, float]:
        """Starts samlgate on fresh ports; returns (process, port, admin port, seconds
        from spawning the process to the first /readyz 200)."""
        port, admin = free_port(), free_port()
        env = dict(os.environ, RUST_LOG="warn", SAMLGATE_LISTEN=f"127.0.0.1:{port}",
                   SAMLGATE_ADMIN_LISTEN=f"127.0.0.1:{admin}")
        started = time.perf_counter()
        proc = self.procs.start(name, [SAMLGATE, "run", "--config", self.config],
                                self.tmp / "samlgate.log", env=env)
        deadline = started + 20
        probe = b"GET /readyz HTTP/1.0\r\nHost: bench\r\n\r\n"
        while True:
            if proc.poll() is not None:
                raise Failure(f"samlgate exited with status {proc.returncode}; see "
                              f"{self.tmp / 'samlgate.log'}:\n{self.samlgate_log_tail()}")
            if time.perf_counter() > deadline:
                raise Failure("samlgate's /readyz did not answer 200 within 20 s")
            try:
                with socket.create_connection(("127.0.0.1", admin), timeout=1) as s:
                    s.sendall(probe)
                    answer = s.recv(64)
                    if answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200"):
                        ready = time.perf_counter() - started
                        break
            except OSError:
                pass
            time.sleep(0.001)
        wait_port(port, proc, name)
        return proc, port, admin, ready

    def samlgate_log_tail(self) -> str:
        try:
            return "".join((self.tmp / "samlgate.log").read_text().splitlines(True)[-20:])
        except OSError:
            return ""

    # ---- checks

    def check_answers(self, port: int) -> None:
        """Fails unless every component answers as the scenarios assume."""
        cookie = {"Cookie": self.cookie.split(": ", 1)[1]}
        status, headers, body = request(self.nginx_port, "/")
        if status != 200 or len(body) != 1024 or headers.get("x-identity-seen") != "absent":
            raise Failure(f"nginx proxy: {status} {headers} {len(body)} bytes")
        status, headers, body = request(port, "/", headers=cookie)
        if status != 200 or len(body) != 1024 or headers.get("x-identity-seen") != "present":
            raise Failure(f"samlgate with the minted session: {status} {headers} {body[:200]!r}")
        status, _, body = request(port, "/bench/echo-identity", headers=cookie)
        parts = body.decode(errors="replace").split(".")
        if status != 200 or len(parts) != 3:
            raise Failure(f"the upstream did not receive a JWS identity header: {status} {body!r}")
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        if claims.get("sub") != ACCOUNT_ID or claims.get("company_id") != COMPANY:
            raise Failure(f"unexpected identity claims {claims}")
        status, headers, _ = request(port, "/reports", headers={"Accept": "text/html"})
        if status != 302 or "/saml/login" not in headers.get("location", ""):
            raise Failure(f"unauthenticated navigation: {status} {headers}")
        status, _, body = request(port, "/api/v1/jobs", headers={"Accept": "application/json"})
        if status != 401:
            raise Failure(f"unauthenticated API call: {status} {body!r}")
        self.results["checks"]["answers"] = "ok"

    # ---- scenarios

    def compare_proxies(self, port: int) -> None:
        runs: dict[str, dict[int, list]] = {"nginx": {}, "samlgate": {}}
        targets = {"nginx": (self.nginx_port, []), "samlgate": (port, [self.cookie])}
        if not self.smoke:
            for name, (target_port, headers) in targets.items():
                log(f"warm-up {name}")
                wrk(f"http://127.0.0.1:{target_port}/", 64, 3, headers)
        for repeat in range(self.repeats):
            for c in self.connections:
                for name, (target_port, headers) in targets.items():
                    log(f"proxy {name} -c{c} run {repeat + 1}/{self.repeats}")
                    result = wrk(f"http://127.0.0.1:{target_port}/", c, self.duration, headers)
                    if result["requests"] == 0 or result["non_2xx_3xx"]:
                        raise Failure(f"{name} -c{c}: {result}")
                    runs[name].setdefault(c, []).append(result)
        scenario = {"description": "authenticated GET of a 1 KiB upstream body", "by_connections": {}}
        for c in self.connections:
            n, s = median_of(runs["nginx"][c]), median_of(runs["samlgate"][c])
            scenario["by_connections"][str(c)] = {
                "nginx": n, "samlgate": s,
                "ratio_requests_per_s": round(s["requests_per_s"] / n["requests_per_s"], 3),
                "p99_delta_ms": round(s["p99_ms"] - n["p99_ms"], 3),
                "runs": {"nginx": runs["nginx"][c], "samlgate": runs["samlgate"][c]},
            }
        self.results["scenarios"]["proxy"] = scenario

    def unauthenticated(self, port: int) -> None:
        for key, header, expect in (("navigation_302", "Accept: text/html", 302),
                                    ("api_401", "Accept: application/json", 401)):
            by_c = {}
            for c in self.connections:
                runs = []
                for repeat in range(self.repeats):
                    log(f"unauthenticated {expect} -c{c} run {repeat + 1}/{self.repeats}")
                    result = wrk(f"http://127.0.0.1:{port}/reports", c, self.duration, [header])
                    bad = result["non_2xx_3xx"] if expect == 302 else result["requests"] - result["non_2xx_3xx"]
                    if result["requests"] == 0 or bad > c:
                        raise Failure(f"unauthenticated {expect} -c{c}: {result}")
                    runs.append(result)
                by_c[str(c)] = dict(median_of(runs), runs=runs)
            self.results["scenarios"][key] = {
                "description": f"samlgate without a session: GET with '{header}' answered {expect}",
                "by_connections": by_c,
            }

    def rss_under_load(self, proc: subprocess.Popen, port: int) -> None:
        status = proc_status(proc.pid)
        self.results["rss"]["after_proxy_load_hwm_mib"] = mib(status["VmHWM"])
        self.results["rss"]["after_proxy_load_mib"] = mib(status["VmRSS"])
        seconds = 3 if self.smoke else 8
        log(f"1000 connections for {seconds} s")
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    samples.append(proc_status(proc.pid)["VmRSS"])
                except OSError:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = wrk(f"http://127.0.0.1:{port}/", 1000, seconds, [self.cookie])
        finally:
            stop.set()
            sampler.join()
        if result["requests"] == 0:
            raise Failure(f"-c1000: {result}")
        status = proc_status(proc.pid)
        self.results["rss"]["at_1000_connections_mib"] = mib(max(samples + [status["VmRSS"]]))
        self.results["rss"]["peak_hwm_mib"] = mib(status["VmHWM"])
        self.results["scenarios"]["proxy_1000_connections"] = {
            "description": "authenticated GET through samlgate with 1,000 connections",
            "by_connections": {"1000": dict(median_of([result]), runs=[result])},
        }

    def idle_keepalive(self, proc: subprocess.Popen, port: int) -> None:
        """Opens N connections, one authenticated request each, holds them idle, then
        sends a second request on every one."""
        wanted = self.idle_connections
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < wanted + 500:
            soft = wanted + 500 if hard == resource.RLIM_INFINITY else min(hard, wanted + 500)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # samlgate also holds its upstream connections and files; leave it some room.
        n = min(wanted, soft - 200, self.samlgate_nofile(proc.pid) - 500)
        if n < 100:
            raise Failure(f"open-files limit too low ({soft}); raise `ulimit -n`")
        if n < wanted:
            log(f"open-files limit: only {n} idle connections (raise `ulimit -n`)")
        request_bytes = (f"GET / HTTP/1.1\r\nHost: gate.bench.test\r\n{self.cookie}\r\n\r\n").encode()
        hold = 3 if self.smoke else 10
        log(f"{n} idle keep-alive connections (hold {hold} s)")
        socks: list[socket.socket] = []
        errors: dict[str, int] = {}

        def error(kind: str) -> None:
            errors[kind] = errors.get(kind, 0) + 1

        def exchange(s: socket.socket) -> bool:
            s.sendall(request_bytes)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                return False
            length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))
            while len(rest) < length:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                rest += chunk
            return True

        started = time.perf_counter()
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as e:
                error(f"connect: {e.strerror or e}")
                continue
            try:
                if exchange(s):
                    socks.append(s)
                else:
                    error("first request: bad answer")
                    s.close()
            except OSError as e:
                error(f"first request: {e.strerror or e}")
                s.close()
        opened = time.perf_counter() - started
        time.sleep(hold)
        rss_held = proc_status(proc.pid)["VmRSS"]
        alive = 0
        started = time.perf_counter()
        for s in socks:
            try:
                if exchange(s):
                    alive += 1
                else:
                    error("after holding: closed or bad answer")
            except OSError as e:
                error(f"after holding: {e.strerror or e}")
        second = time.perf_counter() - started
        for s in socks:
            # Reset instead of leaving 10,000 client sockets in TIME_WAIT.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.results["idle_keepalive"] = {
            "requested": wanted,
            "connections": n,
            "opened_with_one_request": len(socks),
            "alive_after_hold": alive,
            "hold_s": hold,
            "errors": errors,
            "open_seconds": round(opened, 2),
            "second_round_seconds": round(second, 2),
            "rss_held_mib": mib(rss_held),
        }
        if not socks:
            raise Failure(f"no idle connection could be opened: {errors}")

    @staticmethod
    def samlgate_nofile(pid: int) -> int:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    value = line.split()[3]
                    return 1 << 62 if value == "unlimited" else int(value)
        return 0

    def logins(self) -> None:
        count = self.logins_to_mint
        workers = max(1, min(os.cpu_count() or 1, 8))
        log(f"minting {count} signed responses ({workers} processes)")
        started = time.perf_counter()
        parts, procs = [], []
        for i in range(workers):
            share = count // workers + (1 if i < count % workers else 0)
            out = self.tmp / f"bodies-{i}.txt"
            parts.append(out)
            procs.append(subprocess.Popen(
                [str(MINT_RESPONSES), "--key", str(self.idp_key), "--cert", str(self.idp_cert),
                 "--issuer", self.issuer, "--public-url", PUBLIC_URL, "--name-id", NAME_ID,
                 "--count", str(share), "--out", str(out)], stderr=subprocess.PIPE))
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise Failure(f"bench_mint_responses failed: {err.decode()}")
        bodies = self.tmp / "bodies.txt"
        with open(bodies, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
                part.unlink()
        minted = time.perf_counter() - started
        self.results["logins_minting"] = {"responses": count, "seconds": round(minted, 1)}

        # One login by hand: the answer and the session it starts.
        proc, port, _, _ = self.start_samlgate("samlgate (logins)")
        try:
            first = bodies.open("rb").readline().strip()
            status, headers, _ = request(port, "/saml/acs", "POST",
                                         {"Content-Type": "application/x-www-form-urlencoded"}, first)
            if status != 303 or "samlgate_session=" not in headers.get("set-cookie", ""):
                raise Failure(f"a minted response did not log in: {status} {headers}\n"
                              f"{self.samlgate_log_tail()}")
            status, _, _ = request(port, "/saml/acs", "POST",
                                   {"Content-Type": "application/x-www-form-urlencoded"}, first)
            if status != 403:
                raise Failure(f"a replayed response was answered {status}, not 403")
        finally:
            self.procs.stop(proc)

        by_c = {}
        for c in self.connections:
            runs = []
            for repeat in range(self.repeats):
                # A fresh process per run: its replay cache has seen none of the bodies.
                proc, port, _, _ = self.start_samlgate("samlgate (logins)")
                try:
                    log(f"logins -c{c} run {repeat + 1}/{self.repeats}")
                    result = wrk(f"http://127.0.0.1:{port}/saml/acs", c, self.duration,
                                 script=[str(ACS_LUA), str(bodies), str(WRK_THREADS)])
                    result["peak_rss_hwm_mib"] = mib(proc_status(proc.pid)["VmHWM"])
                finally:
                    self.procs.stop(proc)
                if "logins" not in result or result["logins"] == 0:
                    raise Failure(f"no login succeeded at /saml/acs -c{c}: {result}\n"
                                  f"{self.samlgate_log_tail()}")
                runs.append(result)
            by_c[str(c)] = dict(median_of(runs), runs=runs)
        self.results["scenarios"]["logins"] = {
            "description": "POST /saml/acs with unique signed responses (RSA-2048, "
                           "account lookup cached); logins/s counts 303 answers only",
            "by_connections": by_c,
        }
        bodies.unlink()

    def ready_time(self) -> None:
        times = []
        for i in range(1 if self.smoke else 5):
            proc, _, _, ready = self.start_samlgate("samlgate (ready time)")
            self.procs.stop(proc)
            times.append(round(ready * 1e3, 1))
        self.results["ready"] = {"tenants": TENANTS, "runs_ms": times,
                                 "median_ms": statistics.median(times)}

    # ---- all of it

    def execute(self) -> dict:
        started = time.perf_counter()
        self.results["meta"] = meta(self)
        self.setup()
        log("checking the ready time with 100 tenants")
        self.ready_time()
        proc, port, _, _ = self.start_samlgate()
        time.sleep(0.5)
        idle = proc_status(proc.pid)
        self.results["rss"] = {"idle_after_start_mib": mib(idle["VmRSS"])}
        self.check_answers(port)
        self.compare_proxies(port)
        self.unauthenticated(port)
        self.rss_under_load(proc, port)
        time.sleep(2)
        self.results["rss"]["idle_after_load_mib"] = mib(proc_status(proc.pid)["VmRSS"])
        self.idle_keepalive(proc, port)
        if proc.poll() is not None:
            raise Failure(f"samlgate died during the run:\n{self.samlgate_log_tail()}")
        self.procs.stop(proc)
        self.logins()
        self.results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
        return self.results


def first_line(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
        return (done.stdout + done.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def meta(bench: Bench) -> dict:
    cpu = "unknown"
    memory_kib = 0
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    rev = first_line(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "mode": "smoke" if bench.smoke else "full",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": {"duration_s": bench.duration, "repeats": bench.repeats,
                     "wrk_threads": WRK_THREADS, "connections": bench.connections,
                     "login_responses": bench.logins_to_mint,
                     "idle_connections": bench.idle_connections, "tenants": TENANTS},
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "memory_gib": round(memory_kib / 1024 / 1024, 1),
            "kernel": platform.release(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            "samlgate": rev + ("-dirty" if dirty else ""),
            "nginx": first_line([program("nginx"), "-v"]).replace("nginx version: ", ""),
            "wrk": " ".join(first_line([program("wrk"), "-v"]).split()[:3]),
            "rustc": first_line(["rustc", "-V"]),
        },
    }


def summary(results: dict) -> str:
    lines = []
    proxy = results["scenarios"].get("proxy", {}).get("by_connections", {})
    for c, row in proxy.items():
        n, s = row["nginx"], row["samlgate"]
        lines.append(f"proxy -c{c}: nginx {n['requests_per_s']:.0f} req/s p50 {n['p50_ms']} ms "
                     f"p99 {n['p99_ms']} ms | samlgate {s['requests_per_s']:.0f} req/s "
                     f"p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms | ratio {row['ratio_requests_per_s']}")
    for key in ("navigation_302", "api_401", "proxy_1000_connections"):
        for c, row in results["scenarios"].get(key, {}).get("by_connections", {}).items():
            lines.append(f"{key} -c{c}: {row['requests_per_s']:.0f} req/s p50 {row['p50_ms']} ms "
                         f"p99 {row['p99_ms']} ms")
    for c, row in results["scenarios"].get("logins", {}).get("by_connections", {}).items():
        lines.append(f"logins -c{c}: {row.get('logins_per_s')} logins/s p50 {row['p50_ms']} ms "
                     f"p99 {row['p99_ms']} ms{' (responses exhausted: lower bound)' if row.get('exhausted') else ''}")
    lines.append(f"rss: {json.dumps(results.get('rss', {}))}")
    lines.append(f"idle keep-alive: {json.dumps(results.get('idle_keepalive', {}))}")
    lines.append(f"ready with {TENANTS} tenants: {results.get('ready', {}).get('median_ms')} ms")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="1 s runs, 1 repeat, few responses: checks every component works")
    parser.add_argument("--out", type=Path, help="results file (default: bench/results.json; "
                        "with --smoke target/bench/results-smoke.json)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, help="runs per measurement (median)")
    parser.add_argument("--login-responses", type=int, help="signed responses to pre-mint")
    parser.add_argument("--idle-connections", type=int, help="idle keep-alive connections (10000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    out = args.out or (ROOT / "target" / "bench" / "results-smoke.json" if args.smoke
                       else ROOT / "bench" / "results.json")
    tmp = Path(tempfile.mkdtemp(prefix="samlgate-bench-"))
    bench = Bench(args, tmp)
    started = time.perf_counter()

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        results = bench.execute()
    except Failure as failure:
        log(f"FAILED: {failure}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.procs.stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    log(f"done in {time.perf_counter() - started:.0f} s; results in {out}")
    if results["meta"]["mode"] == "smoke":
        log("smoke run: the numbers only show that everything works; they measure nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
