//! Where a media container keeps its index, read from the file's first bytes.
//!
//! A player cannot show a frame before it has the container's index: an
//! MP4's `moov` box, a Matroska/WebM file's `Cues`. ffmpeg writes both at the
//! *end* of the file by default, so a browser reads the head, learns that
//! the index is elsewhere, jumps to it, and only then comes back for the
//! first frames: two upstream round trips in a row on a cold cache. Knowing
//! from the head where the index sits lets the cache fetch it beside the
//! head, in parallel.
//!
//! What it is: [`index_of`], a pure function over the head bytes and the
//! file size, that walks box or element *headers* only (MP4 box sizes, 32-
//! and 64-bit; Matroska's EBML header, Segment and SeekHead) and never reads
//! payloads. Every size is checked against the file size, so a hostile head
//! yields [`IndexPlace::Unknown`], never a panic or a huge range.
//!
//! What it is not: a demuxer. It does not validate the container, and a
//! wrong answer costs only a wasted prefetch, never a wrong byte.

use crate::http::range::ByteRange;

/// Where a container's index is, as far as the head tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexPlace {
    /// The index is in the head, right after it, or not needed (fragmented
    /// MP4): a player reading forward finds it.
    Forward,
    /// The index starts at this raw byte offset, past the head; `end` is
    /// the last byte it can occupy (inclusive), as far as the head tells.
    Beyond(ByteRange),
    /// Not a container known here, or the head ends before the answer.
    Unknown,
}

/// Where the index of a file of `size` bytes whose first bytes are `head`
/// lies. `head` may be any prefix; more bytes answer more files.
pub fn index_of(head: &[u8], size: u64) -> IndexPlace {
    if head.len() >= 8 && is_mp4_box_type(&head[4..8]) {
        return mp4_index(head, size);
    }
    if head.starts_with(&EBML_ID) {
        return matroska_index(head, size);
    }
    IndexPlace::Unknown
}

/// Top-level ISO-BMFF box types an MP4 or MOV may open with.
fn is_mp4_box_type(t: &[u8]) -> bool {
    matches!(
        t,
        b"ftyp" | b"styp" | b"moov" | b"moof" | b"mdat" | b"free" | b"skip" | b"wide" | b"pdin"
    )
}

/// Walks top-level MP4 boxes until `moov` or `mdat`.
fn mp4_index(head: &[u8], size: u64) -> IndexPlace {
    let mut at: u64 = 0;
    loop {
        let Some(h) = usize::try_from(at)
            .ok()
            .and_then(|a| head.get(a..a.checked_add(8)?))
        else {
            return IndexPlace::Unknown; // the next header is past the head
        };
        let kind = &h[4..8];
        let small = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let len = match small {
            // The box runs to the end of the file.
            0 => size.saturating_sub(at),
            // A 64-bit size follows the type.
            1 => {
                let Some(big) = usize::try_from(at + 8)
                    .ok()
                    .and_then(|a| head.get(a..a.checked_add(8)?))
                else {
                    return IndexPlace::Unknown;
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(big);
                u64::from_be_bytes(b)
            }
            n => n,
        };
        let header = if small == 1 { 16 } else { 8 };
        if len < header || at.checked_add(len).is_none_or(|end| end > size) {
            return IndexPlace::Unknown; // not a well-formed box of this file
        }
        match kind {
            b"moov" | b"moof" => return IndexPlace::Forward,
            b"mdat" => {
                let next = at + len;
                if next >= size {
                    // Media data runs to the end: the index, if any, came first.
                    return IndexPlace::Unknown;
                }
                return IndexPlace::Beyond(ByteRange::new(next, size - 1));
            }
            _ => at += len,
        }
        if at >= size {
            return IndexPlace::Unknown;
        }
    }
}

const EBML_ID: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];
const SEGMENT_ID: u32 = 0x1853_8067;
const SEEK_HEAD_ID: u32 = 0x114d_9b74;
const SEEK_ID: u32 = 0x4dbb;
const SEEK_ID_ID: u32 = 0x53ab;
const SEEK_POSITION_ID: u32 = 0x53ac;
const CUES_ID: u32 = 0x1c53_bb6b;
const CLUSTER_ID: u32 = 0x1f43_b675;

/// An EBML element header: its id (marker bits kept), the size of its data
/// (`None`: unknown size) and where the data starts.
struct Element {
    id: u32,
    size: Option<u64>,
    data: usize,
}

