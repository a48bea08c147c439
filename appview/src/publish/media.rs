//! What an uploaded blob is, from its bytes (the declared `Content-Type` is not trusted),
//! and how large each kind may be.
//!
//! Only the types AC publishes are accepted: PNG and JPEG images (painting thumbnails) and
//! MP4 video (tapes). The signatures are the formats' own: PNG's 8-byte signature, JPEG's
//! `FF D8 FF` start of image, and an ISO base media file whose first box is `ftyp` with an
//! MP4 brand.

use std::fmt;

/// The bytes a sniff needs to decide (an MP4's `ftyp` box header and major brand).
pub const SNIFF_BYTES: usize = 12;

/// A media type the publishing API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `video/mp4`.
    Mp4,
}

impl Media {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Media::Png => "image/png",
            Media::Jpeg => "image/jpeg",
            Media::Mp4 => "video/mp4",
        }
    }

    /// Whether it is an image (limited like a thumbnail) rather than a video.
    pub fn is_image(self) -> bool {
        matches!(self, Media::Png | Media::Jpeg)
    }

    /// The type a declared `Content-Type` names (parameters ignored), if accepted.
    pub fn from_mime(mime: &str) -> Option<Media> {
        let essence = mime.split(';').next().unwrap_or("").trim();
        [Media::Png, Media::Jpeg, Media::Mp4]
            .into_iter()
            .find(|m| m.mime().eq_ignore_ascii_case(essence))
    }

    /// What the first bytes of a file are (`None`: none of the accepted types, or fewer
    /// than [`SNIFF_BYTES`] bytes for a video).
    pub fn sniff(head: &[u8]) -> Option<Media> {
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
        if head.starts_with(PNG) {
            return Some(Media::Png);
        }
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(Media::Jpeg);
        }
        // ISO BMFF: a 4-byte box size, then the box type `ftyp`, then the major brand.
        if head.len() >= SNIFF_BYTES && &head[4..8] == b"ftyp" {
            let brand = &head[8..12];
            let mp4 = [
                &b"isom"[..],
                b"iso2",
                b"iso4",
                b"iso5",
                b"iso6",
                b"mp41",
                b"mp42",
                b"avc1",
                b"M4V ",
                b"dash",
            ];
            if mp4.contains(&brand) {
                return Some(Media::Mp4);
            }
        }
        None
    }
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// The accepted types, for error messages.
pub const ACCEPTED: &str = "image/png, image/jpeg or video/mp4";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_signature_not_by_name() {
        let cases: &[(&[u8], Option<Media>)] = &[
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some(Media::Png)),
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", Some(Media::Jpeg)),
            (b"\0\0\0\x20ftypisom\0\0\x02\0", Some(Media::Mp4)),
            (b"\0\0\0\x18ftypmp42\0\0\0\0", Some(Media::Mp4)),
            // QuickTime and HEIF are ISO BMFF too, but not what AC publishes.
            (b"\0\0\0\x14ftypqt  \0\0\0\0", None),
            (b"\0\0\0\x18ftypheic\0\0\0\0", None),
            (b"GIF89a\x01\0\x01\0\0\0", None),
            (b"<svg xmlns=", None),
            (b"\x89PN", None),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(Media::sniff(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn declared_types_ignore_parameters_and_case() {
        assert_eq!(Media::from_mime("image/PNG"), Some(Media::Png));
        assert_eq!(Media::from_mime("video/mp4; codecs=avc1"), Some(Media::Mp4));
        assert_eq!(Media::from_mime("image/gif"), None);
    }
}
