#!/usr/bin/env python3
"""LL-HLS through weir's edge, side by side in one run, on loopback.

1. Freshness of plain playlist requests: one weir origin, and in front of it weir's edge,
   nginx proxy_cache and varnish (default configurations honouring the origin's
   Cache-Control). All four are polled every 5 ms with plain (directive-free) requests for
   the same media playlist; for every new part and every new segment, the time each first
   lists it, minus the time the origin first listed it.
2. Part listing delay at the edge: a client follows the edge with blocking reloads
   (_HLS_msn/_HLS_part for the next part, as hls.js does). For each new part, delay =
   arrival - time its last frame was sent, where the send time of media time t is the
   segment's EXT-X-PROGRAM-DATE-TIME (weir stamps it with the wall clock of the session's
   first keyframe, which the publisher sent at that moment on loopback) plus the media time
   since the segment's start; the last frame starts one frame before the part's end.
3. hls.js (headless Chromium) latency, hls.latency once a second after 5 s of playback, in
   low-latency mode (hls.js defaults, and with catch-up allowed: maxLiveSyncPlaybackRate 1.5)
   and with lowLatencyMode off, for a passthrough event and the default ladder, through the
   edge.
4. Resident memory of weir serve with one LL event and 500 viewers blocking on the next part
   at the edge (keep-alive connections, one blocking reload after another).

Usage: benches/lowlatency/compare.py [--quick]
(needs: scripts/setup.sh --bench, cargo build --release --bin weir)
"""
import asyncio, json, os, re, statistics, subprocess, sys, tempfile, threading, time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, Varnish, Weir, fetch, free_port, wait_port  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
QUICK = "--quick" in sys.argv
FRESH_SECS = 30 if QUICK else 60
PLAY_SECS = 25 if QUICK else 40
RSS_SECS = 20 if QUICK else 40
VIEWERS = 500


def publish(url, src):
    return subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", src, "-c", "copy", "-f", "flv", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def last_position(text):
    """(last segment msn, last part (msn, index)) of a weir media playlist."""
    segs = re.findall(r"^[^#\n]*/(\d+)\.m4s$", text or "", re.M)
    parts = re.findall(r'#EXT-X-PART:[^\n]*URI="[^"]*/(\d+)\.(\d+)\.m4s"', text or "")
    return (int(segs[-1]) if segs else None, (int(parts[-1][0]), int(parts[-1][1])) if parts else None)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def summary(xs, unit="ms", scale=1000):
    if not xs:
        return "no samples"
    return f"median {statistics.median(xs) * scale:.0f} {unit}, p95 {pct(xs, 95) * scale:.0f}, max {max(xs) * scale:.0f} (n={len(xs)})"


