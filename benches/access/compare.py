#!/usr/bin/env python3
"""What viewer access and AES-128 cost, side by side in one run.

1. Edge throughput (wrk, 64 connections, 2 cores shared with wrk): one `weir serve` (release
   build) with two passthrough events publishing the same clip: `open` (no access options)
   and `guarded` (require_token, geo_allow = ["GB"] with the MaxMind test database, wrk
   behind a trusted proxy sending X-Forwarded-For of a GB address, so every request is
   resolved to a country, its token verified and, for playlists, rewritten). The same cached
   segment and the same master playlist of each event, alternating open/guarded runs.
   Target (issue 10): guarded segment throughput >= 0.95x open.
2. Encryption CPU: the same 60 s 720p FLV (x264, 2 s GOPs) published as fast as RTMP takes it
   to a passthrough event in the clear and to one with `encryption = "aes-128"` (a new key
   every 10 segments), alternating, 3 runs each; weir's CPU seconds per media second is the
   share of one core a real-time stream takes. Target: encryption adds < 2% of one core.

Usage: benches/access/compare.py [--quick]
(needs: scripts/setup.sh --bench, cargo build --release --bin weir)
"""
import hashlib, hmac, os, re, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, cpu_seconds, fetch, segments, tree  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
GEO = os.path.join(ROOT, "assets/geo/GeoIP2-Country-Test.mmdb")
SECRET = "bench-token-secret-0123456789abcdef"
QUICK = "--quick" in sys.argv
SECS = 8 if QUICK else 15
ROUNDS = 1 if QUICK else 2


def token(event):
    msg = f"kid=b1~exp={int(time.time()) + 3600}~ev={event}"
    return msg + "~sig=" + hmac.new(SECRET.encode(), msg.encode(), hashlib.sha256).hexdigest()


def fetch_gb(url):
    """GET as a viewer in GB behind the trusted proxy."""
    req = urllib.request.Request(url, headers={"X-Forwarded-For": "81.2.69.142"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


def wrk(url, header=None):
    cmd = ["wrk", "-t2", "-c64", f"-d{SECS}s", "--latency"]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(cmd + [url], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} errors on {url}")
    return rps, float(p99.group(1)) * scale


def throughput():
    extra = (f'[access]\ntoken_keys = {{ b1 = "{SECRET}" }}\ntrusted_proxies = ["127.0.0.1"]\n'
             f'geoip_database = "{GEO}"\n[packager]\nwindow_segments = 20\n')
    proc, a = serve(extra + ''.join(
        f'[[events]]\nid = "{e}"\nstream_key = "{e}-key-0000"\nladder = "passthrough"\n{opts}\n'
        for e, opts in [("open", ""), ("guarded", 'access = { require_token = true, geo_allow = ["GB"] }')]))
    edge = a["edge"]
    pubs = [subprocess.Popen(["ffmpeg", "-v", "error", "-stream_loop", "-1", "-re", "-i", CLIP, "-c", "copy",
                              "-f", "flv", f"rtmp://{a['rtmp']}/live/{e}-key-0000"])
            for e in ("open", "guarded")]
    try:
        tok = {"open": None, "guarded": token("guarded")}
        q = lambda e: f"?token={tok[e]}" if tok[e] else ""
        for _ in range(200):
            if all(len(segments(fetch_gb(f"http://{edge}/live/{e}/source/index.m3u8{q(e)}"))) >= 3 for e in tok):
                break
            time.sleep(0.1)
        urls = {}
        for e in tok:
            seg = segments(fetch_gb(f"http://{edge}/live/{e}/source/index.m3u8{q(e)}"))[0][0]
            seg = seg.split("?")[0]
            urls[(e, "segment")] = f"http://{edge}/live/{e}/source/{seg}{q(e)}"
            urls[(e, "master")] = f"http://{edge}/live/{e}/master.m3u8{q(e)}"
        xff = "X-Forwarded-For: 81.2.69.142"
        results = {k: [] for k in urls}
        for _ in range(ROUNDS):
            for kind in ("segment", "master"):
                for e in ("open", "guarded"):
                    results[(e, kind)].append(wrk(urls[(e, kind)], xff))
        rows = []
        for kind in ("segment", "master"):
            o = statistics.median(r[0] for r in results[("open", kind)])
            g = statistics.median(r[0] for r in results[("guarded", kind)])
            op = statistics.median(r[1] for r in results[("open", kind)])
            gp = statistics.median(r[1] for r in results[("guarded", kind)])
            rows.append((kind, o, op, g, gp, g / o))
        return rows
    finally:
        for p in pubs:
            p.kill()
        proc.kill()


def flv():
    out = os.path.join(tempfile.gettempdir(), "weir-bench-access-720p.flv")
    if not os.path.exists(out):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "11", "-i", CLIP, "-t", "60",
                        "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-keyint_min", "50",
                        "-sc_threshold", "0", "-b:v", "3000k", "-c:a", "aac", "-b:a", "128k", "-f", "flv", out],
                       check=True)
    return out


