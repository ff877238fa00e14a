#!/usr/bin/env python3
"""Memory over hours: `weir serve` (release build) with one event, a publisher looping the
BBB clip in real time and reconnecting every few minutes, and ffmpeg viewers reading the
master playlist through the in-process edge. Once a minute it samples the weir process:
resident memory, open file descriptors, live Tokio tasks, the bytes held by the origin's
store and the edge's cache, and jemalloc's allocated and resident bytes (from /metrics). At
the end it prints the samples and the growth of each over the second half of the run
(least-squares slope, per hour).

Target (issue 13): resident memory growth over the second half of a 1-hour run under
5 MB/h for passthrough and for the default ladder; passthrough RSS under 100 MB.

Usage: benches/soak/soak.py [--minutes 60] [--ladder passthrough|default] [--viewers 5]
                            [--reconnect-every 5] [--csv FILE] [--env KEY=VALUE ...]
(needs: scripts/setup.sh --bench, cargo build --release --bin weir)
"""
import argparse, os, re, signal, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, Weir, fetch, rss_mb, segments  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")


def metrics(origin):
    try:
        with urllib.request.urlopen(f"http://{origin}/metrics", timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return {}
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            if m.group(2):
                out[m.group(1) + m.group(2)] = float(m.group(3))
    return out


def smaps_mb(pid):
    """Resident MB of the process by kind of mapping (/proc/PID/smaps): anonymous (the
    allocator's pages), thread stacks, files (the binary and its libraries), and how much of
    it is transparent huge pages (`thp`, part of the others). A thread's
    stack is an unnamed mapping of exactly 8 MiB (glibc's default stack size) next to its
    guard page; the main thread's is [stack]. (An allocator mapping of exactly 8 MiB is
    counted as a stack too: read stacks together with anon and the thread count.)"""
    kinds = {"anon": 0, "stack": 0, "file": 0, "thp": 0}
    name, size = "", 0
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if head and "-" in head[0] and ":" not in head[0]:
                    name = head[5] if len(head) > 5 else ""
                elif head and head[0] == "AnonHugePages:":
                    kinds["thp"] += int(head[1])
                elif head and head[0] == "Size:":
                    size = int(head[1])
                elif head and head[0] == "Rss:":
                    if name == "[stack]" or (name == "" and size == 8192):
                        kind = "stack"
                    else:
                        kind = "anon" if name in ("", "[heap]") else "file"
                    kinds[kind] += int(head[1])
    except OSError:
        pass
    return {k: v / 1024 for k, v in kinds.items()}


def slope_per_hour(points):
    """Least-squares slope of [(minutes, value)], per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    if var == 0:
        return 0.0
    return 60 * sum((p[0] - mx) * (p[1] - my) for p in points) / var


def publisher(url):
    return subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", CLIP,
                             "-c", "copy", "-f", "flv", url], stdin=subprocess.DEVNULL)


def viewer(url):
    return subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", url, "-c", "copy", "-f", "null", "-"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--ladder", default="passthrough")
    ap.add_argument("--viewers", type=int, default=5)
    ap.add_argument("--reconnect-every", type=float, default=5, help="minutes")
    ap.add_argument("--csv")
    ap.add_argument("--env", action="append", default=[],
                    help="KEY=VALUE for the weir process only (e.g. MALLOC_ARENA_MAX=2, or "
                         "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2)")
    a = ap.parse_args()
    # Stopped early (Ctrl-C, kill): clean up and print what was measured.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    d = tempfile.mkdtemp(prefix="weir-soak-")
    saved = dict(os.environ)
    os.environ.update(kv.split("=", 1) for kv in a.env)
    weir = Weir(d, ["e"], a.ladder)
    os.environ.clear(); os.environ.update(saved)
    pid = weir.proc.pid
    pub = publisher(weir.publish_url("e"))
    viewers = []
    rows = []
    start = time.monotonic()
    last_reconnect = start
    try:
        for _ in range(600):
            if len(segments(fetch(f"http://{weir.origin}/live/e/source/index.m3u8") or
                            fetch(f"http://{weir.origin}/live/e/720p/index.m3u8"))) >= 2:
                break
            time.sleep(0.1)
        master = f"http://{weir.edge}/live/e/master.m3u8"
        viewers = [viewer(master) for _ in range(a.viewers)]
        next_sample = start
        print("| min | RSS MB | fds | tasks | store MB | edge cache MB | viewers up | heap MB | jemalloc resident MB "
              "| anon MB | stacks MB | files MB | THP MB | threads |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        while time.monotonic() - start < a.minutes * 60:
            now = time.monotonic()
            if a.reconnect_every > 0 and now - last_reconnect >= a.reconnect_every * 60:
                pub.terminate(); pub.wait(10)
                pub = publisher(weir.publish_url("e"))
                last_reconnect = now
            # A viewer that ended (the stream paused at a reconnect) comes back.
            viewers = [v if v.poll() is None else viewer(master) for v in viewers]
            if now >= next_sample:
                m = metrics(weir.origin)
                maps = smaps_mb(pid)
                row = (
                    (now - start) / 60,
                    rss_mb(pid),
                    len(os.listdir(f"/proc/{pid}/fd")),
                    m.get("weir_runtime_alive_tasks", 0),
                    m.get("weir_origin_store_bytes", 0) / 1e6,
                    m.get("weir_edge_cache_bytes", 0) / 1e6,
                    sum(v.poll() is None for v in viewers),
                    # jemalloc's own account (weir_allocator_bytes): what the program holds,
                    # and what the allocator keeps resident for it.
                    m.get('weir_allocator_bytes{kind="allocated"}', 0) / 1e6,
                    m.get('weir_allocator_bytes{kind="resident"}', 0) / 1e6,
                    maps["anon"], maps["stack"], maps["file"], maps["thp"],
                    len(os.listdir(f"/proc/{pid}/task")),
                )
                rows.append(row)
                print(f"| {row[0]:.0f} | {row[1]:.1f} | {row[2]} | {row[3]:.0f} | {row[4]:.1f} | {row[5]:.1f} "
                      f"| {row[6]} | {row[7]:.1f} | {row[8]:.1f} | {row[9]:.1f} | {row[10]:.1f} | {row[11]:.1f} "
                      f"| {row[12]:.1f} | {row[13]} |",
                      flush=True)
                if a.csv:
                    with open(a.csv, "a") as f:
                        f.write(",".join(str(x) for x in row) + "\n")
                next_sample += 60
            time.sleep(1)
    except KeyboardInterrupt:
        print("(stopped early)")
    finally:
        for v in viewers:
            v.kill()
        pub.kill()
        weir.proc.kill()
    span = rows[-1][0] if rows else 0
    half = [r for r in rows if r[0] >= span / 2]
    print(f"\n## Growth over the second half ({a.ladder}, {a.viewers} viewers, "
          f"publisher reconnect every {a.reconnect_every:g} min, {span:.0f} min run)\n")
    print("| measure | per hour |")
    print("|---|---|")
    for name, i, unit in (("RSS", 1, "MB"), ("open fds", 2, ""), ("tasks", 3, ""),
                          ("origin store", 4, "MB"), ("edge cache", 5, "MB"),
                          ("heap (allocated)", 7, "MB"), ("jemalloc resident", 8, "MB"),
                          ("anonymous", 9, "MB"), ("thread stacks", 10, "MB"), ("files", 11, "MB"),
                          ("transparent huge pages", 12, "MB"), ("threads", 13, "")):
        print(f"| {name} | {slope_per_hour([(r[0], r[i]) for r in half]):+.2f} {unit} |")
    if rows:
        print(f"\nRSS at the end: {rows[-1][1]:.1f} MB (max {max(r[1] for r in rows):.1f} MB)")


if __name__ == "__main__":
    main()
