//! Decoder configuration records as publishers send them: avcC (ISO/IEC 14496-15 §5.3.3),
//! hvcC (§8.3.3), av1C (AV1-ISOBMFF §2.3) and AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
//! Each parses or is refused, never panics; what parses gives a codec string.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_media::{AacConfig, Av1Config, AvcConfig, HevcConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, record)) = data.split_first() else {
        return;
    };
    let record = Bytes::copy_from_slice(record);
    match selector % 4 {
        0 => drop(AvcConfig::parse(record)),
        1 => drop(HevcConfig::parse(record)),
        2 => drop(Av1Config::parse(record)),
        _ => drop(AacConfig::parse(record)),
    }
});
