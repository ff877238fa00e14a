//! CPIX 2.3 documents as SPEKE v2.0 exchanges them (DASH-IF "Content Protection Information
//! Exchange Format", the SPEKE API v2 "Standard payload components"): the request weir sends
//! and the key provider's answer. Sans-I/O: strings in, typed values out.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use quick_xml::escape::escape;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;

use super::{DrmSystem, KeyRequest, ProvidedKey, SystemSignalling};

/// The CPIX namespace.
const CPIX_NS: &str = "urn:dashif:org:cpix";
/// The PSKC namespace (RFC 6030), which carries the key itself.
const PSKC_NS: &str = "urn:ietf:params:xml:ns:keyprov:pskc";

/// Why a key provider's CPIX answer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpixError {
    /// Not well-formed XML.
    #[error("the CPIX answer is not well-formed XML: {0}")]
    Xml(String),
    /// No `ContentKey` for the requested KID, or one without a key.
    #[error("the CPIX answer has no key for KID {0}")]
    MissingKey(String),
    /// The key is encrypted (SPEKE's content key encryption), which weir does not take.
    #[error("the CPIX answer's key is encrypted (pskc:EncryptedValue); weir takes keys in the clear over HTTPS")]
    EncryptedKey,
    /// A value that should be base64 is not.
    #[error("the CPIX answer's {0} is not base64")]
    Base64(&'static str),
    /// A key or IV that is not 16 bytes.
    #[error("the CPIX answer's {what} is {len} bytes, not 16")]
    Length {
        /// `key` or `explicitIV`.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// An asked-for system has no `DRMSystem` entry for the KID, or that entry lacks its
    /// `pssh` or its media playlist signalling.
    #[error("the CPIX answer has no {what} for {system}")]
    MissingSystem {
        /// The system.
        system: DrmSystem,
        /// What is missing.
        what: &'static str,
    },
    /// A `pssh` that is not one `pssh` box of its system.
    #[error("the CPIX answer's PSSH for {0} is not a pssh box of that system")]
    Pssh(DrmSystem),
    /// HLS signalling that is not one `EXT-X-KEY` (media) or `EXT-X-SESSION-KEY` (master)
    /// line of `METHOD=SAMPLE-AES`.
    #[error("the CPIX answer's HLS signalling for {0} is not a SAMPLE-AES key tag")]
    Signalling(DrmSystem),
}

/// A 16-byte id as CPIX writes KIDs and system IDs: a lowercase UUID
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub(crate) fn uuid(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A UUID (any case, dashes optional) as 16 bytes.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// The CPIX request for `request`: one content key (`cbcs`), one `DRMSystem` per system asking
/// for its `PSSH` (not FairPlay's) and its media and master playlist signalling, one key
/// period (`index` = the rotation period) and one usage rule for all tracks in that period.
pub fn request_document(request: &KeyRequest) -> String {
    let kid = uuid(&request.kid);
    let period = format!("keyPeriod_{}", request.period);
    let mut x = String::with_capacity(1024);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <cpix:CPIX xmlns:cpix=\"urn:dashif:org:cpix\" xmlns:pskc=\"urn:ietf:params:xml:ns:keyprov:pskc\" \
         contentId=\"{}\" version=\"2.3\">\n\
         <cpix:ContentKeyList>\n<cpix:ContentKey kid=\"{kid}\" commonEncryptionScheme=\"cbcs\"/>\n\
         </cpix:ContentKeyList>\n<cpix:DRMSystemList>\n",
        escape(request.content_id.as_str())
    );
    for system in &request.systems {
        let _ = writeln!(
            x,
            "<cpix:DRMSystem kid=\"{kid}\" systemId=\"{}\">",
            uuid(&system.system_id())
        );
        if system.has_pssh() {
            x.push_str("<cpix:PSSH/>\n");
        }
        x.push_str(
            "<cpix:HLSSignalingData playlist=\"media\"/>\n\
             <cpix:HLSSignalingData playlist=\"master\"/>\n</cpix:DRMSystem>\n",
        );
    }
    let _ = write!(
        x,
        "</cpix:DRMSystemList>\n<cpix:ContentKeyPeriodList>\n\
         <cpix:ContentKeyPeriod id=\"{period}\" index=\"{}\"/>\n</cpix:ContentKeyPeriodList>\n\
         <cpix:ContentKeyUsageRuleList>\n\
         <cpix:ContentKeyUsageRule kid=\"{kid}\" intendedTrackType=\"ALL\">\n\
         <cpix:KeyPeriodFilter periodId=\"{period}\"/>\n</cpix:ContentKeyUsageRule>\n\
         </cpix:ContentKeyUsageRuleList>\n</cpix:CPIX>\n",
        request.period
    );
    x
}

/// Where the reader is inside the answer: which text it is collecting.
#[derive(Clone, Copy)]
enum Collecting {
    Nothing,
    Key,
    Pssh(DrmSystem),
    Media(DrmSystem),
    Master(DrmSystem),
}

/// What the answer said about one system, before it is checked.
#[derive(Default)]
struct Raw {
    pssh: Option<String>,
    media: Option<String>,
    master: Option<String>,
}

/// The reader's state: what it has found for the request so far.
struct Answer<'r> {
    request: &'r KeyRequest,
    key: Option<String>,
    iv: Option<String>,
    encrypted: bool,
    in_our_key: bool,
    system: Option<DrmSystem>,
    raw: Vec<(DrmSystem, Raw)>,
    collecting: Collecting,
    text: String,
}