/// Reads an EBML variable-length integer at `at`: (value without the
/// length marker, all-ones flag, bytes read).
fn vint(buf: &[u8], at: usize, max_len: usize) -> Option<(u64, bool, usize)> {
    let first = *buf.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > max_len {
        return None;
    }
    let bytes = buf.get(at..at + len)?;
    let mut value = u64::from(first) & (0xff >> len);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    let all_ones = value == (1u64 << (7 * len)) - 1;
    Some((value, all_ones, len))
}

fn element(buf: &[u8], at: usize) -> Option<Element> {
    // Ids keep their marker bits: read the raw bytes.
    let first = *buf.get(at)?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return None;
    }
    let id = buf
        .get(at..at + id_len)?
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    let (size, unknown, size_len) = vint(buf, at + id_len, 8)?;
    Some(Element {
        id,
        size: (!unknown).then_some(size),
        data: at + id_len + size_len,
    })
}

/// Finds the Cues through the Segment's SeekHead.
fn matroska_index(head: &[u8], size: u64) -> IndexPlace {
    let Some(ebml) = element(head, 0) else {
        return IndexPlace::Unknown;
    };
    let Some(after_ebml) = ebml
        .size
        .and_then(|s| usize::try_from(s).ok())
        .and_then(|s| ebml.data.checked_add(s))
    else {
        return IndexPlace::Unknown;
    };
    let Some(segment) = element(head, after_ebml).filter(|e| e.id == SEGMENT_ID) else {
        return IndexPlace::Unknown;
    };
    let segment_start = segment.data as u64;
    let segment_end = segment
        .size
        .and_then(|s| segment_start.checked_add(s))
        .unwrap_or(size)
        .min(size);
    // The Segment's children, up to the first Cluster (media data).
    let mut at = segment.data;
    let mut cues_at: Option<u64> = None;
    while let Some(child) = element(head, at) {
        match child.id {
            CUES_ID => return IndexPlace::Forward,
            CLUSTER_ID => break,
            SEEK_HEAD_ID => {
                let Some(len) = child.size.and_then(|s| usize::try_from(s).ok()) else {
                    return IndexPlace::Unknown;
                };
                let end = child.data.saturating_add(len).min(head.len());
                if let Some(pos) = seek_position_of(head, child.data, end, CUES_ID) {
                    cues_at = segment_start.checked_add(pos);
                }
            }
            _ => {}
        }
        let Some(len) = child.size.and_then(|s| usize::try_from(s).ok()) else {
            break;
        };
        match child.data.checked_add(len) {
            Some(next) if next < head.len() => at = next,
            _ => break,
        }
    }
    match cues_at {
        Some(c) if c < segment_end => {
            if c < head.len() as u64 {
                IndexPlace::Forward
            } else {
                IndexPlace::Beyond(ByteRange::new(c, segment_end - 1))
            }
        }
        _ => IndexPlace::Unknown,
    }
}

