//! A bound on what an RTMP peer can make the server hold, checked before the chunk stream
//! reaches rml_rtmp (which reserves a message's whole declared length on its first chunk:
//! a 12-byte header could make it reserve 16 MiB).
//!
//! Sans-I/O: it follows the chunk stream (RTMP 1.0 §5.3: basic header, message header of
//! type 0-3, extended timestamp, payload split at the peer's chunk size, `Set Chunk Size`
//! messages, type 1, changing it) and refuses, before any byte of it is passed on:
//! - a message longer than the limit (a smaller one until the publisher is authorized),
//! - a chunk size above the limit (or zero),
//! - more chunk streams than the limit.

use std::collections::HashMap;

/// Why the peer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkViolation {
    /// A message declared longer than allowed, bytes.
    #[error("an RTMP message of {0} bytes is over the limit")]
    MessageTooLong(u32),
    /// A `Set Chunk Size` above the limit (or 0).
    #[error("RTMP chunk size {0} is out of bounds")]
    ChunkSize(u32),
    /// Too many chunk streams at once.
    #[error("too many RTMP chunk streams")]
    TooManyChunkStreams,
    /// A continuation chunk (type 1-3) on a chunk stream with no message header yet.
    #[error("an RTMP chunk continues a stream that never started")]
    NoPriorHeader,
}

/// Most chunk streams a peer may use (ffmpeg and OBS use a handful).
const MAX_CHUNK_STREAMS: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
struct StreamState {
    length: u32,
    type_id: u8,
    /// The last header's timestamp field was 0xFFFFFF (an extended timestamp follows type-3
    /// chunks too).
    extended: bool,
    /// Payload bytes of the current message received so far.
    received: u32,
}

/// Follows a peer's chunk stream after the handshake.
#[derive(Debug)]
pub struct ChunkGuard {
    max_message: u32,
    max_chunk_size: u32,
    chunk_size: u32,
    streams: HashMap<u32, StreamState>,
    /// Bytes of an incomplete chunk header, kept until the rest arrives.
    pending: Vec<u8>,
    /// Payload bytes still to skip in the current chunk, and its chunk stream.
    in_payload: Option<(u32, u32)>,
    /// The `Set Chunk Size` payload being collected (message type 1, 4 bytes).
    set_chunk_size: Vec<u8>,
}

impl ChunkGuard {
    /// A guard refusing messages over `max_message` bytes and chunk sizes over
    /// `max_chunk_size`.
    pub fn new(max_message: u32, max_chunk_size: u32) -> ChunkGuard {
        ChunkGuard {
            max_message,
            max_chunk_size,
            chunk_size: 128,
            streams: HashMap::new(),
            pending: Vec::new(),
            in_payload: None,
            set_chunk_size: Vec::new(),
        }
    }

    /// Changes the message limit (raised once the publisher is authorized).
    pub fn set_max_message(&mut self, max_message: u32) {
        self.max_message = max_message;
    }

    /// Checks the next bytes of the stream.
    ///
    /// # Errors
    /// The first [`ChunkViolation`]; the connection should be closed.
    pub fn check(&mut self, mut data: &[u8]) -> Result<(), ChunkViolation> {
        while !data.is_empty() {
            if let Some((csid, left)) = self.in_payload {
                let n = left.min(data.len() as u32);
                self.payload(csid, &data[..n as usize])?;
                data = &data[n as usize..];
                self.in_payload = (left > n).then_some((csid, left - n));
                continue;
            }
            // Collect a header: as many bytes as it needs, which the first bytes say.
            let take = data.len().min(18 - self.pending.len().min(18));
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(&data[..take]);
            match self.header(&buf)? {
                None => {
                    self.pending = buf;
                    data = &data[take..];
                }
                Some(used) => {
                    // `used` counts bytes of `buf`: those beyond the old pending came from data.
                    let from_data = used - (buf.len() - take);
                    data = &data[from_data..];
                }
            }
        }
        Ok(())
    }

