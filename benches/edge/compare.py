#!/usr/bin/env python3
"""The edge under load, side by side in one run, on loopback (2 cores shared by everything).

One `weir serve` (release build) origin with a passthrough event (the BBB clip looped in real
time), and in front of it, each alone on the load in turn:
- a standalone `weir edge` (plain HTTP), and one with TLS (`[edge.http] tls_cert_file`),
- nginx proxy_cache (2 workers; plain, and TLS with HTTP/2),
- varnish (plain).

1. wrk -t2 -c64 for 10 s on a cached segment (about 0.8 MB) and on the cached master playlist,
   over HTTP and over HTTPS (HTTP/1.1): requests/s, p99, and the server's CPU time per
   request (all its processes, user + system, from /proc). wrk runs on the same two cores, so
   its own CPU per request caps every server's req/s alike; CPU per request is what decides
   throughput on an edge whose viewers are elsewhere.
2. h2load (nghttp2-client) over HTTPS + HTTP/2: 64 clients, 10 streams each, on the master
   playlist and the segment (when h2load is installed).
3. 10,000 idle viewer connections held open on the weir edge: its resident memory before
   and with them; then on the in-process edge of the weir serve that packages the event:
   the packaging delay of its LL-HLS parts (p50/p99 over a minute) before and with them.

Targets (issue 11): cached segment >= 1.2x nginx req/s with p99 <= nginx's; cached playlist
>= 1.5x nginx; the same over TLS and HTTP/2; 10,000 idle connections add < 200 MB.

Usage: benches/edge/compare.py [--quick]
(needs: scripts/setup.sh --bench, cargo build --release --bin weir)
"""
import os, re, resource, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (ROOT, WEIR, Varnish, Weir, cpu_seconds, fetch, rss_mb, free_port, segments,  # noqa: E402
                      tree, wait_port)

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
QUICK = "--quick" in sys.argv
SECS = 5 if QUICK else 10
IDLE = 2_000 if QUICK else 10_000


def cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return f"{d}/cert.pem", f"{d}/key.pem"