impl Answer<'_> {
    fn start(&mut self, ns: Option<&str>, e: &BytesStart<'_>) -> Result<(), CpixError> {
        self.text.clear();
        match (ns, e.local_name().as_ref()) {
            (Some(CPIX_NS), "ContentKey") => {
                let kid = attr(e, "kid")?.and_then(|k| parse_uuid(&k));
                self.in_our_key = kid == Some(self.request.kid);
                if self.in_our_key {
                    self.iv = attr(e, "explicitIV")?;
                }
            }
            (Some(PSKC_NS), "PlainValue") if self.in_our_key => self.collecting = Collecting::Key,
            (Some(PSKC_NS), "EncryptedValue") if self.in_our_key => self.encrypted = true,
            (Some(CPIX_NS), "DRMSystem") => {
                let kid = attr(e, "kid")?.and_then(|k| parse_uuid(&k));
                let id = attr(e, "systemId")?.and_then(|s| parse_uuid(&s));
                self.system = id
                    .and_then(|id| DrmSystem::from_system_id(&id))
                    .filter(|s| kid == Some(self.request.kid) && self.request.systems.contains(s));
            }
            (Some(CPIX_NS), "PSSH") => {
                if let Some(s) = self.system {
                    self.collecting = Collecting::Pssh(s);
                }
            }
            (Some(CPIX_NS), "HLSSignalingData") => {
                if let Some(s) = self.system {
                    self.collecting = match attr(e, "playlist")?.as_deref() {
                        Some("master") => Collecting::Master(s),
                        _ => Collecting::Media(s),
                    };
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, ns: Option<&str>, local: &str) {
        let value = std::mem::take(&mut self.text);
        let collecting = std::mem::replace(&mut self.collecting, Collecting::Nothing);
        if let Collecting::Key = collecting {
            self.key = Some(value);
        } else if let Collecting::Pssh(s) | Collecting::Media(s) | Collecting::Master(s) =
            collecting
        {
            if let Some((_, r)) = self.raw.iter_mut().find(|(r, _)| *r == s) {
                let slot = match collecting {
                    Collecting::Pssh(_) => &mut r.pssh,
                    Collecting::Media(_) => &mut r.media,
                    _ => &mut r.master,
                };
                *slot = Some(value);
            }
        }
        self.close(ns, local);
    }

    /// Leaves element `local`: out of the key or the system it closes.
    fn close(&mut self, ns: Option<&str>, local: &str) {
        match (ns, local) {
            (Some(CPIX_NS), "ContentKey") => self.in_our_key = false,
            (Some(CPIX_NS), "DRMSystem") => self.system = None,
            _ => {}
        }
    }
}

/// The key and signalling for `request` out of a key provider's CPIX answer `xml`. Elements
/// are matched by namespace (any prefix); entries for other KIDs or systems are ignored.
///
/// # Errors
/// [`CpixError`]: malformed XML, no clear key for the KID, a key or IV not 16 bytes, a
/// requested system without its `pssh` (but FairPlay) or media playlist signalling, a `pssh`
/// of another system, or signalling that is not one SAMPLE-AES key tag.
pub fn parse_response(xml: &str, request: &KeyRequest) -> Result<ProvidedKey, CpixError> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut a = Answer {
        request,
        key: None,
        iv: None,
        encrypted: false,
        in_our_key: false,
        system: None,
        raw: request
            .systems
            .iter()
            .map(|s| (*s, Raw::default()))
            .collect(),
        collecting: Collecting::Nothing,
        text: String::new(),
    };
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| CpixError::Xml(e.to_string()))?;
        let ns = match ns {
            ResolveResult::Bound(Namespace(n)) => Some(n),
            _ => None,
        };
        match event {
            Event::Start(e) => a.start(ns, &e)?,
            Event::Empty(e) => {
                a.start(ns, &e)?;
                a.end(ns, e.local_name().as_ref());
            }
            Event::Text(t) => a.text.push_str(&t.xml10_content()),
            Event::CData(c) => a.text.push_str(&c.into_inner()),
            Event::End(e) => a.end(ns, e.local_name().as_ref()),
            Event::Eof => break,
            _ => {}
        }
    }
    if a.encrypted {
        return Err(CpixError::EncryptedKey);
    }
    let key = a
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| CpixError::MissingKey(uuid(&request.kid)))?;
    let key = sixteen(&decode(&key, "key")?, "key")?;
    let iv = match a.iv {
        Some(iv) => Some(sixteen(&decode(&iv, "explicitIV")?, "explicitIV")?),
        None => None,
    };
    let systems = a
        .raw
        .into_iter()
        .map(|(system, r)| signalling(system, r))
        .collect::<Result<_, _>>()?;
    Ok(ProvidedKey {
        kid: request.kid,
        key,
        iv,
        systems,
    })
}

