//! Program-specific information: the program association and program map tables
//! (ISO/IEC 13818-1 §2.4.4), reassembled from packet payloads and checked by CRC-32.

const MAX_SECTION: usize = 1_024;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2);

/// Reassembles the sections of one PID from packet payloads (§2.4.4.1 `pointer_field`).
#[derive(Debug, Default)]
pub(crate) struct SectionBuffer {
    buf: Vec<u8>,
    started: bool,
}

impl SectionBuffer {
    /// Adds one packet's payload; returns the complete sections it finishes, CRC-checked
    /// (`Err` for a section whose CRC is wrong or whose length is impossible).
    pub(crate) fn push(&mut self, unit_start: bool, payload: &[u8]) -> Vec<Result<Vec<u8>, ()>> {
        let mut out = Vec::new();
        let mut data = payload;
        if unit_start {
            let Some((&pointer, rest)) = data.split_first() else {
                return out;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                self.reset();
                out.push(Err(()));
                return out;
            }
            if self.started {
                self.buf.extend_from_slice(&rest[..pointer]);
                self.take(&mut out);
            }
            self.reset();
            self.started = true;
            data = &rest[pointer..];
        } else if !self.started {
            return out;
        }
        self.buf.extend_from_slice(data);
        self.take(&mut out);
        out
    }

    /// Forgets a partial section (after lost packets).
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.started = false;
    }

    fn take(&mut self, out: &mut Vec<Result<Vec<u8>, ()>>) {
        loop {
            // 0xff after a section is stuffing up to the end of the packet.
            if self.buf.first().is_none_or(|&b| b == 0xff) {
                self.buf.clear();
                return;
            }
            if self.buf.len() < 3 {
                return;
            }
            let length = 3 + (usize::from(self.buf[1] & 0x0f) << 8 | usize::from(self.buf[2]));
            if !(3 + 4 + 5..=MAX_SECTION).contains(&length) {
                self.reset();
                out.push(Err(()));
                return;
            }
            if self.buf.len() < length {
                return;
            }
            let section: Vec<u8> = self.buf.drain(..length).collect();
            if CRC.checksum(&section) == 0 {
                out.push(Ok(section));
            } else {
                out.push(Err(()));
            }
        }
    }
}

/// The `table_id` and body of a long-form section, between its 8-byte header and CRC; `None`
/// for a section with `current_next_indicator` 0 (not yet applicable).
fn body(section: &[u8]) -> Option<(u8, u16, &[u8])> {
    if section.len() < 12 || section[5] & 0x01 == 0 {
        return None;
    }
    let id_extension = u16::from_be_bytes([section[3], section[4]]);
    Some((section[0], id_extension, &section[8..section.len() - 4]))
}

/// The PID of the first program's map table in a program association section (§2.4.4.3);
/// `None` if the section is not a PAT or lists no program.
pub(crate) fn pat_first_pmt(section: &[u8]) -> Option<u16> {
    let (table_id, _, body) = body(section)?;
    if table_id != 0x00 {
        return None;
    }
    body.chunks_exact(4).find_map(|entry| {
        let program = u16::from_be_bytes([entry[0], entry[1]]);
        let pid = u16::from(entry[2] & 0x1f) << 8 | u16::from(entry[3]);
        (program != 0).then_some(pid)
    })
}

/// One elementary stream a program map section lists (§2.4.4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PmtStream {
    /// `stream_type` (Table 2-34): 0x1b H.264, 0x24 HEVC, 0x0f AAC in ADTS, ...
    pub(crate) stream_type: u8,
    /// `elementary_PID`.
    pub(crate) pid: u16,
}

/// The elementary streams of a program map section, in order; `None` if the section is not a
/// PMT or is truncated.
pub(crate) fn pmt_streams(section: &[u8]) -> Option<Vec<PmtStream>> {
    let (table_id, _, body) = body(section)?;
    if table_id != 0x02 || body.len() < 4 {
        return None;
    }
    let info_length = usize::from(body[2] & 0x0f) << 8 | usize::from(body[3]);
    let mut rest = body.get(4 + info_length..)?;
    let mut streams = Vec::new();
    while rest.len() >= 5 {
        let stream_type = rest[0];
        let pid = u16::from(rest[1] & 0x1f) << 8 | u16::from(rest[2]);
        let es_info = usize::from(rest[3] & 0x0f) << 8 | usize::from(rest[4]);
        streams.push(PmtStream { stream_type, pid });
        rest = rest.get(5 + es_info..)?;
    }
    Some(streams)
}

/// Builds a long-form section with a correct CRC: for tests and the test multiplexer.
#[cfg(test)]
pub(crate) fn section(table_id: u8, id_extension: u16, body: &[u8]) -> Vec<u8> {
    let length = 5 + body.len() + 4;
    let mut s = vec![table_id, 0xb0 | (length >> 8) as u8, length as u8];
    s.extend_from_slice(&id_extension.to_be_bytes());
    s.extend_from_slice(&[0xc1, 0, 0]);
    s.extend_from_slice(body);
    let crc = CRC.checksum(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmt(streams: &[(u8, u16)]) -> Vec<u8> {
        let mut body = vec![0xe1, 0x00, 0xf0, 0x00];
        for &(t, pid) in streams {
            body.extend_from_slice(&[t, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
        }
        section(0x02, 1, &body)
    }

    #[test]
    fn reads_pat_and_pmt() {
        let pat = section(0x00, 1, &[0, 0, 0xe0, 0x10, 0, 1, 0xf0, 0x00]);
        assert_eq!(pat_first_pmt(&pat), Some(0x1000));
        let streams = pmt_streams(&pmt(&[(0x1b, 0x100), (0x0f, 0x101)])).unwrap();
        assert_eq!(
            streams,
            vec![
                PmtStream {
                    stream_type: 0x1b,
                    pid: 0x100
                },
                PmtStream {
                    stream_type: 0x0f,
                    pid: 0x101
                }
            ]
        );
        assert_eq!(pmt_streams(&pat), None);
    }

    #[test]
    fn reassembles_a_section_split_over_packets_and_checks_its_crc() {
        let s = pmt(&[(0x1b, 0x100), (0x0f, 0x101), (0x24, 0x102)]);
        let mut buf = SectionBuffer::default();
        let mut first = vec![0u8];
        first.extend_from_slice(&s[..10]);
        assert!(buf.push(true, &first).is_empty());
        let mut rest = s[10..].to_vec();
        rest.extend_from_slice(&[0xff; 20]);
        assert_eq!(buf.push(false, &rest), vec![Ok(s.clone())]);

        let mut bad = s.clone();
        bad[12] ^= 1;
        let mut payload = vec![0u8];
        payload.extend_from_slice(&bad);
        assert_eq!(buf.push(true, &payload), vec![Err(())]);
    }

    #[test]
    fn ignores_continuations_before_any_start_and_bad_pointers() {
        let mut buf = SectionBuffer::default();
        assert!(buf.push(false, &[1, 2, 3]).is_empty());
        assert_eq!(buf.push(true, &[200, 1, 2]), vec![Err(())]);
    }
}
