#!/usr/bin/env python3
"""Instructions per request on the hot path, counted by callgrind (BENCHMARKS.md, issue 25).

`python3 benches/hotpath-callgrind.py callmux|floor [--requests N] [--keep DIR]`, after
`cargo bench --bench load --no-run` (the bench profile: release with line tables).

callmux: the release binary on the shipped providers.toml (the demo org, two static
providers, `cache_ttl_ms = 600000` added so every list is a cache hit), RUST_LOG=warn.
floor: the load bench's bare axum servers replaying callmux's bytes (`-- hotpath-floor`).
Either runs under `valgrind --tool=callgrind`; one keep-alive client in this process sends
300 of each request to warm up, then `callgrind_control -z`, N `GET /healthz`,
`callgrind_control -d`, N cached `GET /api/calls`, `callgrind_control -d`, and prints each
dump's total divided by N. Loopback only.
"""

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 300


def request(path, key, org):
    return (
        f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {key}\r\n"
        f"x-bland-org-id: {org}\r\n\r\n"
    ).encode()


class Client:
    """One keep-alive connection reading each answer whole by its content-length."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def ask(self, raw):
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head[9:12])
        length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))
        while len(self.buf) < length:
            self.fill()
        self.buf = self.buf[length:]
        if status != 200:
            sys.exit(f"answered {status}: {head!r}")

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            sys.exit("the server closed the connection")
        self.buf += chunk


def wait_port(addr, proc):
    host, port = addr.rsplit(":", 1)
    for _ in range(1200):
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {addr}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bench_binary():
    found = sorted(
        (p for p in glob.glob(os.path.join(ROOT, "target/release/deps/load-*"))
         if os.access(p, os.X_OK) and not p.endswith(".d")),
        key=os.path.getmtime,
    )
    if not found:
        sys.exit("no load bench binary: run `cargo bench --bench load --no-run` first")
    return found[-1]


def totals(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    sys.exit(f"no totals in {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", choices=["callmux", "floor"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keep", help="copy the callgrind dumps into this directory")
    parser.add_argument("--binary", help="instead of target/release's callmux or load bench")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="hotpath-callgrind-")
    out = os.path.join(work, "callgrind.out")
    valgrind = ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
                f"--callgrind-out-file={out}"]
    env = dict(os.environ, RUST_LOG="warn", NO_PROXY="*", no_proxy="*")
    if args.target == "callmux":
        port = free_port()
        with open(os.path.join(ROOT, "providers.toml")) as f:
            config = f.read()
        config = re.sub(r'(?m)^bind = ".*"$', f'bind = "127.0.0.1:{port}"', config, count=1)
        config = re.sub(r'(?m)^(path = "demo/[a-z-]+-calls\.json")$', r"\1\ncache_ttl_ms = 600000",
                        config)
        os.symlink(os.path.join(ROOT, "demo"), os.path.join(work, "demo"))
        with open(os.path.join(work, "providers.toml"), "w") as f:
            f.write(config)
        proc = subprocess.Popen(
            valgrind + [args.binary or os.path.join(ROOT, "target/release/callmux"),
                        "--config", "providers.toml"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        addrs = {"healthz": f"127.0.0.1:{port}", "calls": f"127.0.0.1:{port}"}
        wait_port(addrs["healthz"], proc)
        key, org = "Bearer demo-key", "demo"
    else:
        proc = subprocess.Popen(valgrind + [args.binary or bench_binary(), "hotpath-floor"], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        addrs = {}
        while len(addrs) < 2:
            line = proc.stdout.readline()
            if not line:
                sys.exit("the floor exited before printing its addresses")
            name, url = line.split()
            addrs[name] = url.removeprefix("http://")
        key, org = "bench-org-key", "bench-org"
    try:
        raws = {"healthz": request("/healthz", key, org), "calls": request("/api/calls", key, org)}
        clients = {name: Client(addr) for name, addr in addrs.items()}
        for _ in range(WARMUP):
            for name in ("calls", "healthz"):
                clients[name].ask(raws[name])
        pid = str(proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        figures = []
        for name in ("healthz", "calls"):
            before = set(glob.glob(out + "*"))
            for _ in range(args.requests):
                clients[name].ask(raws[name])
            subprocess.run(["callgrind_control", "-d", pid], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dump = max(set(glob.glob(out + "*")) - before, key=os.path.getmtime)
            figures.append((name, totals(dump) / args.requests))
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(dump, os.path.join(args.keep, f"{args.target}-{name}.out"))
        for name, per in figures:
            print(f"{args.target} {name}: {per:,.0f} instructions per request")
    finally:
        if proc.stdin:
            # The floor stops its own callmux and fleet when stdin closes.
            proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
