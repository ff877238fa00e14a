#!/usr/bin/env python3
"""weir vs nginx-rtmp, side by side in one run, on loopback.

1. Packaging delay: the same 2 s-GOP feed is published in real time (ffmpeg -re) to both at
   once; both media playlists (and weir's edge) are polled every 5 ms. For each new segment,
   delay = time it was first listed - time its last frame was sent, where the send time of
   media time t is the publisher's start + t (ffmpeg -re paces frames on that clock; the start
   offset is the same for both systems, so the comparison is fair even if the absolute figure
   carries the publisher's startup latency).
2. CPU per passthrough stream: 10 concurrent publishers of the BBB clip (-c copy -re) for
   CPU_WINDOW seconds; CPU seconds of the server process tree (utime+stime from /proc) divided
   by wall time and stream count.
3. Resident memory of weir serve with one live stream and a 6-segment window (VmRSS).

Usage: benches/nginx-rtmp/compare.py [--quick]   (needs: scripts/setup.sh --bench, a release build)
"""
import os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, Weir, cpu_seconds, fetch, free_port, segments, tree, wait_port  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
QUICK = "--quick" in sys.argv
DELAY_SECS = 30 if QUICK else 60
CPU_WINDOW = 20 if QUICK else 40
KEY = "bench-stream-key"


class Nginx:
    def __init__(self, d):
        self.dir = d; self.rtmp = free_port(); self.http = free_port()
        os.makedirs(f"{d}/hls"); os.makedirs(f"{d}/tmp")
        conf = open(os.path.join(os.path.dirname(__file__), "nginx.conf.in")).read()
        conf = conf.replace("@DIR@", d).replace("@RTMP_PORT@", str(self.rtmp)).replace("@HTTP_PORT@", str(self.http))
        open(f"{d}/nginx.conf", "w").write(conf)
        self.proc = subprocess.Popen(["nginx", "-p", d, "-c", f"{d}/nginx.conf"], stderr=subprocess.DEVNULL)
        wait_port(self.rtmp)

    def publish_url(self, key): return f"rtmp://127.0.0.1:{self.rtmp}/live/{key}"
    def playlist(self, key): return f"http://127.0.0.1:{self.http}/hls/{key}.m3u8"
    def stop(self): self.proc.send_signal(signal.SIGQUIT); self.proc.wait(10)


def publish(url, src, loop=True):
    args = ["ffmpeg", "-v", "error", "-nostdin", "-re"] + (["-stream_loop", "-1"] if loop else []) + ["-i", src, "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    d = tempfile.mkdtemp(prefix="weir-bench-")
    os.chmod(d, 0o755)  # nginx workers (www-data) read the HLS files
    report = []
    try:
        # 1. Packaging delay.
        feed = f"{d}/gop2s.flv"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(DELAY_SECS // 5 + 2), "-i", CLIP, "-c:v", "libx264", "-preset", "veryfast",
                        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "2500k", "-c:a", "aac", "-b:a", "128k", "-f", "flv", feed], check=True)
        nginx, weir = Nginx(f"{d}/nginx-delay"), Weir(f"{d}/weir-delay", ["delay"])
        urls = {"nginx-rtmp": nginx.playlist("delay"), "weir origin": weir.playlist("delay"), "weir edge": weir.playlist("delay", edge=True)}
        seen = {k: {} for k in urls}
        durs = {k: {} for k in urls}
        t0 = time.time()
        pubs = [publish(nginx.publish_url("delay"), feed, loop=False), publish(weir.publish_url("delay"), feed, loop=False)]
        while time.time() - t0 < DELAY_SECS:
            for name, url in urls.items():
                for uri, dur in segments(fetch(url)):
                    if uri not in seen[name]:
                        seen[name][uri] = time.time(); durs[name][uri] = dur
            time.sleep(0.005)
        for p in pubs: p.kill()
        nginx.stop(); weir.stop()
        report.append(f"## Packaging delay (2 s GOP, real time, {DELAY_SECS} s, median / min / max over segments 2..n)")
        med = {}
        for name in urls:
            ordered = sorted(seen[name], key=lambda u: seen[name][u])
            end, ds = 0.0, []
            for uri in ordered:
                end += durs[name][uri]
                ds.append((seen[name][uri] - (t0 + end)) * 1000)
            ds = ds[1:]
            if not ds:
                report.append(f"- {name}: no segments seen at {urls[name]} ({len(seen[name])} listed)")
            if ds:
                med[name] = statistics.median(ds)
                report.append(f"- {name}: {med[name]:.0f} ms / {min(ds):.0f} ms / {max(ds):.0f} ms ({len(ds)} segments)")
        if "nginx-rtmp" in med and "weir origin" in med:
            report.append(f"- weir origin - nginx-rtmp: {med['weir origin'] - med['nginx-rtmp']:+.0f} ms; weir edge - weir origin: {med['weir edge'] - med['weir origin']:+.0f} ms")

        # 2. CPU per passthrough stream, 10 publishers.
        report.append(f"\n## CPU per passthrough stream (10 publishers of the BBB clip, -c copy -re, {CPU_WINDOW} s)")
        cpu = {}
        for name in ["nginx-rtmp", "weir"]:
            keys = [f"s{i}" for i in range(10)]
            server = Nginx(f"{d}/nginx-cpu") if name == "nginx-rtmp" else Weir(f"{d}/weir-cpu", keys)
            pubs = [publish(server.publish_url(k), CLIP) for k in keys]
            time.sleep(6)  # every publisher connected and packaging
            pids = tree(server.proc.pid)
            c0, w0 = cpu_seconds(pids), time.time()
            time.sleep(CPU_WINDOW)
            c1, w1 = cpu_seconds(pids), time.time()
            for p in pubs: p.kill()
            server.stop()
            cpu[name] = (c1 - c0) / (w1 - w0) * 100
            report.append(f"- {name}: {cpu[name]:.2f}% of one core for 10 streams, {cpu[name] / 10:.3f}% per stream")
        report.append(f"- ratio weir / nginx-rtmp: {cpu['weir'] / max(cpu['nginx-rtmp'], 1e-9):.2f}")

        # 3. Resident memory, one stream, 6-segment window.
        weir = Weir(f"{d}/weir-mem", ["mem"])
        p = publish(weir.publish_url("mem"), CLIP)
        time.sleep(30 if not QUICK else 15)
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{weir.proc.pid}/status").read()).group(1)) / 1024
        p.kill(); weir.stop()
        report.append(f"\n## Resident memory of weir serve, one live stream, 6-segment window\n- {rss:.1f} MB")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    text = "\n".join(report)
    print(text)
    return text


if __name__ == "__main__":
    main()
