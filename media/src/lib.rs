//! The media vocabulary that weir's ingest and packager share.
//!
//! Ingest turns what a publisher sends (RTMP messages today, MPEG-TS over SRT later) into
//! [`Frame`]s and [`TrackInfo`]; the packager turns those into CMAF and HLS. This crate holds only
//! the types between them and the parsers of the codec configuration records that both need
//! (H.264 `AVCDecoderConfigurationRecord`, AAC `AudioSpecificConfig`). It does no I/O.
//!
//! ```text
//!  RTMP/FLV tags --ingest--> TrackInfo + Frame --packager--> init.mp4, N.m4s, index.m3u8
//! ```
//!
//! ```
//! use weir_media::{Timestamp, Timescale};
//! let t = Timestamp::new(2_000, Timescale::MILLIS);
//! assert_eq!(t.rescale(Timescale::MPEG_90K), 180_000);
//! ```

mod av1;
mod codec;
mod error;
mod frame;
mod hevc;
mod hevc_slice;
mod protected;
mod time;

// The public interface.
pub use av1::Av1Config;
pub use codec::{AacConfig, AvcConfig, CodecConfig, AAC_SAMPLES_PER_FRAME};
pub use error::MediaError;
pub use frame::{Frame, TrackInfo, TrackKind};
pub use hevc::HevcConfig;
pub use protected::{protected_runs, ProtectedRanges, Subsample};
pub use time::{Timescale, Timestamp};
