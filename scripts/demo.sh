#!/usr/bin/env bash
# The main job: builds and starts `weir serve`, publishes the bundled Big Buck Bunny clip in a
# loop over RTMP with the ffmpeg CLI, and prints the URL to play. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin weir
RTMP=${WEIR_RTMP:-127.0.0.1:1935} EDGE=${WEIR_EDGE:-127.0.0.1:8080} ORIGIN=${WEIR_ORIGIN:-127.0.0.1:8081}
SRT=${WEIR_SRT:-127.0.0.1:9000}
target/release/weir serve --rtmp-listen "$RTMP" --edge-listen "$EDGE" --origin-listen "$ORIGIN" --srt-listen "$SRT" &
WEIR=$!
trap 'kill $WEIR ${FF:-} 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do (exec 3<>/dev/tcp/${RTMP%:*}/${RTMP#*:}) 2>/dev/null && break; sleep 0.1; done
ffmpeg -v error -nostdin -re -stream_loop -1 -i assets/media/bigbuckbunny.mp4 -c copy -f flv "rtmp://$RTMP/live/demo-key" &
FF=$!
URL="http://$EDGE/live/demo/master.m3u8"
echo
echo "weir is live (default ABR ladder: 720p/480p/360p + AAC). Play it with:  ffplay $URL"
echo "  or in a browser with hls.js: https://hlsjs.video-dev.org/demo/?src=$URL (from this machine)"
echo "Ctrl-C stops."
wait $WEIR
