#!/usr/bin/env python3
"""Instructions per request by row of BENCHMARKS.md's hot-path table, from callgrind dumps.

`python3 benches/callgrind-rows.py DUMP... [--requests N]` on dumps kept by
`benches/hotpath-callgrind.py --keep DIR` (one column per dump, N requests each, 2,000 by
default). Each instruction goes to a row by the source file it was compiled from (inlined
code by its own file; standard-library code by the function it sits in), except allocator,
memcpy and clock functions, which have rows of their own whatever calls them.
"""

import argparse
import collections
import re

ROWS = [
 ("HTTP/1 parse and encode, header maps (hyper, httparse, http)", r"/(hyper-1|hyper-util|httparse|http-1|http-body|httpdate|bytes-1)"),
 ("tokio: scheduler, I/O readiness, timers", r"/(tokio-1|mio-)"),
 ("routing and middleware plumbing (axum, tower, matchit)", r"/(axum|tower-0|tower-layer|tower-service|matchit|futures-|pin-project|sync_wrapper)"),
 ("auth: key digest (SHA-256), org lookup, scope and rate gate", r"/(sha2|digest|subtle|governor)|src/(keys\.rs|service/auth|http/gate\.rs|service/limits|service/whoami|scope\.rs|http/access\.rs)"),
 ("snapshot lookup (service, coalescing cache, moka)", r"/(moka|crossbeam|arc-swap|event-listener|quanta|parking_lot|tagptr)|src/(service/|provider/)"),
 ("hash maps (request extensions, header names)", r"/(hashbrown|foldhash)|hash/sip\.rs|/hash/"),
 ("request id (callmux http/request_id.rs, uuid, fastrand)", r"/(uuid|fastrand)|src/http/request_id\.rs"),
 ("tracing span (TraceLayer, tracing)", r"/(tower-http|tracing)"),
 ("metrics and the one route layer (http/metrics.rs, http/tracked.rs, metrics)", r"/metrics-|src/http/(metrics|tracked)\.rs"),
 ("bounds (http/bounds.rs)", r"src/http/bounds\.rs"),
 ("connection loop (callmux http/connections.rs)", r"src/http/connections\.rs"),
 ("headers (Server-Timing), handler, body (callmux http/ and wire/)", r"src/(http|wire)/"),
]
ALLOC = re.compile(r"^(mi_|_mi_|malloc|free|_int_|__rust_alloc|__rust_dealloc|__rustc::__rust|__rdl_|realloc|calloc|cfree|tcache|unlink_chunk|malloc_consolidate)")
MEM = re.compile(r"^__(memcpy|memmove|memset|memcmp|mempcpy)|^(memcpy|memmove|memset|memcmp)")
CLOCK = re.compile(r"Timespec|std::time::Instant|clock_gettime|SystemTime|tokio::time::clock|quanta")
LIBC = re.compile(r"libc|^(clock_gettime|__GI|__libc|syscall|epoll|__sendmsg|__recv|write|read|__write|__read|sendto|recvfrom|__lll|pthread|__pthread|writev|__writev)")
def row_of(fname, file):
    if ALLOC.search(fname): return "allocation (mimalloc in callmux, glibc in the floor)"
    if CLOCK.search(fname): return "clock reads (Instant, clock_gettime)"
    if MEM.search(fname): return "memcpy (moving futures, copying headers)"
    for name, pat in ROWS:
        if re.search(pat, file): return name
    if LIBC.search(fname) or "libc" in file: return "libc (system call wrappers) and other"
    return "libc (system call wrappers) and other"
def parse(path):
    out = collections.Counter()
    fl = fi = fn = None; skip = False
    for line in open(path, errors="replace"):
        c = line[:1]
        if c.isdigit() or c in "+-*":
            if skip: skip = False; continue
            parts = line.split()
            if len(parts) < 2: continue
            cost = int(parts[1])
            src = fi or fl or ""
            if "/rustc/" in src or src.startswith("???") or src == "": src = fl or ""
            out[row_of(fn or "", src)] += cost
            continue
        if line.startswith("fl="): fl = line[3:].strip(); fi = None
        elif line.startswith(("fi=", "fe=")): fi = line[3:].strip()
        elif line.startswith("fn="): fn = line[3:].strip(); fi = None
        elif line.startswith("calls="): skip = True
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dumps", nargs="+")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    n = args.requests
    cols = [parse(p) for p in args.dumps]
    names = ([r[0] for r in ROWS[:3]]
             + ["allocation (mimalloc in callmux, glibc in the floor)",
                "memcpy (moving futures, copying headers)"]
             + [r[0] for r in ROWS[3:]]
             + ["clock reads (Instant, clock_gettime)",
                "libc (system call wrappers) and other"])
    for name in names:
        print("| " + name + " | " + " | ".join(f"{c[name] / n:,.0f}" for c in cols) + " |")
    print("| **total** | " + " | ".join(f"**{sum(c.values()) / n:,.0f}**" for c in cols) + " |")


if __name__ == "__main__":
    main()