/// Attribute `name` of `e`, unescaped.
fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, CpixError> {
    let Some(a) = e
        .try_get_attribute(name)
        .map_err(|err| CpixError::Xml(err.to_string()))?
    else {
        return Ok(None);
    };
    let v = a
        .normalized_value(XmlVersion::Implicit1_0)
        .map_err(|err| CpixError::Xml(err.to_string()))?;
    Ok(Some(v.into_owned()))
}

fn decode(b64: &str, what: &'static str) -> Result<Vec<u8>, CpixError> {
    let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64.decode(clean).map_err(|_| CpixError::Base64(what))
}

fn sixteen(b: &[u8], what: &'static str) -> Result<[u8; 16], CpixError> {
    b.try_into()
        .map_err(|_| CpixError::Length { what, len: b.len() })
}

/// One system's signalling, checked: its `pssh` one box of its own system ID, its tags one
/// line of the expected tag with `METHOD=SAMPLE-AES`.
fn signalling(system: DrmSystem, raw: Raw) -> Result<SystemSignalling, CpixError> {
    let missing = |what| CpixError::MissingSystem { system, what };
    let pssh = if system.has_pssh() {
        let b = decode(&raw.pssh.ok_or(missing("PSSH"))?, "PSSH")?;
        let size_ok =
            b.len() >= 32 && u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize == b.len();
        if !size_ok || &b[4..8] != b"pssh" || b[12..28] != system.system_id() {
            return Err(CpixError::Pssh(system));
        }
        Some(b)
    } else {
        None
    };
    let media = raw.media.ok_or(missing("media playlist signalling"))?;
    let media_key_tag = tag(&decode(&media, "HLSSignalingData")?, "#EXT-X-KEY:")
        .ok_or(CpixError::Signalling(system))?;
    let session_key_tag = match raw.master {
        Some(m) => Some(
            tag(&decode(&m, "HLSSignalingData")?, "#EXT-X-SESSION-KEY:")
                .ok_or(CpixError::Signalling(system))?,
        ),
        None => None,
    };
    Ok(SystemSignalling {
        system,
        pssh,
        media_key_tag,
        session_key_tag,
    })
}

/// The attribute list of `line` if it is one `name` tag line of a SAMPLE-AES key.
fn tag(line: &[u8], name: &str) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.trim();
    let attrs = line.strip_prefix(name)?;
    let one_line = !attrs.contains(['\n', '\r']);
    (one_line && attrs.split(',').any(|a| a == "METHOD=SAMPLE-AES")).then(|| attrs.to_string())
}
