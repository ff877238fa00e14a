#!/usr/bin/env python3
"""weir's transcoder vs the ffmpeg CLI, side by side in one run, on loopback.

The source: the BBB clip (720p25 H.264 + AAC 5.1) copied LOOPS times into one FLV. The ladder:
weir's built-in default, which for a 720p source is 720p 2800k, 480p 1200k, 360p 700k (libx264
veryfast) and AAC-LC 128k stereo 48 kHz.

1. CPU seconds per media second. ffmpeg CLI: one command, decode once, `split` + `scale`
   (bicubic) to the three sizes, libx264 with the options weir passes (`x264_options` in
   ingest/src/transcode/video.rs: preset, profile, b, maxrate, bufsize, g, sc_threshold=0,
   forced-idr, open-gop=0) and keyframes forced every 2 s, AAC to the null muxer; CPU from
   getrusage of the child. weir: the same FLV published as fast as weir takes it (`-c copy`,
   no -re; weir's bounded queue holds the publisher back); CPU of the weir process from /proc
   between the publish and the last segment being listed.
2. Speed, as a multiple of real time, for both (media seconds / wall seconds).
3. Latency added by transcoding: the FLV published in real time (-re); time from the
   publisher's start to the first segment listed in each rendition's playlist, weir's
   default ladder vs weir passthrough (the difference is what transcoding adds).

Usage: benches/transcode/compare.py [--quick]   (needs a release build: cargo build --release)
"""
import os, resource, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, WEIR, Weir, cpu_seconds, fetch, segments  # noqa: E402

CLIP = os.path.join(ROOT, "assets/media/bigbuckbunny.mp4")
QUICK = "--quick" in sys.argv
LOOPS = 4 if QUICK else 10
REPS = 3 if QUICK else 5
RUNGS = [("720p", 1280, 720, 2800, "high"), ("480p", 854, 480, 1200, "main"), ("360p", 640, 360, 700, "main")]


def x264_args(kbps, profile):
    # The options weir's x264_options() gives a default-ladder rung (gop: 20 s at 25 fps).
    return ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", profile, "-b:v", f"{kbps}k",
            "-maxrate", f"{kbps * 11 // 10}k", "-bufsize", f"{kbps * 2}k", "-g", "500",
            "-sc_threshold", "0", "-forced-idr", "1", "-x264-params", "open-gop=0:sync-lookahead=0",
            "-force_key_frames", "expr:gte(t,n_forced*2)"]


def media_seconds(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         capture_output=True, text=True).stdout
    return float(out.strip())


def ffmpeg_cli(flv):
    graph = "[0:v]split=3[a][b][c];[a]null[o0];[b]scale=854:480:flags=bicubic[o1];[c]scale=640:360:flags=bicubic[o2]"
    args = ["ffmpeg", "-v", "fatal", "-nostdin", "-y", "-i", flv, "-filter_complex", graph]
    for i, (_, _, _, kbps, profile) in enumerate(RUNGS):
        args += ["-map", f"[o{i}]"] + x264_args(kbps, profile) + ["-f", "null", "-"]
    args += ["-map", "0:a", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000", "-f", "null", "-"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(args, check=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def publish(url, flv, realtime):
    args = ["ffmpeg", "-v", "error", "-nostdin"] + (["-re"] if realtime else []) + ["-i", flv, "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def listed_seconds(weir, key, rendition):
    return sum(d for _, d in segments(fetch(weir.playlist(key, rendition=rendition))))


def weir_transcode(d, flv, media):
    weir = Weir(d, ["t"], ladder="default", extra="[packager]\nwindow_segments = 1000\n")
    try:
        cpu0 = cpu_seconds([weir.proc.pid])
        t0 = time.monotonic()
        pub = publish(weir.publish_url("t"), flv, realtime=False)
        pub.wait()
        deadline = time.monotonic() + media * 2 + 60
        while time.monotonic() < deadline:
            if all(listed_seconds(weir, "t", r[0]) >= media - 0.2 for r in RUNGS):
                break
            time.sleep(0.05)
        else:
            raise SystemExit("weir never listed all the media")
        wall = time.monotonic() - t0
        cpu = cpu_seconds([weir.proc.pid]) - cpu0
        return cpu, wall
    finally:
        weir.stop()


def first_segment_latency(d, flv, ladder, rendition):
    weir = Weir(d, ["l"], ladder=ladder)
    try:
        t0 = time.monotonic()
        pub = publish(weir.publish_url("l"), flv, realtime=True)
        while time.monotonic() - t0 < 30:
            if segments(fetch(weir.playlist("l", rendition=rendition))):
                latency = time.monotonic() - t0
                break
            time.sleep(0.005)
        else:
            latency = float("nan")
        pub.kill(); pub.wait()
        return latency
    finally:
        weir.stop()


def main():
    if not os.path.exists(WEIR):
        raise SystemExit("build weir first: cargo build --release")
    with tempfile.TemporaryDirectory() as d:
        flv = f"{d}/bbb.flv"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(LOOPS - 1), "-i", CLIP, "-c", "copy", "-f", "flv", flv], check=True)
        media = media_seconds(flv)
        print(f"source: BBB 720p25 copied {LOOPS}x = {media:.1f} s; ladder 720p/480p/360p veryfast + AAC 128k; {os.cpu_count()} cores")
        # Alternating runs, so that both see the same machine; medians reported.
        cli, weir = [], []
        for rep in range(REPS):
            cli.append(ffmpeg_cli(flv))
            weir.append(weir_transcode(f"{d}/weir{rep}", flv, media))
            print(f"run {rep + 1}: CPU s/media s ffmpeg CLI {cli[-1][0] / media:.3f}, weir {weir[-1][0] / media:.3f}")
        med = statistics.median
        cli_cpu, cli_wall = med(c for c, _ in cli), med(w for _, w in cli)
        weir_cpu, weir_wall = med(c for c, _ in weir), med(w for _, w in weir)
        ratios = sorted(w[0] / c[0] for c, w in zip(cli, weir))
        print(f"\n## CPU seconds per media second, median of {REPS} (lower is better)")
        print(f"ffmpeg CLI: {cli_cpu / media:.3f}   weir: {weir_cpu / media:.3f}   ratio weir/CLI: {weir_cpu / cli_cpu:.3f} "
              f"(per-run ratios {', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.05)")
        print("\n## Speed, multiple of real time, median (higher is better)")
        print(f"ffmpeg CLI: {media / cli_wall:.2f}x   weir: {media / weir_wall:.2f}x (target >= 1.5x; weir's includes publishing and packaging)")
        short = f"{d}/short.flv"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", CLIP, "-c", "copy", "-f", "flv", short], check=True)
        print("\n## First segment listed after the publisher starts (-re, 2 s target)")
        base = first_segment_latency(f"{d}/lat-pass", short, "passthrough", "source")
        print(f"passthrough (source GOP 5.28 s): {base:.3f} s")
        for name, *_ in RUNGS:
            lat = first_segment_latency(f"{d}/lat-{name}", short, "default", name)
            print(f"default ladder, {name}: {lat:.3f} s (target <= 2.300 s: one segment + 300 ms)")


if __name__ == "__main__":
    main()
