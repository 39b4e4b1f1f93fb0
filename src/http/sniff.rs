//! Content-type sniffing from a piece's first bytes.
//!
//! A PieceCID names bytes, not a media type, and Beam answers every piece as
//! `application/octet-stream`; players need a real type (browsers refuse to
//! play some containers without one). The signatures are the containers
//! media on Filecoin is stored in, plus a few common formats; anything else
//! is `application/octet-stream`. [`SNIFF_LEN`] bytes are enough for all.

/// How many leading bytes [`sniff_content_type`] looks at.
pub const SNIFF_LEN: usize = 512;

/// The fallback type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Guesses a media type from the first bytes of a representation.
pub fn sniff_content_type(head: &[u8]) -> &'static str {
    let starts = |sig: &[u8]| head.starts_with(sig);
    let at = |off: usize, sig: &[u8]| {
        head.len() >= off + sig.len() && &head[off..off + sig.len()] == sig
    };

    // ISO base media (MP4, MOV, M4A, 3GP): a box size, then "ftyp" and a brand.
    if at(4, b"ftyp") && head.len() >= 12 {
        return match &head[8..12] {
            b"qt  " => "video/quicktime",
            b"M4A " | b"M4B " => "audio/mp4",
            b"3gp4" | b"3gp5" | b"3gp6" | b"3ge6" | b"3gg6" => "video/3gpp",
            b"avif" | b"avis" => "image/avif",
            b"heic" | b"heix" | b"mif1" => "image/heic",
            _ => "video/mp4",
        };
    }
    // Fragmented MP4 segments and MOVs that open with another top-level box.
    if at(4, b"moov") || at(4, b"moof") || at(4, b"styp") {
        return "video/mp4";
    }
    // Matroska / WebM: EBML header; the DocType says which.
    if starts(&[0x1a, 0x45, 0xdf, 0xa3]) {
        let window = &head[..head.len().min(64)];
        if window.windows(4).any(|w| w == b"webm") {
            return "video/webm";
        }
        return "video/x-matroska";
    }
    // MPEG transport stream: a sync byte every 188 bytes.
    if head.len() > 188 && head[0] == 0x47 && head[188] == 0x47 {
        return "video/mp2t";
    }
    if starts(b"RIFF") && head.len() >= 12 {
        return match &head[8..12] {
            b"WAVE" => "audio/wav",
            b"AVI " => "video/x-msvideo",
            b"WEBP" => "image/webp",
            _ => OCTET_STREAM,
        };
    }
    if starts(b"OggS") {
        return "application/ogg";
    }
    if starts(b"fLaC") {
        return "audio/flac";
    }
    if starts(b"ID3")
        || (head.len() >= 2 && head[0] == 0xff && matches!(head[1], 0xfb | 0xf3 | 0xf2))
    {
        return "audio/mpeg";
    }
    if head.len() >= 2 && head[0] == 0xff && (head[1] & 0xf6) == 0xf0 {
        return "audio/aac";
    }
    if starts(b"#EXTM3U") {
        return "application/vnd.apple.mpegurl";
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    if starts(&[0xff, 0xd8, 0xff]) {
        return "image/jpeg";
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return "image/gif";
    }
    if starts(b"%PDF-") {
        return "application/pdf";
    }
    if starts(b"PK\x03\x04") {
        return "application/zip";
    }
    if starts(&[0x1f, 0x8b]) {
        return "application/gzip";
    }
    // CARv2 pragma, or a CARv1 header (varint length, then a dag-cbor map
    // holding "roots" and "version").
    if starts(&[
        0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02,
    ]) {
        return "application/vnd.ipld.car";
    }
    if head.len() > 8
        && head[1] == 0xa2
        && head[..head.len().min(48)].windows(5).any(|w| w == b"roots")
    {
        return "application/vnd.ipld.car";
    }
    OCTET_STREAM
}

/// Every type [`sniff_content_type`] can return, so a persisted type can be
/// turned back into a `&'static str`.
const KNOWN: &[&str] = &[
    "video/mp4",
    "video/quicktime",
    "audio/mp4",
    "video/3gpp",
    "image/avif",
    "image/heic",
    "video/webm",
    "video/x-matroska",
    "video/mp2t",
    "audio/wav",
    "video/x-msvideo",
    "image/webp",
    "application/ogg",
    "audio/flac",
    "audio/mpeg",
    "audio/aac",
    "application/vnd.apple.mpegurl",
    "image/png",
    "image/jpeg",
    "image/gif",
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/vnd.ipld.car",
];

/// The longest type [`sniff_content_type`] can return: what a manifest
/// whose type is not known yet is sized with (the upload pre-flight).
pub fn longest_sniffed_type() -> &'static str {
    KNOWN
        .iter()
        .copied()
        .chain([OCTET_STREAM])
        .max_by_key(|t| t.len())
        .unwrap_or(OCTET_STREAM)
}

/// The static form of a sniffed type read back from disk; unknown → octet-stream.
pub fn intern_content_type(s: &str) -> &'static str {
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == s)
        .unwrap_or(OCTET_STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_recognised() {
        assert_eq!(
            sniff_content_type(b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41"),
            "video/mp4"
        );
        assert_eq!(
            sniff_content_type(b"\0\0\0\x14ftypqt  \0\0\0\0qt  "),
            "video/quicktime"
        );
        assert_eq!(
            sniff_content_type(b"\0\0\0\x20ftypM4A \0\0\0\0"),
            "audio/mp4"
        );
        assert_eq!(sniff_content_type(b"\0\0\x10\0moov\0\0"), "video/mp4");
        assert_eq!(
            sniff_content_type(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm"),
            "video/webm"
        );
        assert_eq!(
            sniff_content_type(b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska"),
            "video/x-matroska"
        );
        let mut ts = vec![0u8; 400];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert_eq!(sniff_content_type(&ts), "video/mp2t");
        assert_eq!(sniff_content_type(b"ID3\x04\0\0\0\0"), "audio/mpeg");
        assert_eq!(sniff_content_type(&[0xff, 0xfb, 0x90, 0x00]), "audio/mpeg");
        assert_eq!(sniff_content_type(b"RIFF\0\0\0\0WAVEfmt "), "audio/wav");
        assert_eq!(
            sniff_content_type(b"RIFF\0\0\0\0AVI LIST"),
            "video/x-msvideo"
        );
        assert_eq!(sniff_content_type(b"OggS\0\x02"), "application/ogg");
        assert_eq!(sniff_content_type(b"fLaC\0\0\0\x22"), "audio/flac");
        assert_eq!(
            sniff_content_type(b"#EXTM3U\n#EXT-X-VERSION:3"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(sniff_content_type(b"\x89PNG\r\n\x1a\n\0\0"), "image/png");
        assert_eq!(sniff_content_type(b"%PDF-1.7"), "application/pdf");
        assert_eq!(
            sniff_content_type(b"\x3a\xa2\x65roots\x81\xd8\x2a\x58\x25\0\x01\x71\x12\x20"),
            "application/vnd.ipld.car"
        );
    }

    #[test]
    fn unknown_and_short_inputs_fall_back() {
        assert_eq!(sniff_content_type(b""), OCTET_STREAM);
        assert_eq!(sniff_content_type(b"\0\0\0"), OCTET_STREAM);
        assert_eq!(sniff_content_type(&[0u8; 512]), OCTET_STREAM);
        assert_eq!(
            sniff_content_type(b"hello world, plain bytes"),
            OCTET_STREAM
        );
    }
}
