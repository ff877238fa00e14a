/// Why a codec configuration record or a sample could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The H.264 `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1) is truncated or
    /// inconsistent, or carries no usable sequence parameter set.
    #[error("invalid AVC decoder configuration record: {0}")]
    InvalidAvcConfig(String),
    /// The AAC `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) is truncated or names a
    /// sampling frequency or channel layout weir cannot package.
    #[error("invalid AAC AudioSpecificConfig: {0}")]
    InvalidAacConfig(&'static str),
    /// A sample that cannot be protected as it is: a NAL unit length overruns the sample, or
    /// a slice header does not parse (ISO/IEC 14496-15 §5.3.2, ITU-T H.264 §7.3.3).
    #[error("invalid sample: {0}")]
    InvalidSample(&'static str),
    /// Something weir does not do yet for this codec.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}
