//! The edge's cache-hit path in one process, without sockets: a viewer's `GET` of a cached
//! master playlist and of a cached segment through every phase (client address, route, access
//! policy, cache key, lookup, audience, counters, response head), body collected; and side by
//! side, the floor: a handler that answers the same bytes with the same headers from a map
//! lookup and nothing else. The difference is what the edge's phases cost per request on top
//! of the HTTP server (`weir-http` and hyper); the socket side is measured against nginx in
//! `benches/edge/compare.py`.
//!
//! Run: `cargo bench -p weir-edge --bench hit`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use hyper::service::Service;
use weir_edge::{edge, EdgeConfig, EdgeConnection, LocalOrigin};
use weir_http::App;

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1602846,AVERAGE-BANDWIDTH=1602569,CODECS=\"avc1.4d401f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=25.000,AUDIO=\"audio\"\n\
source/index.m3u8\n";

/// An origin that knows event `e` (open to anyone) and answers its master playlist and any
/// segment, each fresh for an hour so every measured request is a hit.
fn origin() -> LocalOrigin {
    let segment = Bytes::from(vec![0x5a_u8; 800 << 10]);
    LocalOrigin::new(move |request: http::Request<Body>| {
        let path = request.uri().path().to_owned();
        let segment = segment.clone();
        async move {
            let (kind, body) = match path.as_str() {
                "/internal/v1/events/e/access" => ("application/json", Body::from("{}")),
                "/live/e/master.m3u8" => ("application/vnd.apple.mpegurl", Body::from(MASTER)),
                _ => ("video/iso.segment", Body::from(segment)),
            };
            http::Response::builder()
                .header(http::header::CONTENT_TYPE, kind)
                .header(http::header::CACHE_CONTROL, "public, max-age=3600")
                .body(body)
                .unwrap()
        }
    })
}

fn request(path: &'static str) -> http::Request<Body> {
    http::Request::get(path)
        .header(http::header::HOST, "127.0.0.1:8080")
        .header(http::header::USER_AGENT, "bench")
        .body(Body::empty())
        .unwrap()
}

/// The body's length, read to the end.
async fn read(response: http::Response<Body>) -> usize {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

async fn get(edge: &EdgeConnection, path: &'static str) -> usize {
    let response = edge.call(request(path)).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    read(response).await
}

/// The floor: the answer the edge gave for each path (head and body), looked up by path.
struct Floor(std::collections::HashMap<String, (http::HeaderMap, Bytes)>);

impl Floor {
    async fn get(&self, path: &'static str) -> usize {
        let request = black_box(request(path));
        let (head, body) = &self.0[request.uri().path()];
        let mut response = http::Response::new(Body::from(body.clone()));
        *response.headers_mut() = head.clone();
        read(response).await
    }
}

fn hit(c: &mut Criterion) {
    let _ = weir_metrics::install();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let edge = runtime.block_on(async {
        edge(EdgeConfig {
            upstream: "http://127.0.0.1:9".into(),
            cache_capacity_bytes: 64 << 20,
            upstream_timeout: Duration::from_secs(2),
            blocking_timeout: Duration::from_secs(6),
            cors_allow_origin: "*".into(),
            id: "bench".into(),
            access: Default::default(),
            key_secret: None,
            stale_if_error: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            max_waiters_per_object: 1_000,
            upstream_ca_file: None,
            local_origin: Some(origin()),
        })
        .unwrap()
        .connection(SocketAddr::from(([127, 0, 0, 1], 40_000)))
    });
    let mut floor = Floor(Default::default());
    for path in ["/live/e/master.m3u8", "/live/e/source/s1/7.m4s"] {
        runtime.block_on(get(&edge, path));
        let response = runtime.block_on(edge.call(request(path))).unwrap();
        let (parts, body) = response.into_parts();
        let body = runtime.block_on(body.collect()).unwrap().to_bytes();
        floor.0.insert(path.into(), (parts.headers, body));
        let name = path.rsplit('/').next().unwrap();
        c.bench_function(&format!("floor {name}"), |b| {
            b.iter_custom(|n| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(floor.get(path).await);
                    }
                    start.elapsed()
                })
            })
        });
        c.bench_function(&format!("edge hit {name}"), |b| {
            b.iter_custom(|n| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(get(&edge, path).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = hit
}
criterion_main!(benches);
