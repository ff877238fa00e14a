//! One 188-byte transport stream packet (ISO/IEC 13818-1 §2.4.3.2 and §2.4.3.4).

/// Bytes in one transport stream packet.
pub(crate) const PACKET_SIZE: usize = 188;
/// The first byte of every packet.
pub(crate) const SYNC_BYTE: u8 = 0x47;
/// The PID of the program association table.
pub(crate) const PAT_PID: u16 = 0;
/// The PID of null (stuffing) packets.
pub(crate) const NULL_PID: u16 = 0x1fff;

/// The fields of one packet weir reads, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packet<'a> {
    /// `transport_error_indicator`: a layer below saw an uncorrectable error in this packet.
    pub(crate) transport_error: bool,
    /// `payload_unit_start_indicator`: a PES packet or PSI section starts in this payload.
    pub(crate) unit_start: bool,
    /// The 13-bit packet identifier.
    pub(crate) pid: u16,
    /// The 4-bit `continuity_counter`.
    pub(crate) continuity: u8,
    /// Whether the packet carries a payload (`adaptation_field_control` 01 or 11).
    pub(crate) has_payload: bool,
    /// The adaptation field's `discontinuity_indicator`: the continuity counter and/or the
    /// program clock restart here (§2.4.3.5).
    pub(crate) discontinuity: bool,
    /// The payload (empty without one).
    pub(crate) payload: &'a [u8],
}

/// Why a 188-byte packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacketError {
    /// The first byte is not 0x47.
    NoSync,
    /// The adaptation field is longer than the packet, or `adaptation_field_control` is 00.
    Malformed,
}

/// Reads one packet; `bytes` must be exactly [`PACKET_SIZE`] long.
pub(crate) fn parse(bytes: &[u8]) -> Result<Packet<'_>, PacketError> {
    debug_assert_eq!(bytes.len(), PACKET_SIZE);
    if bytes[0] != SYNC_BYTE {
        return Err(PacketError::NoSync);
    }
    let transport_error = bytes[1] & 0x80 != 0;
    let unit_start = bytes[1] & 0x40 != 0;
    let pid = u16::from(bytes[1] & 0x1f) << 8 | u16::from(bytes[2]);
    let control = (bytes[3] >> 4) & 0x3;
    let continuity = bytes[3] & 0x0f;
    let (has_adaptation, has_payload) = match control {
        0b01 => (false, true),
        0b10 => (true, false),
        0b11 => (true, true),
        _ => return Err(PacketError::Malformed),
    };
    let mut start = 4;
    let mut discontinuity = false;
    if has_adaptation {
        let length = usize::from(bytes[4]);
        if 5 + length > PACKET_SIZE {
            return Err(PacketError::Malformed);
        }
        if length > 0 {
            discontinuity = bytes[5] & 0x80 != 0;
        }
        start = 5 + length;
    }
    let payload = if has_payload {
        &bytes[start..]
    } else {
        &[][..]
    };
    Ok(Packet {
        transport_error,
        unit_start,
        pid,
        continuity,
        has_payload,
        discontinuity,
        payload,
    })
}

/// What the continuity counter of a packet says about the packets before it on its PID
/// (ISO/IEC 13818-1 §2.4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continuity {
    /// The expected next packet (or the first one seen).
    Next,
    /// A repeat of the previous packet, which a multiplexer may send once: to be ignored.
    Duplicate,
    /// Packets were lost before this one.
    Gap,
}

/// Checks `packet`'s counter against the previous counter on its PID (`None` for the first
/// packet, or after a signalled discontinuity).
pub(crate) fn continuity(previous: Option<u8>, packet: &Packet<'_>) -> Continuity {
    let Some(prev) = previous else {
        return Continuity::Next;
    };
    if packet.discontinuity {
        return Continuity::Next;
    }
    if !packet.has_payload {
        // The counter does not advance without a payload.
        return if packet.continuity == prev {
            Continuity::Next
        } else {
            Continuity::Gap
        };
    }
    if packet.continuity == (prev + 1) & 0x0f {
        Continuity::Next
    } else if packet.continuity == prev {
        Continuity::Duplicate
    } else {
        Continuity::Gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(b1: u8, b2: u8, b3: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![SYNC_BYTE, b1, b2, b3];
        p.extend_from_slice(rest);
        p.resize(PACKET_SIZE, 0xff);
        p
    }

    #[test]
    fn reads_header_fields_and_payload() {
        // PUSI, PID 0x0100, payload only, CC 5.
        let p = packet(0x41, 0x00, 0x15, &[1, 2, 3]);
        let parsed = parse(&p).unwrap();
        assert!(parsed.unit_start && !parsed.transport_error && parsed.has_payload);
        assert_eq!((parsed.pid, parsed.continuity), (0x100, 5));
        assert_eq!(parsed.payload.len(), 184);
        assert_eq!(&parsed.payload[..3], &[1, 2, 3]);
    }

    #[test]
    fn skips_the_adaptation_field_and_reads_its_discontinuity_flag() {
        // Adaptation + payload, 7-byte adaptation field with discontinuity_indicator.
        let p = packet(0x01, 0x00, 0x30, &[7, 0x80, 0, 0, 0, 0, 0, 0, 9]);
        let parsed = parse(&p).unwrap();
        assert!(parsed.discontinuity);
        assert_eq!(parsed.payload.len(), 188 - 12);
        assert_eq!(parsed.payload[0], 9);
    }

    #[test]
    fn refuses_bad_sync_and_oversized_adaptation() {
        let mut p = packet(0, 0, 0x10, &[]);
        p[0] = 0x46;
        assert_eq!(parse(&p), Err(PacketError::NoSync));
        assert_eq!(
            parse(&packet(0, 0, 0x30, &[190])),
            Err(PacketError::Malformed)
        );
        assert_eq!(parse(&packet(0, 0, 0x00, &[])), Err(PacketError::Malformed));
    }

    #[test]
    fn continuity_counter_cases() {
        let at = |cc: u8, payload: bool, disc: bool| Packet {
            transport_error: false,
            unit_start: false,
            pid: 256,
            continuity: cc,
            has_payload: payload,
            discontinuity: disc,
            payload: &[],
        };
        let table = [
            (None, at(3, true, false), Continuity::Next),
            (Some(3), at(4, true, false), Continuity::Next),
            (Some(15), at(0, true, false), Continuity::Next),
            (Some(3), at(3, true, false), Continuity::Duplicate),
            (Some(3), at(6, true, false), Continuity::Gap),
            (Some(3), at(3, false, false), Continuity::Next),
            (Some(3), at(4, false, false), Continuity::Gap),
            (Some(3), at(9, true, true), Continuity::Next),
        ];
        for (prev, p, want) in table {
            assert_eq!(continuity(prev, &p), want, "prev {prev:?} packet {p:?}");
        }
    }
}
