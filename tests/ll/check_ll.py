#!/usr/bin/env python3
"""Checks LL-HLS media playlists with an independent parser (the `m3u8` package, >= 6).

Usage: check_ll.py DIR RENDITION...
DIR holds playlists saved by the end-to-end tests: `{rendition}.{n}.m3u8` (full playlists,
in the order they were fetched) and `{rendition}.{n}.delta.m3u8` (answers to _HLS_skip=YES).
The renditions named are the siblings every playlist must report. Prints one JSON object:
{"checked": N, "deltas": N, "short_parts": [...], "errors": [...]}, and exits 1 if there
are errors. Short parts (under 85% of PART-TARGET, not independent, not the last of their
segment: a SHOULD of RFC 8216bis 4.4.4.9) are listed apart: the test bounds their number.
The rules are RFC 8216bis (draft 20) sections 4.4.3.7-4.4.5.2, 6.2.2 and 6.2.5.
"""
import json
import os
import re
import sys

import m3u8


def check(name, text, siblings, delta, errors, state):
    p = m3u8.loads(text)
    rendition = name.split(".")[0]
    err = lambda msg: errors.append(f"{name}: {msg}")
    td = p.target_duration
    state.setdefault("td", td)
    if td != state["td"]:
        err(f"EXT-X-TARGETDURATION changed from {state['td']} to {td}")
    sc = p.server_control
    part_target = p.part_inf.part_target if p.part_inf else None
    if part_target is None:
        err("no EXT-X-PART-INF")
        return
    if sc is None or sc.can_block_reload != "YES":
        err("no CAN-BLOCK-RELOAD=YES")
        return
    if sc.part_hold_back is None or sc.part_hold_back < 3 * part_target - 1e-3:
        err(f"PART-HOLD-BACK {sc.part_hold_back} < 3 x PART-TARGET {part_target}")
    if sc.hold_back is not None and sc.hold_back < 3 * td:
        err(f"HOLD-BACK {sc.hold_back} < 3 x TD")
    if sc.can_skip_until is None or sc.can_skip_until < 6 * td:
        err(f"CAN-SKIP-UNTIL {sc.can_skip_until} < 6 x TD")
    skipped = p.skip.skipped_segments if p.skip else 0
    want_version = 9 if skipped else 6
    if p.version != want_version:
        err(f"EXT-X-VERSION {p.version}, the tags used need {want_version}")
    if delta and not skipped:
        err("a delta update that skips nothing")
    complete = [s for s in p.segments if s.uri]
    trailing = [s for s in p.segments if not s.uri]
    for i, s in enumerate(complete):
        if round(s.duration) > td:
            err(f"EXTINF {s.duration} rounds above {td}")
        msn = int(re.search(r"/(\d+)\.m4s$", s.uri).group(1))
        if msn != p.media_sequence + skipped + i:
            err(f"{s.uri} at position {i} of MEDIA-SEQUENCE {p.media_sequence}")
        if s.program_date_time is None and s.current_program_date_time is None:
            err(f"{s.uri} has no date")
    for s in p.segments:
        n = len(s.parts)
        for j, part in enumerate(s.parts):
            if part.duration > part_target + 1e-6:
                err(f"part {part.uri} of {part.duration} s > PART-TARGET {part_target}")
            last = j == n - 1
            if part.duration < 0.85 * part_target and part.independent != "YES" and not last:
                # A SHOULD (RFC 8216bis 4.4.4.9): a source frame longer than the room left
                # in a part (a dropped frame) closes it early. Listed, not an error.
                state.setdefault("short", set()).add(part.uri)
    hint = p.preload_hint
    if hint is None or hint.hint_type != "PART":
        err("no EXT-X-PRELOAD-HINT:TYPE=PART")
    reported = {r.uri for r in p.rendition_reports}
    for sibling in siblings:
        if sibling != rendition and f"../{sibling}/index.m3u8" not in reported:
            err(f"no EXT-X-RENDITION-REPORT for {sibling}")
    for r in p.rendition_reports:
        if r.last_msn is None or r.last_part is None:
            err(f"rendition report {r.uri} lacks LAST-MSN/LAST-PART")
    if not any(s.parts for s in p.segments):
        err("no EXT-X-PART listed")
    # Media sequence numbers only grow from one version to the next.
    key = f"msn:{rendition}"
    if not delta:
        if p.media_sequence < state.get(key, 0):
            err("EXT-X-MEDIA-SEQUENCE went back")
        state[key] = p.media_sequence
    del trailing


def main():
    directory, siblings = sys.argv[1], sys.argv[2:]
    errors, state = [], {}
    names = sorted(
        (f for f in os.listdir(directory) if f.endswith(".m3u8")),
        key=lambda f: (f.split(".")[0], int(f.split(".")[1]), f),
    )
    deltas = 0
    for name in names:
        delta = name.endswith(".delta.m3u8")
        deltas += delta
        with open(os.path.join(directory, name)) as f:
            check(name, f.read(), siblings, delta, errors, state)
    short = sorted(state.get("short", ()))
    print(json.dumps({"checked": len(names), "deltas": deltas, "short_parts": short, "errors": errors[:50]}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
