#!/usr/bin/env python3
"""Redundant ingest: what a viewer loses when the primary encoder fails.

One `weir serve` (release build) with one event that has a primary and a backup stream key
(`failover_after_ms` 1000, the default). Two ffmpeg processes publish the same 2 s GOP
H.264 + AAC feed in real time (-re), started together, as two encoders fed by the same
source would. A few seconds in, the primary fails, in one of two ways:

- stall: SIGSTOP (the encoder hangs with its TCP connection open; only the silence tells);
- kill:  SIGKILL (the connection closes).

Measured, each run:

1. Live-edge stall: the longest time no new LL-HLS part of the lead rendition was listed at
   the origin (its media playlist polled every 5 ms), around the failure; the usual interval
   between parts is one part (333 ms). This is the time a viewer's buffer must bridge.
2. Programme jumps (passthrough only): a viewer (ffmpeg reading the edge's media playlist, -c
   copy, framemd5) records the hash of every video frame it receives; each hash is looked up
   in the feed, so the viewer's frames are placed in the programme. Frames skipped at the
   switch (positive) or seen twice (negative), times 40 ms. The failure falls at a random
   point of the GOP (uniform over 2 s), since what is skipped or repeated depends on it.

Target (issue 8): the gap a viewer sees is at most failover_after_ms + one segment target
(1000 + 2000 = 3000 ms).

Usage: benches/failover/compare.py [--quick]
(needs: scripts/setup.sh, cargo build --release --bin weir)
"""
import os, random, re, signal, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, Weir, fetch  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
RUNS = 1 if "--quick" in sys.argv else 5
FRAME_MS = 40
KEY, BACKUP = "ev-key-0000", "ev-backup-0000"
PART = re.compile(r'#EXT-X-PART:.*URI="([^"]+)"')


def watch_parts(url, stop, seen):
    """Records (time first listed, uri) of every part listed at `url`."""
    known = set()
    while not stop.is_set():
        text = fetch(url) or ""
        now = time.time()
        for uri in PART.findall(text):
            if uri not in known:
                known.add(uri)
                seen.append((now, uri))
        time.sleep(0.005)


def hashes(path):
    """Video packet hashes of a framemd5 file, in order."""
    out = []
    for line in open(path):
        if line.startswith("#"):
            continue
        f = [x.strip() for x in line.split(",")]
        if len(f) >= 6 and f[0] == "0":
            out.append(f[5])
    return out


def placed(viewer, feed):
    """The viewer's frames as positions in the (looping) feed, each chosen nearest to the
    one after its predecessor."""
    where = {}
    for i, h in enumerate(feed):
        where.setdefault(h, []).append(i)
    n, out, prev = len(feed), [], None
    for h in viewer:
        cands = where.get(h)
        if not cands:
            continue
        if prev is None:
            pos = cands[0]
        else:
            want = (prev + 1) % n
            pos = min(cands, key=lambda c: min((c - want) % n, (want - c) % n))
        out.append(pos)
        prev = pos
    return out, n


def jumps(positions, n):
    """Frames skipped (>0) or repeated (<0) wherever the viewer's sequence is not +1."""
    out = []
    for a, b in zip(positions, positions[1:]):
        step = (b - a) % n
        if step != 1:
            d = step - 1 if step <= n // 2 else step - n - 1
            out.append(d)
    return out


def run(d, ladder, how):
    lead = "source" if ladder == "passthrough" else "720p"
    conf = (f'[[events]]\nid = "ev"\nstream_key = "{KEY}"\nbackup_stream_key = "{BACKUP}"\n'
            f'ladder = "{ladder}"\n')
    w = Weir(d, [], extra=conf)
    stop, parts = threading.Event(), []
    watcher = threading.Thread(target=watch_parts, args=(f"http://{w.origin}/live/ev/{lead}/index.m3u8", stop, parts))
    watcher.start()
    pub = lambda key: subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", f"{d}/../feed.flv",
                                        "-c", "copy", "-f", "flv", f"rtmp://{w.rtmp}/live/{key}"])
    primary, backup = pub(KEY), pub(BACKUP)
    time.sleep(8)
    viewer = None
    if ladder == "passthrough":
        viewer = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", f"http://{w.edge}/live/ev/source/index.m3u8",
                                   "-map", "0:v", "-c", "copy", "-t", "14", "-f", "framemd5", f"{d}/viewer.md5"])
        time.sleep(3)
    # Fail at a random point of the GOP: what the viewer sees again or misses depends on it.
    time.sleep(random.uniform(0, 2))
    failed = time.time()
    primary.send_signal(signal.SIGSTOP if how == "stall" else signal.SIGKILL)
    time.sleep(9)
    if viewer:
        viewer.wait(30)
    stop.set(); watcher.join()
    for p in (primary, backup):
        p.send_signal(signal.SIGCONT); p.kill(); p.wait()
    w.stop()
    times = [t for t, _ in parts]
    gaps = [(b - a, a) for a, b in zip(times, times[1:])]
    near = [g for g, a in gaps if failed - 2 <= a <= failed + 5]
    usual = statistics.median([g for g, a in gaps if a < failed - 2])
    stall = max(near) if near else float("nan")
    lost = None
    if viewer:
        pos, n = placed(hashes(f"{d}/viewer.md5"), hashes(f"{d}/../feed.md5"))
        lost = jumps(pos, n)
    return stall, usual, lost


def main():
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", CLIP, "-c:v", "libx264", "-preset", "veryfast", "-g", "50",
                        "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "2500k", "-c:a", "aac", "-b:a", "128k",
                        "-f", "flv", f"{d}/feed.flv"], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", f"{d}/feed.flv", "-map", "0:v", "-c", "copy",
                        "-f", "framemd5", f"{d}/feed.md5"], check=True)
        rows = []
        for ladder, how in (("passthrough", "stall"), ("passthrough", "kill"), ("default", "stall")):
            for i in range(RUNS):
                stall, usual, lost = run(f"{d}/{ladder}-{how}-{i}", ladder, how)
                rows.append((ladder, how, stall, usual, lost))
                lost_s = "-" if lost is None else ", ".join(f"{j * FRAME_MS:+d} ms" for j in lost) or "none"
                print(f"{ladder:11} {how:5} run {i}: live edge stalled {stall * 1000:.0f} ms (usual part interval "
                      f"{usual * 1000:.0f} ms); programme jumps seen by the viewer: {lost_s}", flush=True)
        worst = max(r[2] for r in rows) * 1000
        lost_all = [j * FRAME_MS for r in rows if r[4] for j in r[4]]
        print(f"\nworst live-edge stall {worst:.0f} ms; programme jumps {lost_all} ms; target <= 3000 ms")


if __name__ == "__main__":
    main()
