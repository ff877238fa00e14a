//! weir's end-to-end tests: real `weir` processes on loopback, published to by the `ffmpeg`
//! CLI, played through the edge, with every object checked.

mod support;

mod access;
mod admin;
mod bad_input;
mod cbcs;
mod dashboard;
mod edge;
mod edge_fetch;
mod encryption;
mod ertmp;
mod failover;
mod fake_upstream;
mod hooks;
mod ladder;
mod lifetime;
mod listeners;
mod live;
mod lowlatency;
mod reconnect;
mod rtmp_bounds;
mod speke;
mod srt;
mod timeline;
mod tokens;
