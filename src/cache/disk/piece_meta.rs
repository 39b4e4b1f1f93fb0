//! Format of the per-piece `meta` file (size and content type, with a
//! CRC-32 trailer) that the disk tier keeps beside a piece's windows.
//!
//! What it is not: the window entry format (`entry`) or when the file is
//! written or deleted (the tier in `mod.rs`, `evict`).

use super::PieceMetaRecord;

pub(super) const META_FILE: &str = "meta";
pub(super) const META_HEADER: &str = "beam-edge-piece-meta 1";
pub(super) const MAX_CONTENT_TYPE_LEN: usize = 255;

pub(super) fn encode_meta(meta: &PieceMetaRecord) -> String {
    let body = format!(
        "{META_HEADER}\nsize {}\ncontent-type {}\n",
        meta.size, meta.content_type
    );
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}crc {crc:08x}\n")
}

pub(super) fn decode_meta(text: &str) -> Option<PieceMetaRecord> {
    let crc_at = text.rfind("crc ")?;
    let (body, trailer) = text.split_at(crc_at);
    let crc = u32::from_str_radix(trailer.strip_prefix("crc ")?.strip_suffix('\n')?, 16).ok()?;
    if crc != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != META_HEADER {
        return None;
    }
    let size = lines.next()?.strip_prefix("size ")?.parse().ok()?;
    let content_type = lines.next()?.strip_prefix("content-type ")?.to_string();
    Some(PieceMetaRecord { size, content_type })
}
