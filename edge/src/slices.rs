//! A cached body answered over HTTP/2 is handed to hyper in slices of [`HTTP2_SLICE`] bytes
//! (zero-copy: each slice shares the cached allocation), so that every DATA frame with its
//! 9-byte header fills exactly one 16 KiB TLS record (RFC 8446 §5.1, the largest record;
//! RFC 9113 §4.1, the frame header). Handed whole, the body leaves in frames of the client's
//! largest frame size (16 KiB from browsers), and rustls seals each frame, which hyper's
//! HTTP/2 writes and flushes one at a time, as a full record and a 9-byte one: twice the
//! records for the viewer to open.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Body bytes per DATA frame over HTTP/2: a 16,384-byte TLS record less the frame header.
pub(crate) const HTTP2_SLICE: usize = 16_384 - 9;

// A frame and its header fill one record, exactly.
const _: () = assert!(HTTP2_SLICE + 9 == 16_384);

/// `body` as a response body of `HTTP2_SLICE`-byte data frames (the last one shorter).
pub(crate) fn sliced(body: Bytes) -> axum::body::Body {
    axum::body::Body::new(Slices {
        rest: body,
        size: HTTP2_SLICE,
    })
}

/// What is left of the body, and the slice size.
#[derive(Debug)]
struct Slices {
    rest: Bytes,
    size: usize,
}

impl http_body::Body for Slices {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.rest.len().min(this.size);
        Poll::Ready(Some(Ok(Frame::data(this.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The slices are the body, in order, each full but the last, and the size is
        /// known exactly up front (Content-Length and the counters read it).
        #[test]
        fn slices_are_the_body_in_order(len in 0usize..200_000, size in 1usize..40_000) {
            let body = Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
            let mut s = Slices { rest: body.clone(), size };
            prop_assert_eq!(s.size_hint().exact(), Some(len as u64));
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let frames: Vec<Bytes> = runtime.block_on(async {
                let mut out = Vec::new();
                while let Some(f) = s.frame().await {
                    out.push(f.unwrap().into_data().unwrap());
                }
                out
            });
            prop_assert!(s.is_end_stream());
            prop_assert_eq!(frames.len(), len.div_ceil(size));
            let (last, full) = frames.split_last().map_or((None, &[][..]), |(l, f)| (Some(l), f));
            prop_assert!(full.iter().all(|f| f.len() == size));
            prop_assert!(last.is_none_or(|l| !l.is_empty() && l.len() <= size));
            prop_assert_eq!(frames.concat(), body.to_vec());
        }
    }
}
