#!/usr/bin/env python3
"""Load benchmark: the same hello component on Outpost and on `wasmtime serve`,
plus a native hyper hello server as the ceiling, in one invocation; then the
proxy scenario: the same plain wasi:http component (tests/fixtures/fetcher)
fetching a local origin (native-hello with a 1 KiB body) for each request,
on Outpost and on `wasmtime serve`, with nginx `proxy_pass` (upstream
keepalive) as the native ceiling; then the cache scenario: a 1 KiB object
with `Cache-Control: max-age=3600` served from cache by Outpost (the
examples/cache-proxy component with `[cache] enabled = true`, whose hits are
answered before any instance exists), Varnish and nginx `proxy_cache`, next
to native-hello answering the same 1 KiB itself; and the revalidation path
(`max-age=0` with an ETag: every request revalidated with the origin, which
answers 304) on Outpost and nginx (`proxy_cache_revalidate on`); then the
limit scenario: every request refused with 429 by an `[[edge]]` rate limit,
and with 401 by an `[[edge]]` JWT rule (no token), before any instance
exists, against native-hello answering 200 itself.

    python3 benches/load.py                 # full run (about 12 minutes)
    python3 benches/load.py --duration 5 --runs 1 --connections 64
    python3 benches/load.py --scenarios proxy --runs 1
    python3 benches/load.py --scenarios cache --runs 3
    python3 benches/load.py --scenarios limit --runs 3 --servers native,outpost

Each server runs pinned to CPU 0, the load generator to CPU 1. HTTP/1.1 load
comes from wrk (1, 64 and 256 connections), HTTP/2 (h2c prior knowledge) from
h2load, for Outpost and native. In the proxy scenario the origin shares CPU 1
with wrk (64 connections); besides req/s and latency it reports how many
connections the origin accepted and how many sockets were left in TIME_WAIT.
Every number is the median of --runs runs.
Missing tools are installed: wrk and h2load from Debian, wasmtime-cli from
crates.io at the wasmtime version the runtime uses (a release build of about
10 minutes, once, into target/bench-tools).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "target" / "bench-tools"
WASMTIME_VERSION = "48.0.8"
SERVER_CPU = "0"
LOAD_CPU = "1"
HELLO_BODY = b"Hello from Outpost!\n"


def run(cmd, **kwargs):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def ensure_tools(wasmtime=True):
    """Installs wrk, h2load and taskset if missing, and wasmtime-cli unless
    `wasmtime` is false; returns the wasmtime binary's path."""
    tools = [("wrk", "wrk"), ("h2load", "nghttp2-client"), ("taskset", "util-linux"),
             ("ss", "iproute2"), ("nginx", "nginx"), ("varnishd", "varnish")]
    missing = [pkg for tool, pkg in tools
               if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *missing])
    if not wasmtime:
        return None
    wasmtime = TOOLS / "bin" / "wasmtime"
    version = ""
    if wasmtime.exists():
        version = subprocess.run([wasmtime, "--version"], capture_output=True, text=True).stdout
    if WASMTIME_VERSION not in version:
        run(["cargo", "install", "wasmtime-cli", "--version", WASMTIME_VERSION, "--locked",
             "--root", TOOLS])
    return wasmtime


