//! The origin of the same process as the edge's upstream (`weir serve`): its router called
//! as a service, not over loopback HTTP. The request and response are the same HTTP messages
//! (the same phases, headers and status handling on both sides); what goes is the socket, a
//! copy of every body, and the second copy of every object: a segment the edge caches is the
//! same allocation as the one in the origin's store (a body of one chunk is kept as it came).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::Frame;

/// The in-process origin: takes a GET of a path and answers it.
#[derive(Clone)]
pub struct LocalOrigin(Arc<LocalCall>);

/// What a [`LocalOrigin`] runs per request.
type LocalCall = dyn Fn(http::Request<Body>) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send>>
    + Send
    + Sync;

impl LocalOrigin {
    /// The origin behind `call` (for an axum router: clone it and call it, as
    /// `weir serve` does).
    pub fn new<F, Fut>(call: F) -> LocalOrigin
    where
        F: Fn(http::Request<Body>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Body>> + Send + 'static,
    {
        LocalOrigin(Arc::new(move |r| Box::pin(call(r))))
    }

    /// Sends `request` (the peer given as loopback, for routers that ask).
    pub(crate) async fn call(&self, mut request: http::Request<Body>) -> http::Response<Body> {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0))));
        (self.0)(request).await
    }
}

impl std::fmt::Debug for LocalOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalOrigin")
    }
}

/// An upstream response's body: from the network, or from the in-process origin.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    Remote(hyper::body::Incoming),
    Local(Body),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = weir_http::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::Remote(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Remote(b) => b.is_end_stream(),
            UpstreamBody::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Remote(b) => b.size_hint(),
            UpstreamBody::Local(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::{collect, Upstream};

    /// An origin answering every path with `body`, after checking the secret on internal paths.
    fn origin(body: Bytes) -> LocalOrigin {
        LocalOrigin::new(move |request: http::Request<Body>| {
            let body = body.clone();
            async move {
                let internal = request.uri().path().starts_with("/internal/");
                let secret = request
                    .headers()
                    .get(crate::CLUSTER_SECRET_HEADER)
                    .is_some();
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .is_some();
                let status = if internal != secret || !peer {
                    403
                } else {
                    200
                };
                http::Response::builder()
                    .status(status)
                    .header(http::header::CACHE_CONTROL, "max-age=2")
                    .body(Body::from(body))
                    .unwrap()
            }
        })
    }

    #[tokio::test]
    async fn the_in_process_origin_answers_with_its_own_bytes_and_the_secret_on_internal_paths() {
        let segment = Bytes::from(vec![7u8; 1 << 20]);
        let secret = weir_config::ClusterSecret::new("0123456789abcdef0123456789abcdef").ok();
        let upstream = Upstream::new(
            "http://127.0.0.1:9",
            None,
            Duration::from_secs(1),
            secret.clone(),
            secret,
            Some(origin(segment.clone())),
        )
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for path in ["/live/e/source/s1.m4s", "/internal/v1/events/e/access"] {
            // Nothing listens on the targets' port: the answer came from the call.
            let (head, body) = upstream.open(path, deadline).await.unwrap();
            assert_eq!(head.status, 200, "{path}");
            assert_eq!(head.cache_control.unwrap(), "max-age=2");
            let got = collect(body, deadline).await.unwrap();
            assert_eq!(got.len(), segment.len());
            assert_eq!(
                got.as_ptr(),
                segment.as_ptr(),
                "the same allocation, not a copy"
            );
        }
    }
}
