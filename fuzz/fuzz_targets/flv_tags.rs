//! FLV tag bodies (legacy and Enhanced RTMP audio and video) and FLV files: weir's parsers
//! answer every input with a tag or an error, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let timestamp = i64::from(selector) * 1000;
    match selector % 3 {
        0 => drop(weir_ingest::parse_video(timestamp, body)),
        1 => drop(weir_ingest::parse_audio(timestamp, body)),
        _ => {
            for (kind, ms, tag) in weir_ingest::file_tags(&body) {
                let _ = match kind {
                    9 => weir_ingest::parse_video(i64::from(ms), tag).map(drop),
                    8 => weir_ingest::parse_audio(i64::from(ms), tag).map(drop),
                    _ => Ok(()),
                };
            }
        }
    }
});