/// The SeekPosition a SeekHead (its data in `buf[from..to]`) gives for
/// element `target`.
fn seek_position_of(buf: &[u8], from: usize, to: usize, target: u32) -> Option<u64> {
    let mut at = from;
    while at < to {
        let seek = element(buf, at)?;
        let len = usize::try_from(seek.size?).ok()?;
        let end = seek.data.checked_add(len)?;
        if seek.id == SEEK_ID && end <= to {
            let mut id = None;
            let mut pos = None;
            let mut inner = seek.data;
            while inner < end {
                let field = element(buf, inner)?;
                let flen = usize::try_from(field.size?).ok()?;
                let data = buf.get(field.data..field.data.checked_add(flen)?)?;
                match field.id {
                    SEEK_ID_ID => {
                        id = Some(data.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
                    }
                    SEEK_POSITION_ID if flen <= 8 => {
                        pos = Some(data.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
                    }
                    _ => {}
                }
                inner = field.data + flen;
            }
            if id == Some(target) {
                return pos;
            }
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], len: u32) -> Vec<u8> {
        let mut b = len.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b
    }

    #[test]
    fn a_tail_moov_is_found_past_the_media_data() {
        // ftyp (32 bytes), free (8), mdat (1,000,000), then moov to the end.
        let mut head = mp4_box(b"ftyp", 32);
        head.extend_from_slice(&[0; 24]);
        head.extend(mp4_box(b"free", 8));
        head.extend(mp4_box(b"mdat", 1_000_000));
        let size = 32 + 8 + 1_000_000 + 5_000;
        assert_eq!(
            index_of(&head, size),
            IndexPlace::Beyond(ByteRange::new(1_000_040, size - 1))
        );
    }

    #[test]
    fn a_64_bit_mdat_size_is_read() {
        let mut head = mp4_box(b"ftyp", 16);
        head.extend_from_slice(&[0; 8]);
        head.extend(mp4_box(b"mdat", 1));
        let big: u64 = 5 << 30;
        head.extend_from_slice(&big.to_be_bytes());
        let size = 16 + big + 70_000;
        assert_eq!(
            index_of(&head, size),
            IndexPlace::Beyond(ByteRange::new(16 + big, size - 1))
        );
    }

    #[test]
    fn a_faststart_moov_needs_no_jump() {
        let mut head = mp4_box(b"ftyp", 16);
        head.extend_from_slice(&[0; 8]);
        head.extend(mp4_box(b"moov", 4_000));
        assert_eq!(index_of(&head, 1_000_000), IndexPlace::Forward);
        // Fragmented MP4: moof boxes carry their own index.
        let mut frag = mp4_box(b"styp", 16);
        frag.extend_from_slice(&[0; 8]);
        frag.extend(mp4_box(b"moof", 100));
        assert_eq!(index_of(&frag, 10_000), IndexPlace::Forward);
    }

    #[test]
    fn hostile_mp4_sizes_give_unknown() {
        // A box past the file's end, a size under its header, a head that
        // ends inside the walk, an mdat to the end of the file.
        let mut past = mp4_box(b"ftyp", 16);
        past.extend_from_slice(&[0; 8]);
        past.extend(mp4_box(b"mdat", u32::MAX));
        assert_eq!(index_of(&past, 100_000), IndexPlace::Unknown);
        let mut tiny = mp4_box(b"ftyp", 4);
        tiny.extend_from_slice(&[0; 12]);
        assert_eq!(index_of(&tiny, 100_000), IndexPlace::Unknown);
        let short = mp4_box(b"ftyp", 5_000);
        assert_eq!(index_of(&short, 100_000), IndexPlace::Unknown);
        let mut to_end = mp4_box(b"ftyp", 16);
        to_end.extend_from_slice(&[0; 8]);
        to_end.extend(mp4_box(b"mdat", 0));
        assert_eq!(index_of(&to_end, 100_000), IndexPlace::Unknown);
        assert_eq!(
            index_of(b"not a container at all", 100),
            IndexPlace::Unknown
        );
    }

    /// An EBML element with a 1-byte... 8-byte size field.
    fn el(id: u32, data: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = id
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        // An 8-byte size: marker 0x01, then 7 bytes.
        out.push(0x01);
        out.extend_from_slice(&(data.len() as u64).to_be_bytes()[1..]);
        out.extend_from_slice(data);
        out
    }

    fn seek(id: u32, pos: u64) -> Vec<u8> {
        let mut body = el(SEEK_ID_ID, &id.to_be_bytes());
        body.extend(el(SEEK_POSITION_ID, &pos.to_be_bytes()));
        el(SEEK_ID, &body)
    }

    fn webm_head(cues_pos: u64, segment_len: u64) -> (Vec<u8>, u64) {
        let mut head = el(0x1a45_dfa3, b"\x42\x82\x84webm");
        let mut seek_head = seek(0x1549_a966, 100); // Info
        seek_head.extend(seek(CUES_ID, cues_pos));
        let children = el(SEEK_HEAD_ID, &seek_head);
        // Segment with an 8-byte size.
        head.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x01]);
        head.extend_from_slice(&segment_len.to_be_bytes()[1..]);
        let segment_start = head.len() as u64;
        head.extend(children);
        (head, segment_start)
    }

    #[test]
    fn webm_cues_are_found_through_the_seek_head() {
        let (head, start) = webm_head(40_000_000, 45_000_000);
        let size = start + 45_000_000;
        assert_eq!(
            index_of(&head, size),
            IndexPlace::Beyond(ByteRange::new(start + 40_000_000, size - 1))
        );
        // Cues inside the head: nothing to jump to.
        let (head, _) = webm_head(10, 45_000_000);
        assert_eq!(index_of(&head, 45_000_100), IndexPlace::Forward);
    }

    #[test]
    fn hostile_webm_gives_unknown() {
        // Cues past the segment, a truncated head, garbage after the header.
        let (head, start) = webm_head(90_000_000, 45_000_000);
        assert_eq!(index_of(&head, start + 45_000_000), IndexPlace::Unknown);
        let (head, start) = webm_head(40_000_000, 45_000_000);
        assert_eq!(
            index_of(&head[..20], start + 45_000_000),
            IndexPlace::Unknown
        );
        let mut junk = EBML_ID.to_vec();
        junk.extend_from_slice(&[0x00; 40]);
        assert_eq!(index_of(&junk, 1_000), IndexPlace::Unknown);
    }
}
