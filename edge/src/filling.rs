//! A media object still arriving from the upstream, shared by every viewer of one miss: each
//! gets the bytes received so far at once and the rest as they arrive, so a 1 MB segment
//! reaches the viewers waiting on it as fast as the upstream sends it, not after its last
//! byte. When the body is complete it goes into the cache whole
//! ([`crate::coalesce`]); viewers who come after that are hits.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::watch;

use crate::upstream::MAX_BODY_BYTES;
use crate::EdgeError;

/// The upstream's answer before its body: what a viewer's response needs up front.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) cache_control: Option<HeaderValue>,
    /// The upstream's `CDN-Cache-Control` (RFC 9213): when present, the edge's lifetime for
    /// the object instead of `Cache-Control`'s; passed on to an edge in front.
    pub(crate) cdn_cache_control: Option<HeaderValue>,
    /// The upstream's `Age`, seconds.
    pub(crate) age: u64,
    /// The upstream's `Content-Length`, bytes, when it sent one.
    pub(crate) content_length: Option<u64>,
}

/// A body being received: the chunks so far, and how it ended (once it has).
#[derive(Debug)]
pub(crate) struct Filling {
    pub(crate) head: Head,
    state: Mutex<State>,
    /// Bumped on every new chunk and at the end; readers wait on it.
    progress: watch::Sender<()>,
}

#[derive(Debug, Default)]
struct State {
    chunks: Vec<Bytes>,
    received: usize,
    /// `Some(true)`: complete; `Some(false)`: the upstream failed part-way.
    ended: Option<bool>,
}

impl Filling {
    pub(crate) fn new(head: Head) -> Arc<Filling> {
        Arc::new(Filling {
            head,
            state: Mutex::new(State::default()),
            progress: watch::Sender::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a chunk from the upstream; returns the bytes received so far.
    pub(crate) fn push(&self, chunk: Bytes) -> usize {
        let received = {
            let mut s = self.state();
            s.received += chunk.len();
            s.chunks.push(chunk);
            s.received
        };
        self.progress.send_replace(());
        received
    }

    /// Marks the body complete and returns it whole, for the cache (one copy, none for a
    /// body that came in one chunk).
    pub(crate) fn complete(&self) -> Bytes {
        let body = {
            let mut s = self.state();
            s.ended = Some(true);
            match s.chunks.as_slice() {
                // One chunk (a small object): shared, not copied.
                [one] => one.clone(),
                chunks => {
                    let mut whole = Vec::with_capacity(s.received);
                    chunks.iter().for_each(|c| whole.extend_from_slice(c));
                    Bytes::from(whole)
                }
            }
        };
        self.progress.send_replace(());
        body
    }

    /// Marks the body failed: every reader's body ends in an error (the viewer's connection
    /// sees a truncated response, never a short one that looks whole).
    pub(crate) fn fail(&self) {
        self.state().ended = Some(false);
        self.progress.send_replace(());
    }

    /// The body for one viewer: what has arrived, then the rest as it comes.
    pub(crate) fn body(self: &Arc<Self>) -> Body {
        let reader = Reader {
            filling: self.clone(),
            progress: self.progress.subscribe(),
            next: 0,
        };
        Body::from_stream(futures_util::stream::unfold(reader, Reader::next))
    }
}

/// One viewer's place in a [`Filling`].
struct Reader {
    filling: Arc<Filling>,
    progress: watch::Receiver<()>,
    /// Index of the next chunk to send.
    next: usize,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Reader)> {
        loop {
            // Marked seen before the state is read: a chunk pushed after this wakes us.
            self.progress.borrow_and_update();
            let step = {
                let s = self.filling.state();
                match (s.chunks.get(self.next), s.ended) {
                    (Some(c), _) => Some(Ok(c.clone())),
                    (None, Some(true)) => return None,
                    (None, Some(false)) => Some(Err(std::io::Error::other(
                        "the upstream failed part-way through the body",
                    ))),
                    (None, None) => None,
                }
            };
            match step {
                Some(Ok(chunk)) => {
                    self.next += 1;
                    return Some((Ok(chunk), self));
                }
                Some(Err(e)) => {
                    // End after the error: mark the reader finished.
                    self.next = usize::MAX;
                    return Some((Err(e), self));
                }
                None if self.next == usize::MAX => return None,
                None => {
                    if self.progress.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// Reads a body into `filling` as it arrives, by `deadline`, at most [`MAX_BODY_BYTES`];
/// the whole body when complete. On failure the readers' bodies end in an error.
pub(crate) async fn receive(
    mut body: crate::local::UpstreamBody,
    filling: &Filling,
    deadline: tokio::time::Instant,
) -> Result<Bytes, EdgeError> {
    let failed = |e| {
        filling.fail();
        Err(e)
    };
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return failed(EdgeError::UpstreamTimeout),
            Ok(Some(Err(_))) => return failed(EdgeError::UpstreamUnreachable),
            Ok(None) => return Ok(filling.complete()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if filling.push(data) > MAX_BODY_BYTES {
                        return failed(EdgeError::UpstreamUnreachable);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            status: StatusCode::OK,
            content_type: None,
            cache_control: None,
            cdn_cache_control: None,
            age: 0,
            content_length: None,
        }
    }

    #[tokio::test]
    async fn readers_get_what_arrived_then_the_rest_then_the_end() {
        let f = Filling::new(head());
        f.push(Bytes::from_static(b"ab"));
        let mut early = f.body();
        let first = early.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"ab", "what arrived comes at once");
        let f2 = f.clone();
        let feeder = tokio::spawn(async move {
            tokio::task::yield_now().await;
            f2.push(Bytes::from_static(b"cd"));
            assert_eq!(&f2.complete()[..], b"abcd");
        });
        let second = early.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], b"cd");
        assert!(early.frame().await.is_none(), "the body ends when complete");
        feeder.await.unwrap();
        // A reader who starts after the end gets the whole body.
        let late = f.body().collect().await.unwrap().to_bytes();
        assert_eq!(&late[..], b"abcd");
    }

    #[tokio::test]
    async fn a_failed_upstream_ends_every_body_in_an_error() {
        let f = Filling::new(head());
        f.push(Bytes::from_static(b"ab"));
        let body = f.body();
        f.fail();
        assert!(
            body.collect().await.is_err(),
            "a truncated body is an error"
        );
    }
}
