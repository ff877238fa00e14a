"""Helpers shared by weir's side-by-side benchmarks (benches/*/compare.py)."""
import os, socket, subprocess, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIR = os.path.join(ROOT, "target/release/weir")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


def segments(text):
    """[(uri, duration)] of a media playlist."""
    out, dur = [], None
    for line in (text or "").splitlines():
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line and not line.startswith("#") and dur is not None:
            out.append((line, dur)); dur = None
    return out


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK"); total = 0.0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except FileNotFoundError:
            pass
    return total


def tree(pid):
    out = [pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                    out += tree(int(p))
            except Exception:
                pass
    return out


def rss_mb(pid):
    """Resident memory of process `pid`, MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


class Weir:
    """`weir serve` (release build) on loopback with one event per key, each published in
    `ladder` ("passthrough", "default", or a ladder defined in `extra` TOML)."""

    def __init__(self, d, keys, ladder="passthrough", extra=""):
        os.makedirs(d, exist_ok=True)
        conf = extra + "".join(f'[[events]]\nid = "{k}"\nstream_key = "{k}-key-0000"\nladder = "{ladder}"\n' for k in keys)
        open(f"{d}/weir.toml", "w").write(conf)
        self.proc = subprocess.Popen([WEIR, "serve", "--config", f"{d}/weir.toml", "--rtmp-listen", "127.0.0.1:0", "--srt-listen", "127.0.0.1:0",
                                      "--origin-listen", "127.0.0.1:0", "--edge-listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        a = dict(kv.split("=") for kv in line.split()[2:])
        self.rtmp, self.origin, self.edge, self.srt = a["rtmp"], a["origin"], a["edge"], a.get("srt")

    def publish_url(self, key): return f"rtmp://{self.rtmp}/live/{key}-key-0000"
    def playlist(self, key, edge=False, rendition="source"):
        return f"http://{self.edge if edge else self.origin}/live/{key}/{rendition}/index.m3u8"
    def stop(self): self.proc.terminate(); self.proc.wait(10)


class Varnish:
    """varnishd on loopback in front of `origin` (host:port), default VCL, 256 MB of malloc."""

    def __init__(self, d, origin):
        self.port = free_port()
        os.makedirs(d, exist_ok=True)
        self.proc = subprocess.Popen(["varnishd", "-F", "-j", "none", "-n", f"{d}/varnish", "-a", f"127.0.0.1:{self.port}",
                                      "-b", origin, "-s", "malloc,256m"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate(); self.proc.wait(10)
