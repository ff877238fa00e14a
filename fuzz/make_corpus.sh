#!/usr/bin/env bash
# Regenerates the seed corpus under fuzz/corpus/ (committed; run once, or when a parser
# learns a new input kind). Seeds are small valid inputs: libFuzzer mutates them.
# Needs ffmpeg (with libx264 and libx265) and cargo.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
c=corpus
rm -rf "$c"
mkdir -p "$c"/{rtmp_session,flv_tags,codec_configs,mpegts,route,directives}
src=../assets/media/bigbuckbunny.mp4
# Tiny pictures keep every frame far under the pre-publish message limit (16 KiB).
ffmpeg -v error -y -i "$src" -t 0.6 -vf scale=96:54 -c:v libx264 -g 6 -bf 2 \
  -c:a aac -b:a 24k -ac 1 -f flv "$tmp/avc.flv"
ffmpeg -v error -y -i "$src" -t 0.6 -vf scale=96:54 -c:v libx264 -g 6 -bf 2 \
  -c:a aac -b:a 24k -ac 1 -f mpegts "$tmp/avc.ts"
ffmpeg -v error -y -i "$src" -t 0.4 -vf scale=96:54 -c:v libx265 -x265-params log-level=none \
  -an -f mpegts "$tmp/hevc.ts"
head -c 24064 "$tmp/avc.ts" > "$c/mpegts/avc-aac"   # 128 packets
head -c 18800 "$tmp/hevc.ts" > "$c/mpegts/hevc"     # 100 packets
cargo run -q --example rtmp_corpus -- "$tmp/avc.flv" "$c/rtmp_session"
# flv_tags: selector byte (0 video, 1 audio, 2 a whole file) + body.
python3 - "$tmp/avc.flv" "$c" <<'PY'
import struct, sys, re
flv, c = open(sys.argv[1], 'rb').read(), sys.argv[2]
open(f'{c}/flv_tags/file', 'wb').write(b'\x02' + flv[:6000])
pos, n = 13, {8: 0, 9: 0}
while pos + 11 <= len(flv) and sum(n.values()) < 8:
    kind, size = flv[pos], int.from_bytes(flv[pos+1:pos+4], 'big')
    body = flv[pos+11:pos+11+size]
    pos += 11 + size + 4
    if kind not in n or n[kind] >= 4:
        continue
    n[kind] += 1
    open(f'{c}/flv_tags/{"video" if kind == 9 else "audio"}-{n[kind]}', 'wb').write((b'\x00' if kind == 9 else b'\x01') + body)
    # Sequence headers give the configuration records (avcC after 5 bytes, ASC after 2).
    if kind == 9 and body[1] == 0:
        open(f'{c}/codec_configs/avcc', 'wb').write(b'\x00' + body[5:])
    if kind == 8 and body[1] == 0:
        open(f'{c}/codec_configs/asc', 'wb').write(b'\x03' + body[2:])
# hvcC and av1C: the records the media crate's unit tests hold (x265 and SVT-AV1, 720p).
def const(path, name):
    src = open(path).read()
    body = src[src.index(f'const {name}: &[u8] = &['):]
    body = body[:body.index('];')]
    return bytes(int(x, 16) for x in re.findall(r'0x([0-9a-f]{2})', body))
open(f'{c}/codec_configs/hvcc', 'wb').write(b'\x01' + const('../media/src/hevc.rs', 'X265_720P'))
open(f'{c}/codec_configs/av1c', 'wb').write(b'\x02' + const('../media/src/av1.rs', 'SVT_720P'))
PY
i=0
for p in /live/demo/master.m3u8 /live/demo/720p/index.m3u8 /live/demo/audio/mi8k2v1c0/init.mp4 \
  /live/demo/source/mi8k2v1c0/1763716172123.m4s /live/demo/source/mi8k2v1c0/1763716172123.3.m4s \
  /keys/demo/0a1b2c3d4e5f6789 /live/demo/../x; do
  i=$((i + 1)); printf '%s' "$p" > "$c/route/$i"
done
i=0
for q in '_HLS_msn=1763716172123&_HLS_part=3' '_HLS_msn=12' '_HLS_skip=YES' '_HLS_msn=5&_HLS_skip=v2' \
  'token=kid=k1~exp=1~ev=demo~sig=00&_HLS_msn=2&_HLS_part=0' '_HLS_part=1'; do
  i=$((i + 1)); printf '%s' "$q" > "$c/directives/$i"
done
du -sh "$c"/*