    /// Parses one chunk header from `buf`; `Ok(None)` if more bytes are needed, else the
    /// header's length (the payload follows).
    fn header(&mut self, buf: &[u8]) -> Result<Option<usize>, ChunkViolation> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut at) = match first & 0x3f {
            0 if buf.len() >= 2 => (u32::from(buf[1]) + 64, 2),
            1 if buf.len() >= 3 => (u32::from(buf[1]) + u32::from(buf[2]) * 256 + 64, 3),
            0 | 1 => return Ok(None),
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        if buf.len() < at + header_len {
            return Ok(None);
        }
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(ChunkViolation::NoPriorHeader);
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkViolation::TooManyChunkStreams);
            }
        }
        let h = &buf[at..at + header_len];
        let mut state = self.streams.get(&csid).copied().unwrap_or_default();
        let new_message = fmt != 3 || state.received >= state.length;
        if fmt <= 2 {
            state.extended = u32::from_be_bytes([0, h[0], h[1], h[2]]) == 0xFF_FFFF;
        }
        if fmt <= 1 {
            state.length = u32::from_be_bytes([0, h[3], h[4], h[5]]);
            state.type_id = h[6];
        }
        at += header_len;
        if state.extended {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            at += 4;
        }
        if new_message {
            if state.length > self.max_message {
                return Err(ChunkViolation::MessageTooLong(state.length));
            }
            state.received = 0;
            if state.type_id == 1 {
                self.set_chunk_size.clear();
            }
        }
        let left = state.length - state.received;
        let chunk = left.min(self.chunk_size);
        state.received += chunk;
        self.streams.insert(csid, state);
        if chunk == 0 {
            self.payload(csid, &[])?;
        } else {
            self.in_payload = Some((csid, chunk));
        }
        Ok(Some(at))
    }

    /// Payload bytes of chunk stream `csid`: a `Set Chunk Size` takes effect when whole.
    fn payload(&mut self, csid: u32, bytes: &[u8]) -> Result<(), ChunkViolation> {
        let Some(state) = self.streams.get(&csid) else {
            return Ok(());
        };
        if state.type_id != 1 {
            return Ok(());
        }
        self.set_chunk_size.extend_from_slice(bytes);
        if state.received >= state.length
            && self
                .in_payload
                .is_none_or(|(_, left)| left == bytes.len() as u32)
        {
            if let Some(b) = self.set_chunk_size.get(..4) {
                let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
                if size == 0 || size > self.max_chunk_size {
                    return Err(ChunkViolation::ChunkSize(size));
                }
                self.chunk_size = size;
            }
            self.set_chunk_size.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::time::RtmpTimestamp;

    /// A chunk stream as rml_rtmp's serializer writes it: a Set Chunk Size of `chunk_size`,
    /// then `sizes` video messages (type 9) with timestamps that may need the extended field.
    fn stream(chunk_size: u32, sizes: &[usize], ts_base: u32) -> Vec<u8> {
        let mut s = ChunkSerializer::new();
        let mut out = Vec::new();
        let set = RtmpMessage::SetChunkSize { size: chunk_size }
            .into_message_payload(RtmpTimestamp::new(0), 0)
            .unwrap();
        out.extend_from_slice(&s.serialize(&set, false, false).unwrap().bytes);
        s.set_max_chunk_size(chunk_size, RtmpTimestamp::new(0))
            .unwrap();
        for (i, size) in sizes.iter().enumerate() {
            let payload = MessagePayload {
                timestamp: RtmpTimestamp::new(ts_base.wrapping_add(i as u32 * 40)),
                type_id: 9,
                message_stream_id: 1,
                data: bytes::Bytes::from(vec![0x17; *size]),
            };
            out.extend_from_slice(&s.serialize(&payload, false, false).unwrap().bytes);
        }
        out
    }

    fn check_split(
        g: &mut ChunkGuard,
        data: &[u8],
        splits: &[usize],
    ) -> Result<(), ChunkViolation> {
        let mut at = 0;
        for s in splits {
            let end = (at + s).min(data.len());
            g.check(&data[at..end])?;
            at = end;
        }
        g.check(&data[at..])
    }

    #[test]
    fn table_of_limits() {
        // (chunk size, message sizes, max message, max chunk size, expected)
        type Case<'a> = (u32, &'a [usize], u32, u32, Result<(), ChunkViolation>);
        let cases: &[Case<'_>] = &[
            (4096, &[100, 5000, 70_000], 100_000, 65_536, Ok(())),
            (128, &[300, 1], 1_000, 65_536, Ok(())),
            (
                4096,
                &[100, 200_000],
                100_000,
                65_536,
                Err(ChunkViolation::MessageTooLong(200_000)),
            ),
            (
                100_000,
                &[10],
                1_000_000,
                65_536,
                Err(ChunkViolation::ChunkSize(100_000)),
            ),
        ];
        for (chunk, sizes, max_msg, max_chunk, want) in cases {
            let data = stream(*chunk, sizes, 0);
            let mut g = ChunkGuard::new(*max_msg, *max_chunk);
            assert_eq!(g.check(&data), *want, "{chunk} {sizes:?}");
        }
        // A bare 12-byte header declaring 16 MiB is refused before its payload.
        let header = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        let mut g = ChunkGuard::new(64 * 1024, 65_536);
        assert_eq!(
            g.check(&header),
            Err(ChunkViolation::MessageTooLong(0xff_ffff))
        );
        // A continuation with no message before it.
        let mut g = ChunkGuard::new(64 * 1024, 65_536);
        assert_eq!(g.check(&[0xc5]), Err(ChunkViolation::NoPriorHeader));
    }

    proptest! {
        #[test]
        fn accepts_what_rml_rtmp_writes_in_any_split(
            chunk in prop_oneof![Just(128u32), Just(4096), 1u32..70_000],
            sizes in proptest::collection::vec(0usize..20_000, 1..12),
            ts_base in prop_oneof![Just(0u32), Just(0xFF_FF00), any::<u32>()],
            splits in proptest::collection::vec(1usize..3_000, 0..40),
        ) {
            let data = stream(chunk, &sizes, ts_base);
            let mut g = ChunkGuard::new(20_000, 70_000);
            prop_assert_eq!(check_split(&mut g, &data, &splits), Ok(()));
            // The same stream with a lower limit is refused at its first long message.
            let longest = *sizes.iter().max().unwrap() as u32;
            if longest > 0 {
                let mut g = ChunkGuard::new(longest - 1, 70_000);
                prop_assert_eq!(
                    check_split(&mut g, &data, &splits),
                    Err(ChunkViolation::MessageTooLong(longest))
                );
            }
        }
    }
}
