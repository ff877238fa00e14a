//! A bound on what an RTMP peer can make the server hold, checked before the chunk stream
//! reaches rml_rtmp (which reserves a message's whole declared length on its first chunk:
//! a 12-byte header could make it reserve 16 MiB).
//!
//! Sans-I/O: it follows the chunk stream (RTMP 1.0 §5.3: basic header, message header of
//! type 0-3, extended timestamp, payload split at the peer's chunk size, `Set Chunk Size`
//! messages, type 1, changing it) and refuses, before any byte of it is passed on:
//! - a message longer than the limit (a smaller one until the publisher is authorized),
//! - a chunk size above the limit (or zero),
//! - more chunk streams than the limit,
//! - a chunk that interrupts an incomplete message (rml_rtmp assembles one at a time),
//! - a command message over 64 KiB or with fewer than three AMF0 values.

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
    /// A chunk that is not the next type-3 chunk of the incomplete message before it: a new
    /// message header on its chunk stream, or a chunk of another chunk stream (interleaving).
    /// rml_rtmp 0.8 assembles one message at a time (one payload buffer for every chunk
    /// stream): it would mix the two messages' bytes, or compute a remaining length by
    /// wrapping subtraction and panic (found by cargo fuzz, `rtmp_session`). ffmpeg, OBS
    /// (librtmp) and GStreamer send each message's chunks back to back.
    #[error("an RTMP chunk interrupts an incomplete message (interleaved chunk streams are not supported)")]
    InterruptedMessage,
    /// A command message with fewer than three AMF0 values (name, transaction id, command
    /// object).
    #[error("a malformed RTMP command")]
    MalformedCommand,
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
    /// Payloads being collected, by chunk stream: `Set Chunk Size` (message type 1, 4
    /// bytes) and commands (types 17 and 20, at most [`MAX_COMMAND`] bytes).
    collecting: HashMap<u32, Vec<u8>>,
    /// The chunk stream whose message is incomplete: only its type-3 chunks may come next.
    open: Option<u32>,
}

/// Longest command message (AMF0/AMF3 `connect`, `publish`...) a peer may send; real ones are
/// a few hundred bytes.
const MAX_COMMAND: u32 = 64 * 1024;

/// Message types whose payload the guard reads: `Set Chunk Size`, AMF3 and AMF0 commands.
fn collected(type_id: u8) -> bool {
    matches!(type_id, 1 | 17 | 20)
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
            collecting: HashMap::new(),
            open: None,
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
        if self.open.is_some_and(|open| open != csid || fmt != 3) {
            return Err(ChunkViolation::InterruptedMessage);
        }
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
            if collected(state.type_id) {
                if state.type_id != 1 && state.length > MAX_COMMAND {
                    return Err(ChunkViolation::MessageTooLong(state.length));
                }
                self.collecting.insert(csid, Vec::new());
            } else {
                self.collecting.remove(&csid);
            }
        }
        let left = state.length - state.received;
        let chunk = left.min(self.chunk_size);
        state.received += chunk;
        self.open = (state.received < state.length).then_some(csid);
        self.streams.insert(csid, state);
        if chunk == 0 {
            self.payload(csid, &[])?;
        } else {
            self.in_payload = Some((csid, chunk));
        }
        Ok(Some(at))
    }

    /// Payload bytes of chunk stream `csid`: a `Set Chunk Size` takes effect when whole; a
    /// command is checked when whole.
    fn payload(&mut self, csid: u32, bytes: &[u8]) -> Result<(), ChunkViolation> {
        let (Some(state), Some(buf)) = (self.streams.get(&csid), self.collecting.get_mut(&csid))
        else {
            return Ok(());
        };
        buf.extend_from_slice(bytes);
        let whole = state.received >= state.length
            && self
                .in_payload
                .is_none_or(|(_, left)| left == bytes.len() as u32);
        if !whole {
            return Ok(());
        }
        let type_id = state.type_id;
        let Some(payload) = self.collecting.remove(&csid) else {
            return Ok(());
        };
        if type_id == 1 {
            if let Some(b) = payload.get(..4) {
                let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff;
                if size == 0 || size > self.max_chunk_size {
                    return Err(ChunkViolation::ChunkSize(size));
                }
                self.chunk_size = size;
            }
            return Ok(());
        }
        check_command(type_id, &payload)
    }
}