def build():
    """Builds outpost, native-hello, and the hello, fetcher and cache-proxy
    components; returns the components' paths."""
    run(["cargo", "build", "--release", "-p", "outpost", "-p", "outpost-benches",
         "--bin", "outpost", "--bin", "native-hello"], cwd=ROOT)
    run(["cargo", "build", "--release", "--target", "wasm32-wasip2",
         "--manifest-path", ROOT / "examples" / "Cargo.toml", "-p", "hello", "-p", "cache-proxy"])
    run(["cargo", "build", "--release", "--target", "wasm32-wasip2",
         "--manifest-path", ROOT / "tests" / "fixtures" / "Cargo.toml", "-p", "fetcher"])
    examples = ROOT / "examples" / "target" / "wasm32-wasip2" / "release"
    return (examples / "hello.wasm",
            ROOT / "tests" / "fixtures" / "target" / "wasm32-wasip2" / "release" / "fetcher.wasm",
            examples / "cache_proxy.wasm")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process pinned to SERVER_CPU, answering on `port`."""

    def __init__(self, name, cmd, port, env=None, cpus=SERVER_CPU, host="bench", timeout=120,
                 path="/"):
        self.name = name
        self.port = port
        self.path = path
        self.log = open(ROOT / "target" / f"bench-{name}.log", "w")
        self.proc = subprocess.Popen(["taskset", "-c", cpus, *cmd], stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited early; see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                    reply = b""
                    while chunk := s.recv(65536):
                        reply += chunk
                if HELLO_BODY in reply:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{name} did not answer on port {port}; see {self.log.name}")

    def url(self):
        return f"http://127.0.0.1:{self.port}{self.path}"

    def rss_mib(self):
        """The server's RSS, its child processes' included (Varnish serves
        from a child of its manager). taskset execs the server, so the pid
        is the server's."""
        def rss_kib(pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                return 0
            own = next((int(line.split()[1]) for line in status.splitlines()
                        if line.startswith("VmRSS:")), 0)
            return own + sum(rss_kib(child) for child in children)
        return rss_kib(self.proc.pid) / 1024

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wrk(server, connections, duration, hosts=None):
    """One wrk run; returns (req/s, p50 µs, p99 µs, p99.9 µs, errors, RSS under load).
    With `hosts`, requests rotate over app-0.bench .. app-(hosts-1).bench."""
    env = {**os.environ, **({"WRK_HOSTS": str(hosts)} if hosts else {})}
    proc = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
         "-s", ROOT / "benches" / "wrk-report.lua", server.url()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(duration / 2)
    rss = server.rss_mib()
    out, _ = proc.communicate()
    m = re.search(r"RESULT requests=(\d+) seconds=([\d.]+) p50=(\d+) p99=(\d+) p999=(\d+) errors=(\d+)", out)
    if not m:
        raise SystemExit(f"wrk gave no result:\n{out}")
    requests, seconds, p50, p99, p999, errors = m.groups()
    return dict(rps=int(requests) / float(seconds), p50=int(p50), p99=int(p99), p999=int(p999),
                errors=int(errors), rss=rss)


def h2load(server, connections, duration):
    """One h2load run (h2c prior knowledge, 10 streams per connection)."""
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "h2load", f"-c{connections}", "-m10", f"-D{duration}",
         server.url()], capture_output=True, text=True).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if not (rps and done and mean):
        raise SystemExit(f"h2load gave no result:\n{out}")
    return dict(rps=float(rps.group(1)), mean=mean.group(1),
                errors=int(done.group(3)) + int(done.group(4)))


def median(results, key):
    return statistics.median(r[key] for r in results)


def nginx(name, port, origin_port, http="", location=""):
    """nginx on one worker, pinned to SERVER_CPU, proxying to the origin with
    upstream keepalive; `http` and `location` add directives."""
    prefix = ROOT / "target" / f"bench-{name}"
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(f"""{user}worker_processes 1;
daemon off;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {http.format(prefix=prefix)}
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {location}
    }}
  }}
}}
""")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return Server(name, [binary, "-p", prefix, "-c", prefix / "nginx.conf"], port)


def nginx_proxy(port, origin_port):
    """nginx `proxy_pass`: the native ceiling of the proxy scenario."""
    return nginx("nginx", port, origin_port)


def nginx_cache(port, origin_port):
    """nginx serving the origin's responses from its cache (`proxy_cache`,
    revalidating stale ones with conditional requests)."""
    return nginx("nginx-cache", port, origin_port,
                 http="proxy_cache_path {prefix}/cache levels=1:2 keys_zone=objects:10m max_size=256m;",
                 location="proxy_cache objects; proxy_cache_revalidate on;")