def weir_edge(d, origin, tls=None):
    os.makedirs(d, exist_ok=True)
    conf = "[edge.http]\nmax_connections = 30000\nmax_connections_per_ip = 0\nheader_read_timeout_ms = 60000\n"
    if tls:
        conf += f'tls_cert_file = "{tls[0]}"\ntls_key_file = "{tls[1]}"\n'
    open(f"{d}/edge.toml", "w").write(conf)
    p = subprocess.Popen([WEIR, "edge", "--config", f"{d}/edge.toml", "--upstream", f"http://{origin}",
                          "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    return p, re.search(r"edge=(\S+)", line).group(1)


class Nginx:
    def __init__(self, d, origin, tls):
        self.port, self.tls_port = free_port(), free_port()
        os.makedirs(f"{d}/cache", exist_ok=True)
        loc = (f'location / {{ proxy_pass http://{origin}; proxy_cache c; proxy_cache_lock on; proxy_http_version 1.1;'
               f' proxy_set_header Connection ""; proxy_cache_key $uri$is_args$args; }}')
        open(f"{d}/nginx.conf", "w").write(f"""daemon off; user root; worker_processes 2; pid {d}/nginx.pid; error_log {d}/error.log;
worker_rlimit_nofile 40000;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  # nginx ends a connection after 1,000 requests by default (HTTP/2 included: h2load counts
  # the streams in flight then as failed); weir has no such limit, so neither has nginx here.
  keepalive_requests 100000000;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=c:10m max_size=1g inactive=60s use_temp_path=off;
  server {{ listen 127.0.0.1:{self.port}; {loc} }}
  server {{ listen 127.0.0.1:{self.tls_port} ssl http2; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; {loc} }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", d, "-c", f"{d}/nginx.conf"], stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate(); self.proc.wait(10)


def wrk(url, pids=()):
    """(req/s, p99 ms, non-2xx/3xx answers, server CPU us per request) of `url`; `pids`: the
    server's processes (CPU per request is NaN without them)."""
    before = cpu_seconds(pids)
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{SECS}s", "--latency", url], capture_output=True, text=True).stdout
    cpu = cpu_seconds(pids) - before
    done = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_us = 1e6 * cpu / done if pids and done else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    m = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99, int(bad.group(1)) if bad else 0, cpu_us


def h2load(url, pids=()):
    """(req/s, failed requests, server CPU us per succeeded request) of `url` over HTTP/2."""
    if not shutil.which("h2load"):
        return None
    before = cpu_seconds(pids)
    out = subprocess.run(["h2load", "-c", "64", "-m", "10", "-t", "2", "-D", str(SECS), url],
                         capture_output=True, text=True).stdout
    cpu = cpu_seconds(pids) - before
    m = re.search(r"finished in .*?, ([0-9.]+) req/s", out)
    fails = re.search(r"(\d+) failed", out)
    ok = re.search(r"(\d+) succeeded", out)
    done = int(ok.group(1)) if ok else 0
    cpu_us = 1e6 * cpu / done if pids and done else float("nan")
    return (float(m.group(1)) if m else 0.0), (int(fails.group(1)) if fails else -1), cpu_us


def part_delay_ms(origin):
    """The p50 and p99 of weir_packager_publish_delay_seconds{kind="part"} over the exporter's
    rolling window (about a minute), ms."""
    text = fetch(f"http://{origin}/metrics") or ""
    q = {}
    for line in text.splitlines():
        m = re.match(r'weir_packager_publish_delay_seconds\{kind="part",quantile="([0-9.]+)"\} ([0-9.eE+-]+)', line)
        if m:
            q[m.group(1)] = float(m.group(2)) * 1000
    return q.get("0.5", float("nan")), q.get("0.99", float("nan"))


def idle_connections(addr, pid, hold=2.0, during_hold=None):
    host, port = addr.rsplit(":", 1)
    before = rss_mb(pid)
    socks = []
    for _ in range(IDLE):
        s = socket.create_connection((host, int(port)))
        socks.append(s)
    time.sleep(hold)  # let the edge accept and set up every connection before reading its RSS
    during = rss_mb(pid)
    if during_hold:
        during_hold()
    for s in socks:
        s.close()
    return before, during


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build first: cargo build --release --bin weir")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = tempfile.mkdtemp(prefix="weir-bench-edge-")
    tls = cert(d)
    # Its own edge holds the idle connections of the last part: no header or idle timeout
    # closes them during the measurement.
    origin = Weir(f"{d}/origin", ["e"], "passthrough",
                  "[edge.http]\nmax_connections = 30000\nheader_read_timeout_ms = 120000\n"
                  "idle_timeout_ms = 120000\n")
    pub = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", CLIP, "-c", "copy",
                            "-f", "flv", origin.publish_url("e")])
    procs = []
    try:
        for _ in range(200):
            if len(segments(fetch(f"http://{origin.origin}/live/e/source/index.m3u8"))) >= 2:
                break
            time.sleep(0.1)
        plain_edge, plain_addr = weir_edge(f"{d}/edge", origin.origin)
        tls_edge, tls_addr = weir_edge(f"{d}/edge-tls", origin.origin, tls)
        procs += [plain_edge, tls_edge]
        nginx = Nginx(f"{d}/nginx", origin.origin, tls)
        varnish = Varnish(f"{d}/varnish", origin.origin)
        systems = {
            "weir edge": (f"http://{plain_addr}", f"https://{tls_addr}"),
            "nginx proxy_cache": (f"http://127.0.0.1:{nginx.port}", f"https://127.0.0.1:{nginx.tls_port}"),
            "varnish": (f"http://127.0.0.1:{varnish.port}", None),
        }
        # Each system's processes, for its CPU per request (plain, TLS).
        pids = {
            "weir edge": ([plain_edge.pid], [tls_edge.pid]),
            "nginx proxy_cache": (tree(nginx.proc.pid), tree(nginx.proc.pid)),
            "varnish": (tree(varnish.proc.pid), None),
        }
        def newest_segment():
            # A live segment is served only while a playlist can list it (and the edges keep
            # it that long, CDN-Cache-Control): each measurement takes the newest one.
            return "/live/e/source/" + segments(fetch(f"http://{origin.origin}/live/e/source/index.m3u8"))[-1][0]

        def warm(path):
            for plain, secure in systems.values():
                subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", plain + path])
                if secure:
                    subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", secure + path])
            return path

        objects = {"segment": newest_segment, "master playlist": lambda: "/live/e/master.m3u8"}
        print("## wrk -t2 -c64, cached objects (req/s / p99 ms / server CPU us per request)\n")
        print("| object | protocol | " + " | ".join(systems) + " |")
        print("|---|---|" + "---|" * len(systems))
        for obj, choose in objects.items():
            for proto, idx in (("HTTP/1.1", 0), ("HTTPS (HTTP/1.1)", 1)):
                cells = []
                for name, urls in systems.items():
                    if urls[idx] is None:
                        cells.append("-")
                        continue
                    path = warm(choose())
                    rps, p99, bad, cpu_us = wrk(urls[idx] + path, pids[name][idx])
                    cells.append(f"{rps:,.0f} / {p99:.1f} / {cpu_us:.1f}" + (f" ({bad} errors)" if bad else ""))
                print(f"| {obj} | {proto} | " + " | ".join(cells) + " |")
        if shutil.which("h2load"):
            print("\n## h2load -c64 -m10, HTTPS + HTTP/2 (req/s (failed) / server CPU us per request)\n")
            print("| object | weir edge | nginx |")
            print("|---|---|---|")
            for obj, choose in objects.items():
                path = warm(choose())
                w = h2load(systems["weir edge"][1] + path, pids["weir edge"][1])
                path = warm(choose())
                n = h2load(systems["nginx proxy_cache"][1] + path, pids["nginx proxy_cache"][1])
                print(f"| {obj} | {w[0]:,.0f} ({w[1]}) / {w[2]:.1f} | {n[0]:,.0f} ({n[1]}) / {n[2]:.1f} |")
        before, during = idle_connections(plain_addr, plain_edge.pid)
        print(f"\n## {IDLE:,} idle connections on the weir edge\n")
        print(f"RSS {before:.0f} MB before, {during:.0f} MB with them: +{during - before:.0f} MB "
              f"({1024 * (during - before) / IDLE:.1f} KiB per connection)")
        # The same on the in-process edge of the weir serve that packages the live event: the
        # packaging delay of its parts over the exporter's rolling window (a minute), before
        # and while the idle connections are open.
        nginx.stop(); varnish.stop()
        for p in procs:
            p.kill()
        procs.clear()
        time.sleep(65)
        quiet = part_delay_ms(origin.origin)
        loaded = {}
        idle_connections(origin.edge, origin.proc.pid, hold=65,
                         during_hold=lambda: loaded.setdefault("q", part_delay_ms(origin.origin)))
        print(f"\n## Packaging delay of LL-HLS parts with {IDLE:,} idle connections on the edge of "
              f"the same weir serve\n")
        print("| | p50 ms | p99 ms |\n|---|---|---|")
        print(f"| before | {quiet[0]:.1f} | {quiet[1]:.1f} |")
        print(f"| with them | {loaded['q'][0]:.1f} | {loaded['q'][1]:.1f} |")
    finally:
        for p in procs:
            p.kill()
        pub.kill()
        origin.proc.kill()


if __name__ == "__main__":
    main()