/// A command message must hold at least a name, a transaction id and a command object (RTMP
/// 1.0 §7.1.1): rml_rtmp 0.8 panics on fewer (`amf0_command.rs`, `drain(..3)`; found by
/// cargo fuzz, `rtmp_session`). An AMF3 command (type 17) is AMF0 after a 0 byte, as rml_rtmp
/// reads it. A payload that is not AMF0 at all is left to rml_rtmp, which refuses it.
fn check_command(type_id: u8, payload: &[u8]) -> Result<(), ChunkViolation> {
    let amf0 = match payload {
        [0, rest @ ..] if type_id == 17 => rest,
        all => all,
    };
    match rml_rtmp::rml_amf0::deserialize(&mut std::io::Cursor::new(amf0)) {
        Ok(values) if values.len() < 3 => Err(ChunkViolation::MalformedCommand),
        _ => Ok(()),
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
        // A type-1 header on chunk stream 3 while its 300-byte message has 128 bytes so far
        // (the shape cargo fuzz found): refused, never passed to rml_rtmp.
        let mut g = ChunkGuard::new(64 * 1024, 65_536);
        let mut data = vec![0x03, 0, 0, 0, 0, 0x01, 0x2c, 9, 1, 0, 0, 0];
        data.extend([0u8; 128]);
        data.extend([0x43, 0, 0, 0, 0, 0, 0x10, 9]);
        assert_eq!(g.check(&data), Err(ChunkViolation::InterruptedMessage));
        // A chunk of another chunk stream in the middle of that message: refused too.
        let mut g = ChunkGuard::new(64 * 1024, 65_536);
        let mut data = vec![0x03, 0, 0, 0, 0, 0x01, 0x2c, 9, 1, 0, 0, 0];
        data.extend([0u8; 128]);
        data.extend([0x04, 0, 0, 0, 0, 0, 0x01, 8, 1, 0, 0, 0, 0xaf]);
        assert_eq!(g.check(&data), Err(ChunkViolation::InterruptedMessage));
        // Commands with fewer than three AMF0 values (cargo fuzz's 12-byte crash of rml_rtmp:
        // an empty AMF0 command), whole or split across chunks, AMF0 or AMF3.
        let mut g = ChunkGuard::new(64 * 1024, 65_536);
        assert_eq!(
            g.check(&[0x06, 0, 0, 0x58, 0, 0, 0, 0x14, 0, 0, 0, 0]),
            Err(ChunkViolation::MalformedCommand)
        );
        let name = [0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't'];
        for type_id in [17u8, 20] {
            let mut payload = if type_id == 17 { vec![0] } else { vec![] };
            payload.extend(name);
            let mut g = ChunkGuard::new(64 * 1024, 65_536);
            let mut data = vec![
                0x03,
                0,
                0,
                0,
                0,
                0,
                payload.len() as u8,
                type_id,
                0,
                0,
                0,
                0,
            ];
            data.extend(&payload);
            assert_eq!(g.check(&data), Err(ChunkViolation::MalformedCommand));
        }
        // A well-formed one (name, transaction id, null) passes, in one chunk or two.
        let mut payload = name.to_vec();
        payload.extend([0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x05]);
        for split in [0, 4] {
            let mut data = vec![0x03, 0, 0, 0, 0, 0, payload.len() as u8, 20, 0, 0, 0, 0];
            data.extend(&payload);
            let mut g = ChunkGuard::new(64 * 1024, 65_536);
            assert_eq!(g.check(&data[..12 + split]), Ok(()));
            assert_eq!(g.check(&data[12 + split..]), Ok(()));
        }
        // A command over 64 KiB, even when messages may be longer.
        let mut g = ChunkGuard::new(1 << 20, 65_536);
        assert_eq!(
            g.check(&[0x03, 0, 0, 0, 0x01, 0, 0x01, 20, 0, 0, 0, 0]),
            Err(ChunkViolation::MessageTooLong(65_537))
        );
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
