//! PES packets (ISO/IEC 13818-1 §2.4.3.6), reassembled from the payloads of one PID.

use bytes::{Bytes, BytesMut};

/// The largest PES packet kept (a 4K intra picture at a high bit rate stays well under it);
/// a larger one is dropped rather than buffered without bound.
pub(crate) const MAX_PES: usize = 8 << 20;

/// One complete PES packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pes {
    /// `PTS`, 33-bit 90 kHz ticks as sent (not unwrapped).
    pub(crate) pts: Option<u64>,
    /// `DTS`, 33-bit 90 kHz ticks as sent; `None` when equal to the PTS.
    pub(crate) dts: Option<u64>,
    /// `PES_packet_data_byte`s: the elementary stream bytes.
    pub(crate) data: Bytes,
}

/// Why a PES packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PesError {
    /// No `packet_start_code_prefix`, or a header longer than the packet.
    Malformed,
    /// Longer than [`MAX_PES`].
    TooLarge,
}

/// Collects the payloads of one PID into PES packets. A packet is complete when its
/// `PES_packet_length` is reached, or (length 0, as video usually sends) when the next one
/// starts.
#[derive(Debug, Default)]
pub(crate) struct PesAssembler {
    buf: BytesMut,
    started: bool,
    oversized: bool,
}

impl PesAssembler {
    /// Adds one packet's payload; returns the packets it completes (at most two: the previous
    /// one, ended by this start, and this one if its length is already reached).
    pub(crate) fn push(&mut self, unit_start: bool, payload: &[u8]) -> Vec<Result<Pes, PesError>> {
        let mut out = Vec::new();
        if unit_start {
            if self.started {
                out.push(self.finish());
            }
            self.started = true;
        } else if !self.started {
            return out;
        }
        if self.oversized || self.buf.len() + payload.len() > MAX_PES {
            self.oversized = true;
            self.buf.clear();
            return out;
        }
        self.buf.extend_from_slice(payload);
        if let Some(length) = self.declared_length() {
            if self.buf.len() >= length {
                self.buf.truncate(length);
                out.push(self.finish());
            }
        }
        out
    }

    /// Drops a partial packet (after lost packets): the PID waits for the next start.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.started = false;
        self.oversized = false;
    }

    /// Ends the partial packet at the end of the stream.
    pub(crate) fn flush(&mut self) -> Option<Result<Pes, PesError>> {
        self.started.then(|| self.finish())
    }

    /// The whole packet's size from `PES_packet_length`, when it is not 0.
    fn declared_length(&self) -> Option<usize> {
        let b = &self.buf;
        (b.len() >= 6 && (b[4] != 0 || b[5] != 0))
            .then(|| 6 + usize::from(u16::from_be_bytes([b[4], b[5]])))
    }

    fn finish(&mut self) -> Result<Pes, PesError> {
        self.started = false;
        if std::mem::take(&mut self.oversized) {
            return Err(PesError::TooLarge);
        }
        parse(self.buf.split().freeze())
    }
}

/// Reads a PES packet's header (`PTS`/`DTS`) and returns its data bytes.
fn parse(packet: Bytes) -> Result<Pes, PesError> {
    if packet.len() < 9 || packet[..3] != [0, 0, 1] {
        return Err(PesError::Malformed);
    }
    // Streams without the optional header (padding, private_stream_2, ...) carry no media
    // weir packages.
    let stream_id = packet[3];
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Err(PesError::Malformed);
    }
    let flags = packet[7] >> 6;
    let header_end = 9 + usize::from(packet[8]);
    if header_end > packet.len() {
        return Err(PesError::Malformed);
    }
    let field = |at: usize| -> Result<u64, PesError> {
        let b = packet.get(at..at + 5).ok_or(PesError::Malformed)?;
        Ok(u64::from(b[0] >> 1 & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1))
    };
    let (pts, dts) = match flags {
        0b10 => (Some(field(9)?), None),
        0b11 => (Some(field(9)?), Some(field(14)?)),
        _ => (None, None),
    };
    if flags != 0 && 9 + if flags == 0b11 { 10 } else { 5 } > header_end {
        return Err(PesError::Malformed);
    }
    Ok(Pes {
        pts,
        dts,
        data: packet.slice(header_end..),
    })
}

/// Encodes a PES packet (for tests and the test multiplexer); `length_known` writes
/// `PES_packet_length`, as audio usually does, otherwise 0 as video usually does.
#[cfg(test)]
pub(crate) fn encode(
    stream_id: u8,
    pts: u64,
    dts: Option<u64>,
    data: &[u8],
    length_known: bool,
) -> Vec<u8> {
    let stamp = |prefix: u8, t: u64| {
        [
            prefix << 4 | ((t >> 29) as u8 & 0x0e) | 1,
            (t >> 22) as u8,
            ((t >> 14) as u8 & 0xfe) | 1,
            (t >> 7) as u8,
            ((t << 1) as u8) | 1,
        ]
    };
    let mut header = Vec::new();
    match dts {
        Some(d) => {
            header.extend_from_slice(&stamp(0b0011, pts));
            header.extend_from_slice(&stamp(0b0001, d));
        }
        None => header.extend_from_slice(&stamp(0b0010, pts)),
    }
    let flags = if dts.is_some() { 0xc0 } else { 0x80 };
    let length = if length_known {
        3 + header.len() + data.len()
    } else {
        0
    };
    let mut p = vec![0, 0, 1, stream_id, (length >> 8) as u8, length as u8];
    p.extend_from_slice(&[0x80, flags, header.len() as u8]);
    p.extend_from_slice(&header);
    p.extend_from_slice(data);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pts_and_dts_including_the_33rd_bit() {
        let pts = (1u64 << 33) - 7;
        let pes = parse(Bytes::from(encode(
            0xe0,
            pts,
            Some(pts - 3003),
            b"abc",
            false,
        )))
        .unwrap();
        assert_eq!(pes.pts, Some(pts));
        assert_eq!(pes.dts, Some(pts - 3003));
        assert_eq!(&pes.data[..], b"abc");
    }

    #[test]
    fn a_packet_with_its_length_completes_without_waiting_for_the_next() {
        let mut a = PesAssembler::default();
        let p = encode(0xc0, 90_000, None, &[7; 300], true);
        assert!(a.push(true, &p[..184]).is_empty());
        let done = a.push(false, &p[184..]);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].as_ref().unwrap().data.len(), 300);
    }

    #[test]
    fn a_packet_without_length_ends_at_the_next_start() {
        let mut a = PesAssembler::default();
        let p = encode(0xe0, 10, None, &[1; 100], false);
        assert!(a.push(true, &p).is_empty());
        let q = encode(0xe0, 20, None, &[2; 10], false);
        let done = a.push(true, &q);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].as_ref().unwrap().pts, Some(10));
        assert_eq!(a.flush().unwrap().unwrap().pts, Some(20));
        assert!(a.flush().is_none());
    }

    #[test]
    fn refuses_garbage_and_bounds_the_buffer() {
        assert_eq!(
            parse(Bytes::from_static(&[1; 20])),
            Err(PesError::Malformed)
        );
        let mut a = PesAssembler::default();
        let p = encode(0xe0, 10, None, &[], false);
        a.push(true, &p);
        let chunk = vec![0u8; 184];
        for _ in 0..(MAX_PES / 184 + 1) {
            a.push(false, &chunk);
        }
        assert_eq!(a.flush(), Some(Err(PesError::TooLarge)));
    }
}
