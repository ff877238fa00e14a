//! `cbcs` subsample maps of publishers' video samples (ISO/IEC 23001-7 §10.4): H.264 slice
//! headers (through h264-reader) and HEVC slice segment headers (weir's own reader), with
//! the parameter sets of real streams and whatever in-band ones a sample carries. Each
//! sample maps, covering exactly its bytes, or is refused; never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_media::{AvcConfig, CodecConfig, HevcConfig, ProtectedRanges};

/// The body of the first `fourcc` box in `init`.
fn record(init: &[u8], fourcc: &[u8; 4]) -> Bytes {
    let at = init.windows(4).position(|w| w == fourcc).expect("a record");
    let size = u32::from_be_bytes(init[at - 4..at].try_into().unwrap()) as usize;
    Bytes::copy_from_slice(&init[at + 4..at - 4 + size])
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, sample)) = data.split_first() else {
        return;
    };
    let codec = if selector % 2 == 0 {
        let init = include_bytes!("../../assets/testdata/shaka-cbcs/cabac_init.mp4");
        CodecConfig::H264(AvcConfig::parse(record(init, b"avcC")).unwrap())
    } else {
        let init = include_bytes!("../../assets/testdata/shaka-cbcs/hevc_init.mp4");
        CodecConfig::H265(HevcConfig::parse(record(init, b"hvcC")).unwrap())
    };
    let mut ranges = ProtectedRanges::new(&codec).unwrap();
    let mut map = Vec::new();
    if ranges.map(sample, &mut map).is_ok() {
        let total: usize = map
            .iter()
            .map(|s| usize::from(s.clear) + s.protected as usize)
            .sum();
        assert_eq!(total, sample.len());
    }
});