def varnish(port, origin_port):
    """Varnish with its default VCL (which honours the origin's
    Cache-Control), every thread pinned to SERVER_CPU, 256 MiB of malloc
    storage."""
    workdir = ROOT / "target" / "bench-varnish"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    vcl = workdir / "default.vcl"
    vcl.write_text(f'vcl 4.1;\nbackend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}\n')
    varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
    jail = ["-j", "none"] if os.geteuid() == 0 else []
    return Server("varnish", [varnishd, "-F", *jail, "-a", f"127.0.0.1:{port}", "-f", vcl,
                              "-n", workdir, "-s", "malloc,256m", "-p", "thread_pools=1"], port)


def outpost_cache_proxy(args, port, origin_port, proxy_wasm, release, cache):
    """Outpost serving examples/cache-proxy in front of the origin, its
    cache enabled."""
    config = ROOT / "target" / "bench-cache-node.toml"
    config.write_text(f"""[outbound]
allow_private = ["127.0.0.0/8"]
[apps.proxy]
component = "{proxy_wasm}"
routes = ["/"]
[apps.proxy.backends.origin]
endpoints = ["http://127.0.0.1:{origin_port}"]
[apps.proxy.cache]
enabled = true
""")
    return Server("outpost", [args.outpost_bin or release / "outpost", "serve", "--config", config,
                              "--listen", f"127.0.0.1:{port}", "--cache-dir", cache,
                              *args.outpost_args.split()], port, env={"RUST_LOG": "warn"})


def cache_scenario(args, servers, proxy_wasm, release, cache):
    """Hits of a 1 KiB object, then its revalidation; returns results by
    path ("hit", "revalidate") and server."""
    results = {"hit": {}, "revalidate": {}}
    for path, origin_flags, names in (
        ("hit", ["--cache-control", "max-age=3600"], ["native", "outpost", "varnish", "nginx"]),
        ("revalidate", ["--cache-control", "max-age=0", "--etag"], ["outpost", "nginx"]),
    ):
        origin_port = free_port()
        origin = Server("origin", [release / "native-hello", "--listen", f"127.0.0.1:{origin_port}",
                                   "--body-bytes", "1024", *origin_flags], origin_port, cpus=LOAD_CPU)
        try:
            for name in names:
                if name not in servers:
                    continue
                port = free_port()
                if name == "native":
                    server = Server(name, [release / "native-hello", "--listen", f"127.0.0.1:{port}",
                                           "--body-bytes", "1024"], port)
                elif name == "outpost":
                    server = outpost_cache_proxy(args, port, origin_port, proxy_wasm, release, cache)
                elif name == "varnish":
                    server = varnish(port, origin_port)
                else:
                    server = nginx_cache(port, origin_port)
                try:
                    time.sleep(1)
                    before = origin_count(origin, "requests")
                    runs = [wrk(server, 64, args.duration) for _ in range(args.runs)]
                    entry = {k: median(runs, k) for k in ("rps", "p50", "p99", "p999", "errors", "rss")}
                    entry["origin_requests"] = origin_count(origin, "requests") - before
                    results[path][name] = entry
                finally:
                    server.stop()
        finally:
            origin.stop()
    return results


def print_cache(results, args):
    for path, title in (("hit", "cache hit: a 1 KiB object (max-age=3600) from cache; native answers it itself"),
                        ("revalidate", "revalidation: max-age=0 + ETag, the origin answers 304 to each request")):
        rows = results[path]
        if not rows:
            continue
        print()
        print(f"{title}, wrk 64 connections, {args.duration}s x {args.runs} runs (medians)")
        print(f"{'server':<9}{'req/s':>11}{'p50 µs':>9}{'p99 µs':>9}{'errors':>8}{'RSS load':>10}{'origin reqs':>13}")
        for name, r in rows.items():
            print(f"{name:<9}{r['rps']:>11.0f}{r['p50']:>9.0f}{r['p99']:>9.0f}{r['errors']:>8.0f}"
                  f"{r['rss']:>9.1f}M{r['origin_requests']:>13}")
        if "outpost" in rows:
            o = rows["outpost"]
            for name in ("native", "varnish", "nginx"):
                if name in rows:
                    print(f"Outpost/{name} {o['rps'] / rows[name]['rps']:.2f}x req/s "
                          f"(p99 {o['p99']:.0f} vs {rows[name]['p99']:.0f} µs)")


