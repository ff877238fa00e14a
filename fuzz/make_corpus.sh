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
mkdir -p "$c"/{rtmp_session,flv_tags,codec_configs,mpegts,route,directives,protected_ranges}
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
# protected_ranges: selector byte (0 H.264, 1 HEVC) + the first samples of the shaka-packager
# fixtures (their slice headers are clear).
python3 - "$c" <<'PY'
import struct, sys
c = sys.argv[1]
def boxes(d):
    at, out = 0, []
    while at + 8 <= len(d):
        size = struct.unpack('>I', d[at:at+4])[0]
        out.append((d[at+4:at+8], at, size))
        at += size
    return out
def body(d, kind):
    b = next(x for x in boxes(d) if x[0] == kind)
    return d[b[1]+8:b[1]+b[2]], b[1]
for name, sel in (('cabac', 0), ('hevc', 1)):
    seg = open(f'../assets/testdata/shaka-cbcs/{name}_1.m4s', 'rb').read()
    moof, moof_at = body(seg, b'moof')
    traf, _ = body(moof, b'traf')
    trun, _ = body(traf, b'trun')
    flags, count = struct.unpack('>I', trun[:4])[0] & 0xffffff, struct.unpack('>I', trun[4:8])[0]
    at, pos = 12 + (4 if flags & 4 else 0), moof_at + struct.unpack('>i', trun[8:12])[0]
    for i in range(3):
        at += 4 if flags & 0x100 else 0
        size = struct.unpack('>I', trun[at:at+4])[0]
        at += 4 + (4 if flags & 0x400 else 0) + (4 if flags & 0x800 else 0)
        open(f'{c}/protected_ranges/{name}{i}', 'wb').write(bytes([sel]) + seg[pos:pos+size])
        pos += size
PY
du -sh "$c"/*
