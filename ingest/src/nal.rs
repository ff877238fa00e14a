//! H.264 byte-stream plumbing between the container form weir carries (length-prefixed NAL
//! units, ISO/IEC 14496-15 §5.3.2) and the Annex B form FFmpeg's decoder and libx264 speak
//! (ITU-T H.264 Annex B), done by hand so that no FFmpeg struct field has to be touched.

/// `nal_unit_type` of a sequence parameter set.
pub(crate) const NAL_SPS: u8 = 7;
/// `nal_unit_type` of a picture parameter set.
pub(crate) const NAL_PPS: u8 = 8;

/// The NAL units of an Annex B byte stream (start codes `00 00 01` or `00 00 00 01`), without
/// their start codes. Trailing zero bytes of a unit (the next start code's leading zero) are
/// trimmed.
pub(crate) fn annex_b_units(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|s| s - 3)
        .chain(std::iter::once(stream.len()))
        .collect();
    starts.into_iter().zip(ends).filter_map(move |(s, e)| {
        let mut unit = &stream[s..e];
        while let [rest @ .., 0] = unit {
            unit = rest;
        }
        (!unit.is_empty()).then_some(unit)
    })
}

/// Appends `units` to `out` as a length-prefixed sample (4-byte big-endian lengths).
pub(crate) fn to_length_prefixed<'a>(units: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for unit in units {
        out.extend_from_slice(&(unit.len() as u32).to_be_bytes());
        out.extend_from_slice(unit);
    }
}

/// Appends the NAL units of a length-prefixed sample (lengths of `length_size` bytes) to
/// `out` in Annex B form. Returns `false`, having appended what came before, if a length runs
/// past the end of the sample.
pub(crate) fn to_annex_b(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> bool {
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return false;
        }
        let len = rest[..length_size]
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        rest = &rest[length_size..];
        if len > rest.len() {
            return false;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    true
}

/// The `nal_unit_type` of a NAL unit.
pub(crate) fn unit_type(unit: &[u8]) -> u8 {
    unit.first().map_or(0, |b| b & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_between_annex_b_and_length_prefixed() {
        let stream = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6,
        ];
        let units: Vec<&[u8]> = annex_b_units(&stream).collect();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5, 6]]);
        assert_eq!(
            units.iter().map(|u| unit_type(u)).collect::<Vec<_>>(),
            [NAL_SPS, NAL_PPS, 5]
        );
        let mut sample = Vec::new();
        to_length_prefixed(units.into_iter(), &mut sample);
        assert_eq!(&sample[..7], &[0, 0, 0, 3, 0x67, 1, 2]);
        let mut back = Vec::new();
        assert!(to_annex_b(&sample, 4, &mut back));
        let again: Vec<&[u8]> = annex_b_units(&back).collect();
        assert_eq!(again.len(), 3);
        // A length past the end is refused, keeping what came before.
        let mut out = Vec::new();
        assert!(!to_annex_b(&[0, 0, 0, 9, 1, 2], 4, &mut out));
        assert!(out.is_empty());
    }
}
