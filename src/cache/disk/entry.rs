//! Entry file format of the disk tier: one window per file, a 24-byte
//! header, a CRC-32 per 64 KiB block, then the body; writing the head and
//! reading (part of) an entry back, checked block by block.
//!
//! What it is not: where entries live or when they are written or evicted
//! (`layout`, `evict`, the tier in `mod.rs`); format 1 entries (one CRC-32
//! over the whole body) are still read here, never written.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;

/// Body bytes covered by each CRC-32 of an entry's block table.
pub const BLOCK_LEN: u64 = 64 << 10;

pub(super) const HEADER_LEN: usize = 24;
pub(super) const MAGIC: [u8; 4] = *b"BEWD";
pub(super) const VERSION: u16 = 2;
/// The first format: one CRC-32 over the whole body, no block table.
pub(super) const VERSION_1: u16 = 1;

/// Size on disk of an entry whose body is `body_len` bytes: the header, a
/// CRC-32 per [`BLOCK_LEN`] block, the body. The budget counts this.
pub fn entry_len(body_len: u64) -> u64 {
    HEADER_LEN as u64 + 4 * body_len.div_ceil(BLOCK_LEN) + body_len
}

pub(super) fn entry_len_v1(body_len: u64) -> u64 {
    HEADER_LEN as u64 + body_len
}

/// Header: magic (4) | version u16 LE | reserved u16 | body length u64 LE |
/// CRC-32 of the block table u32 LE | CRC-32 of the preceding 20 header
/// bytes; then the block table: a CRC-32 (u32 LE) of each [`BLOCK_LEN`]
/// block of the body, the last one short.
pub(super) fn encode_head(body: &[u8]) -> Vec<u8> {
    let blocks = body.chunks(BLOCK_LEN as usize);
    let mut head = vec![0u8; HEADER_LEN];
    for b in blocks {
        head.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
    }
    let table_crc = crc32fast::hash(&head[HEADER_LEN..]);
    let h = &mut head[..HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&(body.len() as u64).to_le_bytes());
    h[16..20].copy_from_slice(&table_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&header_crc.to_le_bytes());
    head
}

pub(super) fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks a header's magic, checksum, version and body length; returns the
/// CRC-32 it records (of the block table, or of the body in format 1).
pub(super) fn check_header(h: &[u8], version: u16, expected_len: u64) -> io::Result<u32> {
    if h[0..4] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    if u32_at(h, 20) != crc32fast::hash(&h[0..20]) {
        return Err(corrupt("header checksum mismatch"));
    }
    if u16::from_le_bytes([h[4], h[5]]) != version {
        return Err(corrupt("unknown entry version"));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&h[8..16]);
    if u64::from_le_bytes(l) != expected_len {
        return Err(corrupt("body length mismatch"));
    }
    Ok(u32_at(h, 16))
}

/// Reads bytes `range` of an entry's body: the header and block table, then
/// only the blocks that cover the range, each checked against the table. The
/// result is a zero-copy slice of the buffer the blocks were read into.
pub(super) fn read_entry(
    path: &Path,
    expected_len: u64,
    range: std::ops::Range<u64>,
) -> io::Result<Bytes> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() != entry_len(expected_len) {
        return Err(corrupt("entry file has the wrong size"));
    }
    let blocks = expected_len.div_ceil(BLOCK_LEN);
    let head_len = HEADER_LEN as u64 + 4 * blocks;
    let mut head = vec![0u8; usize::try_from(head_len).map_err(|_| corrupt("entry too large"))?];
    f.read_exact(&mut head)?;
    let table = &head[HEADER_LEN..];
    if check_header(&head, VERSION, expected_len)? != crc32fast::hash(table) {
        return Err(corrupt("block table checksum mismatch"));
    }
    if range.is_empty() {
        return Ok(Bytes::new());
    }
    let first = range.start / BLOCK_LEN;
    let last = (range.end - 1) / BLOCK_LEN;
    let from = first * BLOCK_LEN;
    let to = ((last + 1) * BLOCK_LEN).min(expected_len);
    f.seek(SeekFrom::Start(head_len + from))?;
    let want = to - from;
    let mut buf =
        Vec::with_capacity(usize::try_from(want).map_err(|_| corrupt("entry too large"))?);
    (&mut f).take(want).read_to_end(&mut buf)?;
    if buf.len() as u64 != want {
        return Err(corrupt("entry file changed size while read"));
    }
    for (i, block) in buf.chunks(BLOCK_LEN as usize).enumerate() {
        let n = usize::try_from(first).unwrap_or(0) + i;
        if crc32fast::hash(block) != u32_at(table, 4 * n) {
            return Err(corrupt("block checksum mismatch"));
        }
    }
    let at = |x: u64| usize::try_from(x - from).unwrap_or(0);
    Ok(Bytes::from(buf).slice(at(range.start)..at(range.end)))
}

/// Reads and verifies a whole entry of format 1.
pub(super) fn read_entry_v1(path: &Path, expected_len: u64) -> io::Result<Bytes> {
    let mut f = File::open(path)?;
    let want = entry_len_v1(expected_len);
    if f.metadata()?.len() != want {
        return Err(corrupt("entry file has the wrong size"));
    }
    let cap = usize::try_from(want).map_err(|_| corrupt("entry too large"))?;
    let mut buf = Vec::with_capacity(cap);
    (&mut f).take(want + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 != want {
        return Err(corrupt("entry file changed size while read"));
    }
    let (header, body) = buf.split_at(HEADER_LEN);
    if check_header(header, VERSION_1, expected_len)? != crc32fast::hash(body) {
        return Err(corrupt("body checksum mismatch"));
    }
    Ok(Bytes::from(buf).slice(HEADER_LEN..))
}