class Nginx:
    def __init__(self, d, origin):
        self.port = free_port()
        os.makedirs(f"{d}/cache", exist_ok=True)
        open(f"{d}/nginx.conf", "w").write(f"""daemon off; user root; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=c:10m max_size=1g inactive=60s use_temp_path=off;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ proxy_pass http://{origin}; proxy_cache c; proxy_cache_lock on; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_cache_key $uri$is_args$args; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", d, "-c", f"{d}/nginx.conf"], stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate(); self.proc.wait(10)


def freshness(d, feed):
    weir = Weir(f"{d}/weir-fresh", ["fresh"])
    nginx, varnish = Nginx(f"{d}/nginx", weir.origin), Varnish(f"{d}/varnish", weir.origin)
    pub = publish(weir.publish_url("fresh"), feed)
    path = "/live/fresh/source/index.m3u8"
    systems = {"origin": weir.origin, "weir edge": weir.edge, "nginx proxy_cache": f"127.0.0.1:{nginx.port}",
               "varnish": f"127.0.0.1:{varnish.port}"}
    seen = {name: {} for name in systems}
    stop = time.time() + FRESH_SECS + 5

    def poll(name, host):
        while time.time() < stop:
            text = fetch(f"http://{host}{path}")
            now = time.time()
            seg, part = last_position(text)
            for key in (("segment", seg), ("part", part)):
                if key[1] is not None:
                    seen[name].setdefault(key, now)
            time.sleep(0.005)

    threads = [threading.Thread(target=poll, args=(n, h)) for n, h in systems.items()]
    [t.start() for t in threads]
    listing = follow_edge(weir, path, stop)
    [t.join() for t in threads]
    pub.terminate(); pub.wait()
    report = []
    for kind in ("part", "segment"):
        keys = [k for k in seen["origin"] if k[0] == kind]
        keys = sorted(keys)[2:]  # warm-up
        for name in ("weir edge", "nginx proxy_cache", "varnish"):
            lag = [seen[name][k] - seen["origin"][k] for k in keys if k in seen[name]]
            report.append(f"| new {kind} visible, {name} - origin | {summary(lag)} |")
    report.append(f"| part listed at the edge (blocking reload) after its last frame was sent | {summary(listing)} |")
    nginx.stop(); varnish.stop(); weir.stop()
    return report


def follow_edge(weir, path, stop):
    """Follows the edge with blocking reloads for the next part; the delay of every part."""
    delays, frame = [], 0.04
    text = None
    while time.time() < stop and not text:
        text = fetch(f"http://{weir.edge}{path}")
        time.sleep(0.1)
    known = set()
    while time.time() < stop:
        _, part = last_position(text)
        if part is None:
            time.sleep(0.1); text = fetch(f"http://{weir.edge}{path}"); continue
        text = fetch(f"http://{weir.edge}{path}?_HLS_msn={part[0]}&_HLS_part={part[1] + 1}")
        now = time.time()
        if not text:
            continue
        # Part end times from the open segment's date plus its parts' durations.
        for block in re.finditer(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)\n((?:#EXT-X-PART:[^\n]*\n)+)", text):
            start = datetime.fromisoformat(block.group(1).replace("Z", "+00:00")).timestamp()
            t = start
            for m in re.finditer(r'DURATION=([\d.]+),URI="[^"]*/(\d+)\.(\d+)\.m4s"', block.group(2)):
                t += float(m.group(1))
                key = (int(m.group(2)), int(m.group(3)))
                if key not in known:
                    known.add(key)
                    if len(known) > 3 and key > part:
                        delays.append(now - (t - frame))
    return delays


def latency(d):
    out = []
    script = os.path.join(ROOT, "tests/player/play.mjs")
    # (label, ladder, part target in ms): the defaults, and passthrough tuned for the lowest
    # latency ([packager] part_target_ms = 200: PART-HOLD-BACK 0.6 s).
    runs = [("passthrough", "passthrough", 333), ("default ladder", "default", 333),
            ("passthrough, parts 200 ms", "passthrough", 200)]
    for label, ladder, part in runs:
        weir = Weir(f"{d}/weir-play-{ladder}-{part}", ["play"], ladder=ladder,
                    extra=f"[packager]\npart_target_ms = {part}\n")
        pub = publish(weir.publish_url("play"), CLIP if ladder == "default" else f"{d}/gop2s.flv")
        master = f"http://{weir.edge}/live/play/master.m3u8"
        for _ in range(200):
            if fetch(master):
                break
            time.sleep(0.1)
        for mode in ("ll", "ll-sync", "plain"):
            r = json.loads(subprocess.run(["node", script, master, str(PLAY_SECS), mode], capture_output=True, text=True, check=True).stdout)
            lat = r["latency"]
            name = {"ll": "lowLatencyMode on", "ll-sync": "lowLatencyMode on, maxLiveSyncPlaybackRate 1.5", "plain": "lowLatencyMode off"}[mode]
            out.append(f"| hls.js latency, {label}, {name} | median {lat['median']:.2f} s, max {lat['max']:.2f} s "
                       f"(n={lat['samples']}; stalls {r['stalls']}, blocking reloads {r['requests']['blocking']}, parts {r['requests']['parts']}) |")
        pub.terminate(); pub.wait(); weir.stop()
    return out


async def viewer(host, port, path, stop, served):
    reader, writer = await asyncio.open_connection(host, port)
    nxt = None
    while time.time() < stop:
        q = f"?_HLS_msn={nxt[0]}&_HLS_part={nxt[1]}" if nxt else ""
        writer.write(f"GET {path}{q} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        body = (await reader.readexactly(length)).decode()
        served[0] += 1
        _, part = last_position(body)
        nxt = (part[0], part[1] + 1) if part else None
    writer.close()


def rss(d, feed):
    weir = Weir(f"{d}/weir-rss", ["rss"])
    pub = publish(weir.publish_url("rss"), feed)
    path = "/live/rss/source/index.m3u8"
    for _ in range(200):
        if last_position(fetch(f"http://{weir.origin}{path}"))[1]:
            break
        time.sleep(0.1)
    rss_of = lambda: int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{weir.proc.pid}/status").read()).group(1)) / 1024
    before = rss_of()
    samples, served = [], [0]
    stop = time.time() + RSS_SECS
    host, port = weir.edge.rsplit(":", 1)

    async def run():
        tasks = [asyncio.create_task(viewer(host, int(port), path, stop, served)) for _ in range(VIEWERS)]
        while time.time() < stop:
            samples.append(rss_of()); await asyncio.sleep(1)
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    pub.terminate(); pub.wait(); weir.stop()
    return [f"| weir serve RSS, one LL event, {VIEWERS} viewers blocking at the edge | {before:.0f} MB before, max {max(samples):.0f} MB "
            f"({served[0]} playlist responses in {RSS_SECS} s) |"]


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    d = tempfile.mkdtemp(prefix="weir-ll-bench-")
    feed = f"{d}/gop2s.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "3", "-i", CLIP, "-c:v", "libx264", "-preset", "veryfast", "-g", "50",
                    "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "2500k", "-c:a", "aac", "-b:a", "128k", "-f", "flv", feed], check=True)
    report = ["| measure | result |", "|---|---|"]
    report += freshness(d, feed)
    report += latency(d)
    report += rss(d, feed)
    print("\n".join(report))


if __name__ == "__main__":
    main()
