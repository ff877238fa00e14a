//! weir played by hls.js in headless Chromium, through the edge. A test binary of its own:
//! cargo runs test binaries one after another, so these run after the other end-to-end tests
//! and never beside them. They count stalls, and on two cores a stall comes as easily from
//! an ffmpeg encoding HEVC for a neighbouring test as from weir; within this binary every
//! test holds the transcode slot, so one player plays at a time.

#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../it/tokens.rs"]
mod tokens;

mod player;
