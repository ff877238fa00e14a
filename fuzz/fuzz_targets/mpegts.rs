//! MPEG-TS as SRT publishers send it (ISO/IEC 13818-1): PAT/PMT, PES, H.264/HEVC access
//! units and ADTS. The demuxer reports problems as events and never panics, however the
//! bytes are split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, ts)) = data.split_first() else {
        return;
    };
    let mut demuxer = weir_ingest::TsDemuxer::new();
    let mut events = Vec::new();
    // An SRT payload is usually 7 packets; split where the first byte says.
    let at = (usize::from(split) * 7).min(ts.len());
    demuxer.push(&ts[..at], &mut events);
    demuxer.push(&ts[at..], &mut events);
    demuxer.finish(&mut events);
});
