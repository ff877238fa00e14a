//! Transcoding ladders: the renditions an event is published in (`[ladders.NAME]`, and the
//! built-in `default` and `passthrough`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ConfigError;

/// The libx264 presets (`x264 --fullhelp`), fastest first.
pub const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// The H.264 profiles a rung may ask libx264 for (ITU-T H.264 Annex A).
pub const H264_PROFILES: [&str; 3] = ["baseline", "main", "high"];

/// What an event's viewers get: video renditions (each a variant stream of the master
/// playlist) and one audio rendition shared by all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct LadderSettings {
    /// The ladder's name (`default`, `passthrough`, or a `[ladders.NAME]` table).
    pub name: String,
    /// Video renditions, from the top rung down. Never empty.
    pub video: Vec<VideoRendition>,
    /// The audio rendition.
    pub audio: AudioRendition,
}

impl LadderSettings {
    /// The built-in `default` ladder: 1080p 5000k, 720p 2800k, 480p 1200k, 360p 700k
    /// (libx264 `veryfast`), AAC-LC 128 kb/s stereo 48 kHz. Rungs above the source's size
    /// are skipped when a publisher starts.
    pub fn default_ladder() -> LadderSettings {
        let rung = |name: &str, width, height, kbps: u32, profile: &str, fps| VideoRendition {
            name: name.into(),
            encoding: Some(VideoEncoding {
                width,
                height,
                bitrate_bps: kbps * 1000,
                max_rate_bps: kbps * 1100,
                buffer_size_bits: kbps * 2000,
                profile: profile.into(),
                preset: "veryfast".into(),
                max_frame_rate: fps,
            }),
        };
        LadderSettings {
            name: "default".into(),
            video: vec![
                rung("1080p", 1920, 1080, 5000, "high", 60.0),
                rung("720p", 1280, 720, 2800, "high", 60.0),
                rung("480p", 854, 480, 1200, "main", 30.0),
                rung("360p", 640, 360, 700, "main", 30.0),
            ],
            audio: AudioRendition {
                name: "audio".into(),
                encoding: Some(AudioEncoding::default()),
            },
        }
    }

    /// The built-in `passthrough` ladder: the source's video and audio, untouched.
    pub fn passthrough() -> LadderSettings {
        LadderSettings {
            name: "passthrough".into(),
            video: vec![VideoRendition {
                name: "source".into(),
                encoding: None,
            }],
            audio: AudioRendition {
                name: "audio".into(),
                encoding: None,
            },
        }
    }

    /// Whether every rendition carries the source untouched (no transcoder is needed).
    pub fn is_passthrough(&self) -> bool {
        self.video.iter().all(|v| v.encoding.is_none()) && self.audio.encoding.is_none()
    }
}

/// One video rendition of a ladder.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoRendition {
    /// Its name: the URL path component of its playlist (`/live/{event}/{name}/index.m3u8`),
    /// 1-32 of `[A-Za-z0-9_-]`.
    pub name: String,
    /// How it is encoded, or `None` for the source's video untouched.
    pub encoding: Option<VideoEncoding>,
}

/// How a video rung is encoded (libx264, closed GOPs, keyframes aligned across the ladder).
#[derive(Clone, Debug, PartialEq)]
pub struct VideoEncoding {
    /// Width of the rung's box, pixels (even). The source is fitted into the box, keeping
    /// its aspect ratio, and never scaled up.
    pub width: u32,
    /// Height of the rung's box, pixels (even).
    pub height: u32,
    /// Target average bit rate, bits/s (x264 ABR).
    pub bitrate_bps: u32,
    /// VBV maximum rate, bits/s.
    pub max_rate_bps: u32,
    /// VBV buffer size, bits.
    pub buffer_size_bits: u32,
    /// H.264 profile: one of [`H264_PROFILES`].
    pub profile: String,
    /// x264 preset: one of [`X264_PRESETS`].
    pub preset: String,
    /// Frames per second the rung never exceeds; a faster source is decimated.
    pub max_frame_rate: f64,
}

/// The audio rendition of a ladder.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioRendition {
    /// Its name (the URL path component): `audio`.
    pub name: String,
    /// How it is encoded, or `None` for the source's audio untouched.
    pub encoding: Option<AudioEncoding>,
}

/// How the audio rendition is encoded: AAC-LC (FFmpeg's native encoder).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioEncoding {
    /// Bit rate, bits/s. Default 128 000.
    pub bitrate_bps: u32,
    /// Channels, 1 or 2. Default 2 (a 5.1 source is downmixed).
    pub channels: u8,
    /// Sample rate, Hz: 32 000, 44 100 or 48 000. Default 48 000.
    pub sample_rate: u32,
}

