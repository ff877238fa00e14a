#!/usr/bin/env python3
"""SRT vs RTMP ingest, side by side in one run, on loopback.

One ffmpeg process reads a 2 s GOP H.264 + AAC feed in real time (-re) and sends it twice at
once: over RTMP (FLV) to one `weir serve` and over SRT (MPEG-TS) to another, each with one
passthrough event. Measured:

1. Packaging delay: for every segment, the time the origin first lists it (polled every
   5 ms with plain requests) minus the time its last frame left ffmpeg, taken as the
   ffmpeg start time plus the segment's end in media time (both outputs share that clock,
   so SRT minus RTMP is exact even where the absolute figure carries ffmpeg's start-up).
2. CPU of each weir process over the run (utime + stime), i.e. per passthrough stream.

Run at SRT latency 120 ms (the default) and 20 ms (the lowest weir accepts).

Usage: benches/srt/compare.py [--quick]
(needs: scripts/setup.sh, cargo build --release --bin weir)
"""
import os, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, Weir, cpu_seconds, fetch, segments  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
SECS = 40 if "--quick" in sys.argv else 90


def watch(url, stop, seen):
    """Records the first time each segment URI is listed at `url`."""
    while not stop.is_set():
        text = fetch(url)
        now = time.time()
        for uri, dur in segments(text):
            seen.setdefault(uri, (now, dur))
        time.sleep(0.005)


def run(d, latency_ms):
    rtmp = Weir(f"{d}/rtmp-{latency_ms}", ["rtmp"])
    srt = Weir(f"{d}/srt-{latency_ms}", ["srt"], extra=f"[srt]\nlatency_ms = {latency_ms}\n")
    stop, seen = threading.Event(), {"rtmp": {}, "srt": {}}
    watchers = [threading.Thread(target=watch, args=(w.playlist(k), stop, seen[k]))
                for w, k in ((rtmp, "rtmp"), (srt, "srt"))]
    for t in watchers:
        t.start()
    cpu0 = {k: cpu_seconds([w.proc.pid]) for w, k in ((rtmp, "rtmp"), (srt, "srt"))}
    srt_url = f"srt://{srt.srt}?streamid=srt-key-0000&latency={latency_ms * 1000}"
    start = time.time()
    ff = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", f"{d}/feed.flv",
                           "-map", "0", "-c", "copy", "-f", "flv", rtmp.publish_url("rtmp"),
                           "-map", "0", "-c", "copy", "-f", "mpegts", srt_url])
    time.sleep(SECS)
    cpu = {k: cpu_seconds([w.proc.pid]) - cpu0[k] for w, k in ((rtmp, "rtmp"), (srt, "srt"))}
    ff.terminate(); ff.wait()
    stop.set()
    for t in watchers:
        t.join()
    rtmp.stop(); srt.stop()
    delays = {}
    for k in ("rtmp", "srt"):
        listed = sorted(seen[k].values())
        end, out = 0.0, []
        for at, dur in listed:
            end += dur
            out.append(at - (start + end))
        delays[k] = out[1:]  # the first segment waits for the session to start
    n = min(len(delays["rtmp"]), len(delays["srt"]))
    diff = [s - r for r, s in zip(delays["rtmp"][:n], delays["srt"][:n])]
    med = lambda xs: statistics.median(xs) * 1000
    p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))] * 1000
    return [
        f"| packaging delay, RTMP (latency {latency_ms} ms run) | median {med(delays['rtmp']):.0f} ms, p95 {p95(delays['rtmp']):.0f} (n={len(delays['rtmp'])}) |",
        f"| packaging delay, SRT latency {latency_ms} ms | median {med(delays['srt']):.0f} ms, p95 {p95(delays['srt']):.0f} (n={len(delays['srt'])}) |",
        f"| SRT minus RTMP, same segment, SRT latency {latency_ms} ms | median {med(diff):.0f} ms, p95 {p95(diff):.0f}, min {min(diff) * 1000:.0f} |",
        f"| weir CPU per passthrough stream, SRT latency {latency_ms} ms run | RTMP {cpu['rtmp']:.2f} s, SRT {cpu['srt']:.2f} s over {SECS} s (SRT/RTMP {cpu['srt'] / cpu['rtmp']:.2f}x) |",
    ]


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    d = tempfile.mkdtemp(prefix="weir-srt-bench-")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "3", "-i", CLIP, "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "2500k", "-c:a", "aac", "-b:a", "128k",
                    "-f", "flv", f"{d}/feed.flv"], check=True)
    report = ["| measure | result |", "|---|---|"]
    for latency in (120, 20):
        report += run(d, latency)
    print("\n".join(report))


if __name__ == "__main__":
    main()
