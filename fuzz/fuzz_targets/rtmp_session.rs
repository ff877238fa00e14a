//! The RTMP path after the handshake, as `ingest/src/rtmp.rs` runs it: weir's chunk guard
//! first, then rml_rtmp's chunk deserializer, AMF0 decoder and server session on what the
//! guard let through, then weir's FLV parsers on every audio and video message. Nothing may
//! panic (rml_rtmp included: the guard refuses what it cannot take), and the guard must
//! refuse any message over its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

/// The limits `weir serve` uses before a publish is authorized and for chunk sizes.
const MAX_MESSAGE: u32 = weir_ingest::PRE_AUTH_MAX_MESSAGE;
const MAX_CHUNK_SIZE: u32 = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut guard = weir_ingest::ChunkGuard::new(MAX_MESSAGE, MAX_CHUNK_SIZE);
    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    // Fed in two reads, as a socket may split them.
    let split = data.len() / 3;
    for piece in [&data[..split], &data[split..]] {
        if guard.check(piece).is_err() {
            return;
        }
        // The guard must keep out everything rml_rtmp panics on (the server also catches
        // such a panic, ingest/src/rtmp.rs `session_input`, but libFuzzer counts any panic).
        let Ok(results) = session.handle_input(piece) else {
            return;
        };
        for result in results {
            let ServerSessionResult::RaisedEvent(event) = result else {
                continue;
            };
            let (data, timestamp, video) = match event {
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => (data, timestamp, true),
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => (data, timestamp, false),
                _ => continue,
            };
            assert!(
                data.len() <= MAX_MESSAGE as usize,
                "the guard let {} bytes through",
                data.len()
            );
            let ms = i64::from(timestamp.value);
            let _ = if video {
                weir_ingest::parse_video(ms, data)
            } else {
                weir_ingest::parse_audio(ms, data)
            };
        }
    }
});
