#!/usr/bin/env bash
# Where the resident memory of `weir serve` (default ladder, release build) goes across
# publisher sessions: for each of N sessions of ~55 s (the BBB clip looped in real time), the
# process's resident memory by kind of mapping (/proc/PID/smaps) while the session is live and
# 5 s after it ended: the brk heap, anonymous mappings (malloc arenas, large allocations),
# thread stacks, and file mappings (the binary and libraries).
# Memory that stays after a session ended and grows session after session is what the
# sessions leave behind. Usage: benches/soak/sessions.sh [SESSIONS] (default 5); set
# WEIR_ENV="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2" to try another allocator.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N="${1:-5}"
D="$(mktemp -d /tmp/weir-sessions-XXXX)"
cd "$D"
printf '[[events]]\nid = "e"\nstream_key = "e-key-0000"\nladder = "default"\n' > weir.toml
env ${WEIR_ENV:-} "$ROOT/target/release/weir" serve --config weir.toml --rtmp-listen 127.0.0.1:0 \
  --origin-listen 127.0.0.1:0 --edge-listen 127.0.0.1:0 --srt-listen 127.0.0.1:0 > out.txt 2> err.txt &
W=$!
trap 'kill $W 2>/dev/null' EXIT
for _ in $(seq 1 100); do grep -q "weir ready" out.txt && break; sleep 0.3; done
R=$(grep -o "rtmp=[^ ]*" out.txt | cut -d= -f2)
sample() {
  awk -v t="$1" '
    /^[0-9a-f]+-[0-9a-f]+ /{ name=$6 }
    /^Rss:/{ if (name=="[heap]") h+=$2; else if (name ~ /stack/) s+=$2; else if (name=="") a+=$2; else f+=$2 }
    END { printf "| %s | %d | %d | %d | %d |\n", t, h/1024, a/1024, s/1024, f/1024 }' "/proc/$W/smaps"
}
echo "| when | heap MB | anonymous MB | stacks MB | files MB |"
echo "|---|---|---|---|---|"
for s in $(seq 1 "$N"); do
  ffmpeg -v error -nostdin -re -stream_loop -1 -i "$ROOT/assets/media/bigbuckbunny.mp4" -c copy \
    -f flv "rtmp://$R/live/e-key-0000" 2>/dev/null &
  P=$!
  sleep 55
  sample "session $s live"
  kill $P; wait $P 2>/dev/null || true
  sleep 5
  sample "session $s ended"
done