def serve(conf):
    """`weir serve` on loopback with the configuration text `conf`: (process, addresses)."""
    d = tempfile.mkdtemp(prefix="weir-bench-access-")
    open(f"{d}/weir.toml", "w").write(conf)
    proc = subprocess.Popen([WEIR, "serve", "--config", f"{d}/weir.toml", "--rtmp-listen", "127.0.0.1:0",
                             "--srt-listen", "127.0.0.1:0", "--origin-listen", "127.0.0.1:0",
                             "--edge-listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    return proc, dict(kv.split("=") for kv in proc.stdout.readline().split()[2:])


def cpu_per_media_second(encrypted, file):
    extra = 'encryption = "aes-128"\n' if encrypted else ""
    proc, a = serve('[packager]\nwindow_segments = 100\n[[events]]\nid = "e"\nstream_key = "e-key-0000"\n'
                    f'ladder = "passthrough"\n{extra}')
    try:
        before = cpu_seconds(tree(proc.pid))
        subprocess.run(["ffmpeg", "-v", "error", "-i", file, "-c", "copy", "-f", "flv",
                        f"rtmp://{a['rtmp']}/live/e-key-0000"], check=True)
        text = ""
        for _ in range(100):
            text = fetch(f"http://{a['origin']}/live/e/source/index.m3u8") or ""
            if sum(s[1] for s in segments(text)) >= 58:
                break
            time.sleep(0.1)
        used = cpu_seconds(tree(proc.pid)) - before
        media = sum(s[1] for s in segments(text))
        keys = len(set(re.findall(r'URI="(/keys/[^"]+)"', text)))
        return used / media, keys
    finally:
        proc.kill()


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    print("## Edge throughput, wrk -t2 -c64, cached objects (req/s, p99 ms)\n")
    print("| object | open | open p99 | guarded | guarded p99 | guarded/open |")
    print("|---|---|---|---|---|---|")
    for kind, o, op, g, gp, ratio in throughput():
        print(f"| {kind} | {o:,.0f} | {op:.1f} | {g:,.0f} | {gp:.1f} | {ratio:.3f} |")
    file = flv()
    runs = {False: [], True: []}
    for _ in range(1 if QUICK else 3):
        for enc in (False, True):
            runs[enc].append(cpu_per_media_second(enc, file))
    clear = statistics.median(r[0] for r in runs[False])
    enc = statistics.median(r[0] for r in runs[True])
    print("\n## Packaging CPU, 60 s of 720p (3 Mbit/s) published as fast as possible\n")
    print("| event | CPU s per media s (runs) | median | keys listed |")
    print("|---|---|---|---|")
    print(f"| clear | {', '.join(f'{r[0]:.4f}' for r in runs[False])} | {clear:.4f} | - |")
    print(f"| aes-128 | {', '.join(f'{r[0]:.4f}' for r in runs[True])} | {enc:.4f} | {runs[True][0][1]} |")
    print(f"\nEncryption adds {100 * (enc - clear):.2f}% of one core per real-time stream.")


if __name__ == "__main__":
    main()
