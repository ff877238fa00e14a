/// Why a codec configuration record could not be used.
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
}
