#!/usr/bin/env python3
"""The admin API at scale, and what it costs a live event.

One `weir serve` (release build) with SQLite, 1,000 events created through the API and one
live passthrough event (ffmpeg -re, 2 s GOPs, 333 ms LL-HLS parts). Measured in one run:

1. `GET /admin/v1/events` (all 1,000) latency: one client in a loop (p50/p99 of 300
   requests), then wrk with 32 connections for 20 s (p50/p99 as wrk reports them).
2. Part packaging delay of the live event, without and then with the wrk load on the admin
   API: for every LL-HLS part of the lead rendition, the time the origin first lists it
   (polled every 5 ms) minus the time its last frame left ffmpeg (ffmpeg's start plus the
   part's end in media time; the start-up offset is the same in both phases, so the
   difference of the two medians is exact).

Targets (issue 9): p99 under 20 ms with 1,000 events; the admin load moves the packaging
delay by at most 5 ms.

Usage: benches/admin/compare.py [--quick]
(needs: scripts/setup.sh --bench, cargo build --release --bin weir)
"""
import json, os, re, statistics, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, Weir, fetch  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
TOKEN = "bench-admin-token-0123456789"
PHASE = 20 if "--quick" in sys.argv else 40
PART = re.compile(r'#EXT-X-PART:DURATION=([0-9.]+),URI="([^"]+)"')


def api(w, method, path, body=None):
    req = urllib.request.Request(f"http://{w.origin}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


def watch_parts(url, stop, seen):
    """Records (time first listed, duration) of every part, in playlist order."""
    known = set()
    while not stop.is_set():
        text = fetch(url) or ""
        now = time.time()
        for dur, uri in PART.findall(text):
            if uri not in known:
                known.add(uri)
                seen.append((now, float(dur), uri))
        time.sleep(0.005)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1)))]


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    d = tempfile.mkdtemp(prefix="weir-admin-bench-")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "30", "-i", CLIP, "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "2500k", "-c:a", "aac", "-b:a", "128k",
                    "-f", "flv", f"{d}/feed.flv"], check=True)
    w = Weir(d, ["live"], extra=f'[control]\nadmin_tokens = ["{TOKEN}"]\n[packager]\nwindow_segments = 200\n')
    t0 = time.time()
    for i in range(999):
        api(w, "POST", "/admin/v1/events", {"id": f"ev{i:04}", "title": f"Event {i}", "ladder": "passthrough"})
    created = time.time() - t0
    status, body = api(w, "GET", "/admin/v1/events")
    n = len(json.loads(body))
    lat = []
    for _ in range(300):
        t = time.perf_counter()
        api(w, "GET", "/admin/v1/events")
        lat.append((time.perf_counter() - t) * 1000)

    stop, parts = threading.Event(), []
    watcher = threading.Thread(target=watch_parts, args=(w.playlist("live"), stop, parts))
    watcher.start()
    start = time.time()
    ff = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-i", f"{d}/feed.flv", "-c", "copy", "-f", "flv",
                           w.publish_url("live")])
    time.sleep(5 + PHASE)
    load_start = time.time()
    wrk = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", f"{PHASE}s", "--latency", "-H", f"Authorization: Bearer {TOKEN}",
                          f"http://{w.origin}/admin/v1/events"], capture_output=True, text=True)
    load_end = time.time()
    time.sleep(2)
    ff.terminate(); ff.wait()
    stop.set(); watcher.join()
    w.stop()

    end, quiet, loaded = 0.0, [], []
    for at, dur, _ in parts:
        end += dur
        delay = (at - (start + end)) * 1000
        media_end = start + end
        if media_end < start + 5:
            continue  # the session's start
        if media_end < load_start:
            quiet.append(delay)
        elif load_start + 1 <= media_end <= load_end - 1:
            loaded.append(delay)
    wrk_lat = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+\w+)", wrk.stdout, re.M))
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", wrk.stdout)
    print(f"| measure | result |\n|---|---|")
    print(f"| events in the database | {n} (999 created through the API in {created:.1f} s) |")
    print(f"| GET /admin/v1/events, one client, 300 requests | p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms |")
    print(f"| GET /admin/v1/events, wrk 32 connections {PHASE} s | p50 {wrk_lat.get('50')}, p99 {wrk_lat.get('99')}, {rps.group(1) if rps else '?'} req/s |")
    print(f"| part packaging delay, no admin load | median {statistics.median(quiet):.1f} ms, p95 {pct(quiet, 0.95):.1f} (n={len(quiet)}) |")
    print(f"| part packaging delay, under the wrk admin load | median {statistics.median(loaded):.1f} ms, p95 {pct(loaded, 0.95):.1f} (n={len(loaded)}) |")
    print(f"| difference of medians | {statistics.median(loaded) - statistics.median(quiet):+.1f} ms |")


if __name__ == "__main__":
    main()