def outpost_limited(args, port, hello, release, cache, refusal):
    """Outpost serving the hello component behind an `[[edge]]` rule: a
    rate limit of one request a day (`refusal` 429: the readiness probe
    takes it, wrk gets 429s), or a JWT policy over `/api` (401: wrk sends
    no token)."""
    config = ROOT / "target" / f"bench-{refusal}-node.toml"
    if refusal == 429:
        rule = """[apps.hello.rate_limits.all]
requests = 1
period_s = 86400
burst = 1
[[apps.hello.edge]]
path = "/"
rate_limit = "all"
"""
    else:
        pem = (ROOT / "runtime/host/src/jwt/testdata/ec.pub").read_text()
        rule = f"""[apps.hello.jwt.users]
algorithms = ["ES256"]
keys = [{{ alg = "ES256", pem = {json.dumps(pem)} }}]
[[apps.hello.edge]]
path = "/api"
jwt = "users"
"""
    config.write_text(f"""[apps.hello]
component = "{hello}"
routes = ["/"]
{rule}""")
    return Server("outpost", [args.outpost_bin or release / "outpost", "serve", "--config", config,
                              "--listen", f"127.0.0.1:{port}", "--cache-dir", cache,
                              *args.outpost_args.split()], port, env={"RUST_LOG": "warn"})


def limit_scenario(args, servers, hello, release, cache):
    """Declarative 429s and 401s on Outpost against native-hello's 200s."""
    results = {}
    for name in ("native", "outpost-429", "outpost-401"):
        if name.split("-")[0] not in servers:
            continue
        port = free_port()
        if name == "native":
            server = Server(name, [release / "native-hello", "--listen", f"127.0.0.1:{port}"], port)
        else:
            server = outpost_limited(args, port, hello, release, cache, int(name.split("-")[1]))
            if name == "outpost-401":
                # Ready once `/` answers; the load goes to the rule's `/api`.
                server.path = "/api"
        try:
            time.sleep(1)
            runs = [wrk(server, 64, args.duration) for _ in range(args.runs)]
            results[name] = {k: median(runs, k) for k in ("rps", "p50", "p99", "p999", "errors", "rss")}
        finally:
            server.stop()
    return results


def print_limit(results, args):
    print()
    print(f"limit: every request refused by an [[edge]] rule, 429 (rate limit) or 401 (JWT, no token); "
          f"native answers 200, wrk 64 connections, {args.duration}s x {args.runs} runs (medians)")
    print(f"{'server':<12}{'req/s':>11}{'p50 µs':>9}{'p99 µs':>9}{'non-2xx':>9}")
    for name, r in results.items():
        print(f"{name:<12}{r['rps']:>11.0f}{r['p50']:>9.0f}{r['p99']:>9.0f}{r['errors']:>9.0f}")
    for refusal in ("429", "401"):
        if f"outpost-{refusal}" in results and "native" in results:
            o, n = results[f"outpost-{refusal}"], results["native"]
            print(f"Outpost {refusal} / native 200 {o['rps'] / n['rps']:.2f}x req/s "
                  f"(p99 {o['p99']:.0f} vs {n['p99']:.0f} µs)")


def origin_count(origin, what):
    """The origin's count of `what`: "accepted" connections or answered
    "requests"."""
    with socket.create_connection(("127.0.0.1", origin.port), timeout=5) as s:
        s.sendall(f"GET /{what} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return int(reply.split(b"\r\n\r\n", 1)[1])


def time_wait(port):
    """Sockets to or from `port` in TIME_WAIT now."""
    out = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if f":{port} " in line + " ")


