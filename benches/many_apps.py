#!/usr/bin/env python3
"""Many apps on one node: N distinct variants of examples/hello.

    python3 benches/many_apps.py              # 1,000 apps
    python3 benches/many_apps.py --apps 200 --duration 5

Each variant is hello.wasm plus a custom section holding its index, so every
app has its own sha256, its own precompiled artifact and its own code in
memory, while doing the same work per request. The node routes app-I.bench to
app I and sets `lazy_load = true`. Reported:

- cold start: empty precompiled cache, every app compiled (both CPUs);
- warm start: cache filled, apps mapped on their first request (CPU 0 only);
- RSS after the warm start, after traffic to one app, after traffic spread
  over all apps;
- req/s with wrk (64 connections, CPU 1) sending every request to app 0, and
  rotating over all apps: a first pass (which maps every app) and a second.
"""

import argparse
import time

from load import ROOT, Server, build, free_port, wrk


def leb128(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def custom_section(name, payload):
    body = leb128(len(name)) + name + payload
    return b"\x00" + leb128(len(body)) + body


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=1000, help="number of apps (default 1000)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run (default 10)")
    parser.add_argument("--keep-cache", action="store_true", help="skip the cold start: reuse the artifacts of the last run")
    args = parser.parse_args()

    hello = build().read_bytes()
    work = ROOT / "target" / "many-apps"
    components = work / "components"
    components.mkdir(parents=True, exist_ok=True)
    lines = ["lazy_load = true", f"max_instances = 1000", ""]
    for i in range(args.apps):
        path = components / f"app-{i}.wasm"
        path.write_bytes(hello + custom_section(b"outpost-bench-variant", str(i).encode()))
        lines += [f"[apps.app-{i}]", f'component = "{path}"', f'routes = ["app-{i}.bench/"]', ""]
    config = work / "node.toml"
    config.write_text("\n".join(lines))
    cache = work / "cache"
    if cache.exists() and not args.keep_cache:
        for artifact in cache.iterdir():
            artifact.unlink()

    outpost = ROOT / "target" / "release" / "outpost"

    def start(cpus, timeout):
        port = free_port()
        started = time.time()
        server = Server("many-apps", [outpost, "serve", "--config", config, "--cache-dir", cache,
                                      "--listen", f"127.0.0.1:{port}"], port,
                        env={"RUST_LOG": "warn"}, cpus=cpus, host="app-0.bench", timeout=timeout)
        return server, time.time() - started

    cold = float("nan")
    if not args.keep_cache:
        server, cold = start("0,1", timeout=3600)
        server.stop()
    artifacts = len(list(cache.iterdir()))

    server, warm = start("0", timeout=600)
    try:
        rss_start = server.rss_mib()
        one = wrk(server, 64, args.duration, hosts=1)
        rss_one = server.rss_mib()
        first_pass = wrk(server, 64, args.duration, hosts=args.apps)
        spread = wrk(server, 64, args.duration, hosts=args.apps)
        rss_spread = server.rss_mib()
    finally:
        server.stop()

    print()
    print(f"{args.apps} apps (distinct components), lazy_load = true")
    print(f"  cold start (compile all, 2 CPUs):       {cold:8.1f} s   ({artifacts} artifacts cached)")
    print(f"  warm start (from the cache, 1 CPU):     {warm:8.2f} s")
    print(f"  RSS after warm start:                   {rss_start:8.1f} MiB")
    print(f"  64 conns, every request to app 0:       {one['rps']:8.0f} req/s  p99 {one['p99']} µs  "
          f"errors {one['errors']}  RSS {rss_one:.1f} MiB")
    print(f"  64 conns, rotating, first pass:         {first_pass['rps']:8.0f} req/s  p99 {first_pass['p99']} µs  "
          f"errors {first_pass['errors']}  (includes mapping every app on its first request)")
    print(f"  64 conns, rotating over all apps:       {spread['rps']:8.0f} req/s  p99 {spread['p99']} µs  "
          f"errors {spread['errors']}  RSS {rss_spread:.1f} MiB")
    print(f"  spread / one: {spread['rps'] / one['rps']:.2f}x")


if __name__ == "__main__":
    main()
