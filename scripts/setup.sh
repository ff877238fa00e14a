#!/usr/bin/env bash
# Installs what weir needs on a fresh Debian machine (root): FFmpeg's and libsrt's development
# libraries (weir links the system FFmpeg, and libsrt for its SRT listener),
# pkg-config and clang (ffmpeg-next links the system FFmpeg; bindgen needs libclang), make
# (jemalloc, weir's allocator, builds from source), the
# ffmpeg CLI (publishing and playback in tests and the demo), nginx with the RTMP module, h2load and
# wrk (benchmarks only), Debian's chromium with hls.js and playwright-core from npm (the
# player test), curl (concurrent viewers in tests), Python's m3u8 package (LL-HLS checker),
# and the SRT publishers the SRT tests use besides ffmpeg: srt-live-transmit (srt-tools) and
# GStreamer's srtsink and tsparse (gstreamer1.0-plugins-bad), and PostgreSQL's server binaries
# (the control-plane test starts its own throwaway server on loopback).
set -euo pipefail
need=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v clang >/dev/null || need+=(clang)
command -v make >/dev/null || need+=(make)
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null)" ] || need+=(libclang-dev)
for lib in libavcodec libavformat libavutil libswscale libswresample libavfilter libavdevice; do
  pkg-config --exists "$lib" 2>/dev/null || need+=("$lib-dev")
done
command -v chromium >/dev/null || need+=(chromium)
command -v curl >/dev/null || need+=(curl)
command -v npm >/dev/null || need+=(nodejs npm)
pkg-config --exists srt 2>/dev/null || need+=(libsrt-openssl-dev)
command -v srt-live-transmit >/dev/null || need+=(srt-tools)
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
[ -n "$(ls /usr/lib/*/gstreamer-1.0/libgstsrt.so 2>/dev/null)" ] || need+=(gstreamer1.0-plugins-bad)
[ -n "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" ] || need+=(postgresql)
if [ "${1:-}" = "--bench" ]; then
  command -v nginx >/dev/null || need+=(nginx)
  [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
  command -v wrk >/dev/null || need+=(wrk)
  command -v varnishd >/dev/null || need+=(varnish)
  command -v h2load >/dev/null || need+=(nghttp2-client)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The downloaded .deb files are not needed once installed (several hundred MB).
  $SUDO apt-get clean
fi
# The LL-HLS playlist checker's independent parser (Python m3u8 >= 6 reads the LL-HLS tags).
python3 -c 'import importlib.metadata as m, sys; sys.exit(int(m.version("m3u8").split(".")[0]) < 6)' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "m3u8>=6"
# schemathesis checks the admin API against its OpenAPI document in the tests.
python3 -c 'import schemathesis' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "schemathesis>=4,<5"
# FFmpeg 9 (static, from PyPI's imageio-ffmpeg) for the Enhanced RTMP tests: Debian's FFmpeg
# 5.1 cannot send HEVC or AV1 over RTMP. Installed into the project (.tools/), not the system.
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
if ! ls "$root_dir"/.tools/imageio-ffmpeg/imageio_ffmpeg/binaries/ffmpeg-linux-* >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$root_dir/.tools/imageio-ffmpeg" "imageio-ffmpeg>=0.6"
fi
chmod +x "$root_dir"/.tools/imageio-ffmpeg/imageio_ffmpeg/binaries/ffmpeg-linux-*
# The player test's hls.js and playwright-core (no browser download: Debian's chromium is used),
# and shaka-packager's Linux binary (the cbcs test decrypts weir's segments with it).
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -d "$root/tests/player/node_modules/hls.js" ] || [ ! -d "$root/tests/player/node_modules/playwright-core" ] \
   || [ ! -x "$root/tests/player/node_modules/shaka-packager/bin/packager-linux-x64" ]; then
  (cd "$root/tests/player" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
command -v cargo >/dev/null || { echo "weir needs a Rust toolchain (cargo) on PATH" >&2; exit 1; }