impl Default for AudioEncoding {
    fn default() -> Self {
        AudioEncoding {
            bitrate_bps: 128_000,
            channels: 2,
            sample_rate: 48_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLadder {
    video: Vec<RawVideo>,
    #[serde(default)]
    audio: RawAudio,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVideo {
    name: String,
    #[serde(default)]
    passthrough: bool,
    width: Option<u32>,
    height: Option<u32>,
    bitrate_kbps: Option<u32>,
    max_rate_kbps: Option<u32>,
    buffer_kbits: Option<u32>,
    profile: Option<String>,
    preset: Option<String>,
    max_frame_rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudio {
    passthrough: bool,
    bitrate_kbps: u32,
    channels: u8,
    sample_rate: u32,
}

impl Default for RawAudio {
    fn default() -> Self {
        let d = AudioEncoding::default();
        RawAudio {
            passthrough: false,
            bitrate_kbps: d.bitrate_bps / 1000,
            channels: d.channels,
            sample_rate: d.sample_rate,
        }
    }
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

/// Validates the `[ladders.*]` tables; the built-in names may not be redefined.
pub(crate) fn validate_ladders(
    raw: BTreeMap<String, RawLadder>,
) -> Result<Vec<LadderSettings>, ConfigError> {
    let mut out = vec![
        LadderSettings::default_ladder(),
        LadderSettings::passthrough(),
    ];
    for (name, ladder) in raw {
        if out.iter().any(|l| l.name == name) {
            return Err(invalid(format!("ladders.{name}: a built-in ladder's name")));
        }
        out.push(validate_ladder(&name, ladder)?);
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_ladder(ladder: &str, raw: RawLadder) -> Result<LadderSettings, ConfigError> {
    if raw.video.is_empty() {
        return Err(invalid(format!(
            "ladders.{ladder}.video: at least one rendition"
        )));
    }
    let mut video: Vec<VideoRendition> = Vec::with_capacity(raw.video.len());
    for v in raw.video {
        let field = format!("ladders.{ladder}.video {:?}", v.name);
        if !valid_name(&v.name) || v.name == "audio" {
            return Err(invalid(format!(
                "{field}: name must be 1-32 of [A-Za-z0-9_-] and not \"audio\""
            )));
        }
        if video.iter().any(|o| o.name == v.name) {
            return Err(invalid(format!("{field}: repeated name")));
        }
        if v.passthrough {
            if video.iter().any(|o| o.encoding.is_none()) {
                return Err(invalid(format!("{field}: only one passthrough rendition")));
            }
            video.push(VideoRendition {
                name: v.name,
                encoding: None,
            });
            continue;
        }
        let (Some(width), Some(height), Some(kbps)) = (v.width, v.height, v.bitrate_kbps) else {
            return Err(invalid(format!(
                "{field}: width, height and bitrate_kbps are required (or passthrough = true)"
            )));
        };
        if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
            return Err(invalid(format!(
                "{field}: {width}x{height} is out of range"
            )));
        }
        if !(50..=100_000).contains(&kbps) {
            return Err(invalid(format!(
                "{field}: bitrate_kbps {kbps} is outside 50..=100000"
            )));
        }
        let max_kbps = v.max_rate_kbps.unwrap_or(kbps + kbps / 10);
        if max_kbps < kbps || max_kbps > 200_000 {
            return Err(invalid(format!(
                "{field}: max_rate_kbps {max_kbps} must be at least bitrate_kbps"
            )));
        }
        let buffer = v.buffer_kbits.unwrap_or(kbps * 2);
        if !(kbps / 4..=400_000).contains(&buffer) {
            return Err(invalid(format!(
                "{field}: buffer_kbits {buffer} is out of range"
            )));
        }
        let profile = v.profile.unwrap_or_else(|| "high".into());
        if !H264_PROFILES.contains(&profile.as_str()) {
            return Err(invalid(format!(
                "{field}: profile {profile:?} is not one of {H264_PROFILES:?}"
            )));
        }
        let preset = v.preset.unwrap_or_else(|| "veryfast".into());
        if !X264_PRESETS.contains(&preset.as_str()) {
            return Err(invalid(format!(
                "{field}: preset {preset:?} is not one of {X264_PRESETS:?}"
            )));
        }
        let max_frame_rate = v.max_frame_rate.unwrap_or(60.0);
        if !(1.0..=240.0).contains(&max_frame_rate) {
            return Err(invalid(format!(
                "{field}: max_frame_rate {max_frame_rate} is outside 1..=240"
            )));
        }
        video.push(VideoRendition {
            name: v.name,
            encoding: Some(VideoEncoding {
                width: width & !1,
                height: height & !1,
                bitrate_bps: kbps * 1000,
                max_rate_bps: max_kbps * 1000,
                buffer_size_bits: buffer * 1000,
                profile,
                preset,
                max_frame_rate,
            }),
        });
    }
    let a = raw.audio;
    let audio = if a.passthrough {
        None
    } else {
        if !(16..=512).contains(&a.bitrate_kbps) {
            return Err(invalid(format!(
                "ladders.{ladder}.audio.bitrate_kbps: {} is outside 16..=512",
                a.bitrate_kbps
            )));
        }
        if !(1..=2).contains(&a.channels) {
            return Err(invalid(format!(
                "ladders.{ladder}.audio.channels: {} (1 or 2)",
                a.channels
            )));
        }
        if ![32_000, 44_100, 48_000].contains(&a.sample_rate) {
            return Err(invalid(format!(
                "ladders.{ladder}.audio.sample_rate: {} (32000, 44100 or 48000)",
                a.sample_rate
            )));
        }
        Some(AudioEncoding {
            bitrate_bps: a.bitrate_kbps * 1000,
            channels: a.channels,
            sample_rate: a.sample_rate,
        })
    };
    Ok(LadderSettings {
        name: ladder.into(),
        video,
        audio: AudioRendition {
            name: "audio".into(),
            encoding: audio,
        },
    })
}
