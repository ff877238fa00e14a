//! Writes seed inputs for the `rtmp_session` target: what rml_rtmp's client sends a server
//! after the handshake to connect, publish, send metadata and the first audio and video tags
//! of an FLV file, played against rml_rtmp's server in memory (so the bytes are a valid
//! session). Usage: rtmp_corpus FILE.flv OUT_DIR (fuzz/make_corpus.sh runs it).

use std::collections::VecDeque;

use bytes::Bytes;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, ServerSession, ServerSessionConfig, ServerSessionEvent,
    ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, flv, out] = args.as_slice() else {
        panic!("usage: rtmp_corpus FILE.flv OUT_DIR");
    };
    let file = Bytes::from(std::fs::read(flv).expect("read the FLV file"));
    std::fs::create_dir_all(out).expect("create OUT_DIR");
    let (mut client, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let (mut server, first) = ServerSession::new(ServerSessionConfig::new()).unwrap();
    let mut sent = Vec::new(); // what the client sent: the seed
    let mut to_client: VecDeque<u8> = server_bytes(first).into();
    let mut pending = vec![client.request_connection("live".into()).unwrap()];
    let mut publishing = false;
    // Alternate until the server has accepted the publish: at most a few dozen rounds.
    for _ in 0..50 {
        let mut to_server = Vec::new();
        for r in pending.drain(..) {
            if let ClientSessionResult::OutboundResponse(p) = r {
                to_server.extend_from_slice(&p.bytes);
            }
        }
        sent.extend_from_slice(&to_server);
        for r in server.handle_input(&to_server).unwrap() {
            match r {
                ServerSessionResult::OutboundResponse(p) => to_client.extend(p.bytes),
                ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested {
                    request_id,
                    ..
                }) => to_client.extend(server_bytes(server.accept_request(request_id).unwrap())),
                ServerSessionResult::RaisedEvent(ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    ..
                }) => to_client.extend(server_bytes(server.accept_request(request_id).unwrap())),
                _ => {}
            }
        }
        let input: Vec<u8> = to_client.drain(..).collect();
        for r in client.handle_input(&input).unwrap() {
            match r {
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    pending.push(
                        client
                            .request_publishing("key".into(), PublishRequestType::Live)
                            .unwrap(),
                    )
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    publishing = true
                }
                other => pending.push(other),
            }
        }
        if publishing {
            break;
        }
    }
    assert!(
        publishing,
        "the in-memory server never accepted the publish"
    );
    std::fs::write(format!("{out}/connect-publish"), &sent).unwrap();
    // The first tags of the file: sequence headers, then frames.
    let mut media = sent.clone();
    for (n, (kind, ms, body)) in weir_ingest::file_tags(&file).take(12).enumerate() {
        let ts = RtmpTimestamp::new(ms);
        let r = match kind {
            9 => client.publish_video_data(body, ts, false),
            8 => client.publish_audio_data(body, ts, false),
            _ => continue,
        };
        if let Ok(ClientSessionResult::OutboundResponse(p)) = r {
            media.extend_from_slice(&p.bytes);
        }
        if n == 3 {
            std::fs::write(format!("{out}/publish-sequence-headers"), &media).unwrap();
        }
    }
    std::fs::write(format!("{out}/publish-frames"), &media).unwrap();
}

fn server_bytes(results: Vec<ServerSessionResult>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in results {
        if let ServerSessionResult::OutboundResponse(p) = r {
            out.extend_from_slice(&p.bytes);
        }
    }
    out
}