def proxy_scenario(args, servers, wasmtime, fetcher, release, cache):
    """Each proxy in turn in front of one origin; returns results by name."""
    origin_port = free_port()
    origin = Server("origin", [release / "native-hello", "--listen", f"127.0.0.1:{origin_port}",
                               "--body-bytes", "1024"], origin_port, cpus=LOAD_CPU)
    path = f"/?url=http://127.0.0.1:{origin_port}/"
    results = {}
    try:
        for name in servers:
            port = free_port()
            if name == "outpost":
                server = Server(name, [args.outpost_bin or release / "outpost", "serve", fetcher,
                                       "--listen", f"127.0.0.1:{port}", "--cache-dir", cache,
                                       "--allow-outbound", f"http://127.0.0.1:{origin_port}",
                                       "--allow-private", "127.0.0.0/8",
                                       *args.outpost_args.split()],
                                port, env={"RUST_LOG": "warn"}, path=path)
            elif name == "serve":
                server = Server(name, [wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", fetcher],
                                port, path=path)
            elif name == "nginx":
                server = nginx_proxy(port, origin_port)
            else:
                continue
            try:
                time.sleep(1)
                before = origin_count(origin, "accepted")
                runs = [wrk(server, 64, args.duration) for _ in range(args.runs)]
                entry = {k: median(runs, k) for k in ("rps", "p50", "p99", "p999", "errors", "rss")}
                # The readiness probe and /accepted itself count one each.
                entry["origin_connections"] = origin_count(origin, "accepted") - before - 1
                entry["time_wait"] = time_wait(origin_port)
                results[name] = entry
            finally:
                server.stop()
            # Let TIME_WAIT sockets of one proxy not count against the next.
            time.sleep(2)
    finally:
        origin.stop()
    return results


def print_proxy(results, args):
    print()
    print(f"proxy scenario: fetcher component (or nginx proxy_pass) in front of a 1 KiB origin, "
          f"wrk 64 connections, {args.duration}s x {args.runs} runs (medians)")
    print(f"{'server':<9}{'req/s':>11}{'p50 µs':>9}{'p99 µs':>9}{'errors':>8}{'origin conns':>14}{'TIME_WAIT':>11}")
    for name, r in results.items():
        print(f"{name:<9}{r['rps']:>11.0f}{r['p50']:>9.0f}{r['p99']:>9.0f}{r['errors']:>8.0f}"
              f"{r['origin_connections']:>14}{r['time_wait']:>11}")
    if "outpost" in results:
        o = results["outpost"]
        for name in ("serve", "nginx"):
            if name in results:
                print(f"Outpost/{name} {o['rps'] / results[name]['rps']:.2f}x req/s "
                      f"(p99 {o['p99']:.0f} vs {results[name]['p99']:.0f} µs)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration; medians are reported (default 3)")
    parser.add_argument("--connections", default="1,64,256", help="wrk connection counts (default 1,64,256)")
    parser.add_argument("--servers", default="native,outpost,serve,nginx,varnish",
                        help="which servers (default all; nginx only proxies and caches, varnish only caches)")
    parser.add_argument("--scenarios", default="hello,proxy,cache,limit",
                        help="any of hello, proxy, cache, limit (default all)")
    parser.add_argument("--outpost-args", default="", help="extra `outpost serve` flags, e.g. --workers 1")
    parser.add_argument("--outpost-bin", type=Path, help="another outpost binary, to compare builds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    servers = args.servers.split(",")
    scenarios = args.scenarios.split(",")

    wasmtime = ensure_tools() if "serve" in servers else None
    if wasmtime is None:
        ensure_tools(wasmtime=False)
    hello, fetcher, proxy_wasm = build()
    release = ROOT / "target" / "release"
    cache = ROOT / "target" / "bench-cache"

    def start(name):
        port = free_port()
        if name == "native":
            return Server(name, [release / "native-hello", "--listen", f"127.0.0.1:{port}"], port)
        if name == "outpost":
            return Server(name, [args.outpost_bin or release / "outpost", "serve", hello, "--listen", f"127.0.0.1:{port}",
                                 "--cache-dir", cache, *args.outpost_args.split()], port,
                          env={"RUST_LOG": "warn"})
        if name == "serve":
            return Server(name, [wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", hello], port)
        raise SystemExit(f"unknown server {name}")

    results = {}
    for name in servers if "hello" in scenarios else []:
        if name in ("nginx", "varnish"):
            continue
        server = start(name)
        try:
            time.sleep(1)
            entry = {"rss_idle": server.rss_mib(), "h1": {}, "h2": None}
            for c in connections:
                runs = [wrk(server, c, args.duration) for _ in range(args.runs)]
                entry["h1"][c] = {k: median(runs, k) for k in ("rps", "p50", "p99", "p999", "errors", "rss")}
            if name != "serve":
                runs = [h2load(server, 64, args.duration) for _ in range(args.runs)]
                entry["h2"] = {"rps": median(runs, "rps"), "errors": max(r["errors"] for r in runs),
                               "mean": runs[len(runs) // 2]["mean"]}
            results[name] = entry
        finally:
            server.stop()

    proxy = proxy_scenario(args, servers, wasmtime, fetcher, release, cache) if "proxy" in scenarios else {}
    cached = cache_scenario(args, servers, proxy_wasm, release, cache) if "cache" in scenarios else {}
    limited = limit_scenario(args, servers, hello, release, cache) if "limit" in scenarios else {}

    print()
    print(f"hello component, server on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}, "
          f"{args.duration}s x {args.runs} runs (medians)")
    print(f"{'server':<9}{'conns':>6}{'req/s':>11}{'p50 µs':>9}{'p99 µs':>9}{'p99.9 µs':>10}"
          f"{'errors':>8}{'RSS load':>10}")
    for name, entry in results.items():
        for c, r in entry["h1"].items():
            print(f"{name:<9}{c:>6}{r['rps']:>11.0f}{r['p50']:>9.0f}{r['p99']:>9.0f}{r['p999']:>10.0f}"
                  f"{r['errors']:>8.0f}{r['rss']:>9.1f}M")
    print()
    print("HTTP/2 (h2load, 64 connections x 10 streams)")
    for name, entry in results.items():
        if entry["h2"]:
            h2 = entry["h2"]
            print(f"{name:<9}{h2['rps']:>11.0f} req/s  mean {h2['mean']}  errors {h2['errors']}")
    print()
    print("RSS idle: " + ", ".join(f"{n} {e['rss_idle']:.1f} MiB" for n, e in results.items()))
    if "outpost" in results:
        print()
        for c in connections:
            o = results["outpost"]["h1"][c]
            line = f"{c:>4} conns: "
            if "serve" in results:
                s = results["serve"]["h1"][c]
                line += f"Outpost/serve {o['rps'] / s['rps']:.2f}x req/s (p99 {o['p99']:.0f} vs {s['p99']:.0f} µs)  "
            if "native" in results:
                n = results["native"]["h1"][c]
                line += f"Outpost/native {o['rps'] / n['rps']:.2f}x"
            print(line)
        if "native" in results and results["outpost"]["h2"]:
            print(f"HTTP/2: Outpost/native {results['outpost']['h2']['rps'] / results['native']['h2']['rps']:.2f}x")
    if proxy:
        print_proxy(proxy, args)
    if cached:
        print_cache(cached, args)
    if limited:
        print_limit(limited, args)
    if args.json:
        args.json.write_text(json.dumps({"hello": results, "proxy": proxy, "cache": cached,
                                         "limit": limited}, indent=2))


if __name__ == "__main__":
    main()
