//! HTTP Range requests (RFC 9110 §14): parsing, normalisation against a
//! known size, and the `Content-Range` / `multipart/byteranges` framing.
//!
//! This module knows nothing about sockets or upstreams: it turns a `Range`
//! header value and a representation size into a [`RangePlan`], the exact
//! byte ranges to send. The policy, applied consistently:
//!
//! - A header that is not a syntactically valid `bytes` range set (other
//!   unit, `bytes=--1`, `5-2`, junk) is **ignored**: the whole representation
//!   is sent with 200, as RFC 9110 §14.2 allows.
//! - Valid but unsatisfiable (every range starts at or past the end, or a
//!   `-0` suffix) is **416** with `Content-Range: bytes */SIZE`.
//! - An end past the last byte is clamped; `N-` runs to the end; `-N` is the
//!   last N bytes (the whole representation when N exceeds it).
//! - Several ranges are sorted, and overlapping ones, adjacent ones and ones
//!   separated by less than one part header's worth of bytes are merged. If
//!   one range remains, it is a plain 206; otherwise a `multipart/byteranges`
//!   206. Because merged parts never overlap, the body can never exceed the
//!   representation plus part headers; the number of specs in the header and
//!   of parts after merging are also capped ([`RangeLimits`]) and a request
//!   over either cap is **rejected with 416**, defusing "Apache Killer"
//!   (CVE-2011-3192) style amplification.

use std::fmt;

/// An inclusive byte range `start..=end` of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// A range; `end` is inclusive and must not be below `start`.
    pub fn new(start: u64, end: u64) -> ByteRange {
        debug_assert!(end >= start);
        ByteRange { start, end }
    }

    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// A `ByteRange` is never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value `bytes START-END/SIZE`.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The `Content-Range` value of a 416: `bytes */SIZE`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// One range-spec as written by the client, before the size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last` or `first-` (`last` is `None`). Huge numbers saturate.
    FromTo {
        /// first-pos
        first: u64,
        /// last-pos, if given
        last: Option<u64>,
    },
    /// `-N`: the last N bytes.
    Suffix(u64),
}

/// The result of parsing a `Range` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRange {
    /// A valid `bytes` range set.
    Specs(Vec<RangeSpec>),
    /// Not a valid bytes range set: ignore the header (serve 200).
    Invalid,
    /// More range-specs than [`RangeLimits::max_specs`]: reject (416).
    TooMany(usize),
}

/// Caps that keep a range set from amplifying the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLimits {
    /// Most range-specs accepted in one header.
    pub max_specs: usize,
    /// Most parts in one multipart response, after merging.
    pub max_parts: usize,
    /// Ranges whose gap is at most this many bytes are merged (about the
    /// size of one part header, so merging never costs more than it saves).
    pub merge_gap: u64,
}

impl Default for RangeLimits {
    fn default() -> Self {
        RangeLimits {
            max_specs: 100,
            max_parts: 16,
            merge_gap: 80,
        }
    }
}

/// What to send, given a parsed header and the representation size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// 200 with the whole representation.
    Full,
    /// 206 with one range.
    Single(ByteRange),
    /// 206 `multipart/byteranges`, parts sorted and disjoint.
    Multi(Vec<ByteRange>),
    /// 416: nothing satisfiable.
    Unsatisfiable,
    /// 416: the range set is refused (too many specs or parts); the reason.
    Rejected(String),
}

fn parse_u64_saturating(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in digits.bytes() {
        v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(v)
}

/// Parses a `Range` header value (RFC 9110 §14.1.1). The unit is
/// case-insensitive; optional whitespace around `=`, `-` is not allowed by
/// the grammar but whitespace around commas is, and empty list elements are
/// skipped as the `#rule` requires.
pub fn parse_range_header(value: &[u8], limits: &RangeLimits) -> ParsedRange {
    let Ok(text) = std::str::from_utf8(value) else {
        return ParsedRange::Invalid;
    };
    let Some((unit, set)) = text.trim().split_once('=') else {
        return ParsedRange::Invalid;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ParsedRange::Invalid;
    }
    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches(|c| c == ' ' || c == '\t');
        if element.is_empty() {
            continue;
        }
        if specs.len() == limits.max_specs {
            let total = set.split(',').filter(|e| !e.trim().is_empty()).count();
            return ParsedRange::TooMany(total);
        }
        let Some((first, last)) = element.split_once('-') else {
            return ParsedRange::Invalid;
        };
        let spec = if first.is_empty() {
            match parse_u64_saturating(last) {
                Some(n) => RangeSpec::Suffix(n),
                None => return ParsedRange::Invalid,
            }
        } else {
            let Some(first) = parse_u64_saturating(first) else {
                return ParsedRange::Invalid;
            };
            let last = if last.is_empty() {
                None
            } else {
                match parse_u64_saturating(last) {
                    Some(l) if l >= first => Some(l),
                    _ => return ParsedRange::Invalid,
                }
            };
            RangeSpec::FromTo { first, last }
        };
        specs.push(spec);
    }
    if specs.is_empty() {
        return ParsedRange::Invalid;
    }
    ParsedRange::Specs(specs)
}

/// Resolves range-specs against a representation of `size` bytes.
pub fn plan_ranges(specs: &[RangeSpec], size: u64, limits: &RangeLimits) -> RangePlan {
    let mut ranges: Vec<ByteRange> = specs
        .iter()
        .filter_map(|spec| resolve_spec(*spec, size))
        .collect();
    if ranges.is_empty() {
        return RangePlan::Unsatisfiable;
    }
    if ranges.len() == 1 {
        return RangePlan::Single(ranges[0]);
    }
    ranges.sort_unstable();
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last)
                if r.start <= last.end.saturating_add(limits.merge_gap).saturating_add(1) =>
            {
                last.end = last.end.max(r.end);
            }
            _ => merged.push(r),
        }
    }
    match merged.len() {
        1 => RangePlan::Single(merged[0]),
        n if n > limits.max_parts => RangePlan::Rejected(format!(
            "too many disjoint ranges ({n}; at most {} are served in one response)",
            limits.max_parts
        )),
        _ if !multipart_fits(&merged) => RangePlan::Full,
        _ => RangePlan::Multi(merged),
    }
}

/// Room left for each part's header (delimiter, `Content-Type`,
/// `Content-Range`) when checking that a multipart body's length fits a u64.
const MULTIPART_PART_HEAD_ROOM: u64 = 4096;

/// Whether a multipart body of `parts` has a length a u64 can hold. Only a
/// representation near 2^64 bytes fails (a PieceCID may claim one); such a
/// range set is ignored and the whole representation sent, as RFC 9110
/// §14.2 allows, instead of overflowing `Content-Length` (found by
/// tests/fuzz.rs with `bytes=0-10,100-` against a size of 2^64 - 1).
fn multipart_fits(parts: &[ByteRange]) -> bool {
    parts
        .iter()
        .try_fold(MULTIPART_PART_HEAD_ROOM, |total, r| {
            total
                .checked_add(r.len())?
                .checked_add(MULTIPART_PART_HEAD_ROOM)
        })
        .is_some()
}

fn resolve_spec(spec: RangeSpec, size: u64) -> Option<ByteRange> {
    if size == 0 {
        return None;
    }
    match spec {
        RangeSpec::FromTo { first, last } => {
            if first >= size {
                return None;
            }
            let end = last.map_or(size - 1, |l| l.min(size - 1));
            Some(ByteRange::new(first, end))
        }
        RangeSpec::Suffix(0) => None,
        RangeSpec::Suffix(n) => Some(ByteRange::new(size.saturating_sub(n), size - 1)),
    }
}

/// The parts of a `multipart/byteranges` body: each part's header bytes and
/// range, the closing delimiter, and the exact total length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartLayout {
    /// The boundary (without leading dashes).
    pub boundary: String,
    /// For each part: the text that precedes its bytes, and its range.
    pub parts: Vec<(String, ByteRange)>,
    /// The text after the last part's bytes.
    pub closing: String,
    /// Exact body length: the value of `Content-Length`.
    pub content_length: u64,
}

impl MultipartLayout {
    /// Lays out `ranges` of a representation of `size` bytes and type `content_type`.
    pub fn new(
        ranges: &[ByteRange],
        size: u64,
        content_type: &str,
        boundary: &str,
    ) -> MultipartLayout {
        let mut parts = Vec::with_capacity(ranges.len());
        let mut total: u64 = 0;
        for (i, r) in ranges.iter().enumerate() {
            // The CRLF before each delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            let lead = if i == 0 { "" } else { "\r\n" };
            let head = format!(
                "{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                r.content_range(size)
            );
            // Saturating: plan_ranges never plans parts whose total overflows.
            total = total.saturating_add(head.len() as u64 + r.len());
            parts.push((head, *r));
        }
        let closing = format!("\r\n--{boundary}--\r\n");
        total = total.saturating_add(closing.len() as u64);
        MultipartLayout {
            boundary: boundary.to_string(),
            parts,
            closing,
            content_length: total,
        }
    }

    /// The `Content-Type` of the response.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_too_long_for_a_u64_is_ignored_not_overflowed() {
        // Found by tests/fuzz.rs (corpus range/multi-open): the parts'
        // lengths plus their headers passed u64::MAX and overflowed.
        let ParsedRange::Specs(specs) =
            parse_range_header(b"bytes=0-10,100-", &RangeLimits::default())
        else {
            panic!("valid header")
        };
        let limits = RangeLimits::default();
        assert_eq!(plan_ranges(&specs, u64::MAX, &limits), RangePlan::Full);
        assert!(matches!(
            plan_ranges(&specs, 1 << 40, &limits),
            RangePlan::Multi(parts) if parts.len() == 2
        ));
    }

    fn parse(v: &str) -> ParsedRange {
        parse_range_header(v.as_bytes(), &RangeLimits::default())
    }

    fn plan(v: &str, size: u64) -> RangePlan {
        match parse(v) {
            ParsedRange::Specs(s) => plan_ranges(&s, size, &RangeLimits::default()),
            other => panic!("{v:?} did not parse: {other:?}"),
        }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(
            plan("bytes=0-99", 1000),
            RangePlan::Single(ByteRange::new(0, 99))
        );
        assert_eq!(
            plan("bytes=500-", 1000),
            RangePlan::Single(ByteRange::new(500, 999))
        );
        assert_eq!(
            plan("bytes=-100", 1000),
            RangePlan::Single(ByteRange::new(900, 999))
        );
        assert_eq!(
            plan("bytes=-5000", 1000),
            RangePlan::Single(ByteRange::new(0, 999))
        );
        assert_eq!(
            plan("bytes=990-5000", 1000),
            RangePlan::Single(ByteRange::new(990, 999))
        );
        assert_eq!(
            plan("bytes=999-999", 1000),
            RangePlan::Single(ByteRange::new(999, 999))
        );
        assert_eq!(
            plan("bytes=0-0", 1),
            RangePlan::Single(ByteRange::new(0, 0))
        );
    }

    #[test]
    fn unit_is_case_insensitive_and_commas_take_whitespace() {
        assert_eq!(
            plan("BYTES=0-9", 100),
            RangePlan::Single(ByteRange::new(0, 9))
        );
        assert_eq!(
            plan("Bytes=0-9 ,\t, 200-209", 1000),
            RangePlan::Multi(vec![ByteRange::new(0, 9), ByteRange::new(200, 209)])
        );
        assert_eq!(
            plan("  bytes=0-9  ", 100),
            RangePlan::Single(ByteRange::new(0, 9))
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(plan("bytes=1000-", 1000), RangePlan::Unsatisfiable);
        assert_eq!(plan("bytes=1000-2000", 1000), RangePlan::Unsatisfiable);
        assert_eq!(plan("bytes=-0", 1000), RangePlan::Unsatisfiable);
        assert_eq!(
            plan("bytes=5000-6000, 7000-", 1000),
            RangePlan::Unsatisfiable
        );
        assert_eq!(plan("bytes=0-", 0), RangePlan::Unsatisfiable);
        // One satisfiable spec among unsatisfiable ones is served.
        assert_eq!(
            plan("bytes=5000-6000, 0-1", 1000),
            RangePlan::Single(ByteRange::new(0, 1))
        );
    }

    #[test]
    fn invalid_syntax_is_ignored() {
        for v in [
            "bytes=--1",
            "bytes=5-2",
            "bytes=abc",
            "bytes=",
            "bytes= ",
            "items=0-5",
            "bytes 0-5",
            "bytes=0-5-",
            "bytes=1-2,x",
            "bytes=+1-2",
            "bytes=0x10-20",
            "bytes=-",
            "bytes=- 5",
            "bytes= 0 -5",
            "=0-1",
            "",
            "bytes=0-1;q=1",
        ] {
            assert_eq!(parse(v), ParsedRange::Invalid, "{v:?}");
        }
        assert_eq!(
            parse_range_header(&[0xff, 0xfe], &RangeLimits::default()),
            ParsedRange::Invalid
        );
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(
            plan("bytes=0-99999999999999999999999999", 1000),
            RangePlan::Single(ByteRange::new(0, 999))
        );
        assert_eq!(
            plan("bytes=99999999999999999999999999-", 1000),
            RangePlan::Unsatisfiable
        );
        assert_eq!(
            plan("bytes=-99999999999999999999999999", 1000),
            RangePlan::Single(ByteRange::new(0, 999))
        );
        assert_eq!(
            plan(&format!("bytes={}-", u64::MAX), u64::MAX),
            RangePlan::Unsatisfiable
        );
        assert_eq!(
            plan(&format!("bytes={}-", u64::MAX - 1), u64::MAX),
            RangePlan::Single(ByteRange::new(u64::MAX - 1, u64::MAX - 1))
        );
    }

    #[test]
    fn multiple_ranges_merge() {
        // Overlapping and adjacent merge; out-of-order input is sorted.
        assert_eq!(
            plan("bytes=0-99,50-149", 1000),
            RangePlan::Single(ByteRange::new(0, 149))
        );
        assert_eq!(
            plan("bytes=100-199,0-99", 1000),
            RangePlan::Single(ByteRange::new(0, 199))
        );
        assert_eq!(
            plan("bytes=0-9,50-59", 1000),
            RangePlan::Single(ByteRange::new(0, 59))
        );
        assert_eq!(
            plan("bytes=500-599,0-9,-10", 1000),
            RangePlan::Multi(vec![
                ByteRange::new(0, 9),
                ByteRange::new(500, 599),
                ByteRange::new(990, 999)
            ])
        );
        // The same range many times is one range.
        let same = format!("bytes={}", vec!["0-0"; 100].join(","));
        assert_eq!(plan(&same, 1000), RangePlan::Single(ByteRange::new(0, 0)));
    }

    #[test]
    fn amplification_is_rejected() {
        // CVE-2011-3192 sent "bytes=0-,5-0,5-1,5-2,...": "5-0" is invalid
        // syntax, so that exact header is ignored (one copy of the body).
        let killer = format!(
            "bytes=0-,{}",
            (0..1300)
                .map(|i| format!("5-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse(&killer), ParsedRange::Invalid);
        // The valid variant is refused for its number of ranges.
        let valid_killer = format!(
            "bytes=0-,{}",
            (5..1305)
                .map(|i| format!("5-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse(&valid_killer), ParsedRange::TooMany(1301));
        // Under the spec cap, overlapping ranges merge into one.
        let overlapping = format!(
            "bytes=0-,{}",
            (5..104)
                .map(|i| format!("5-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            plan(&overlapping, 1000),
            RangePlan::Single(ByteRange::new(0, 999))
        );
        // Many disjoint ranges: more parts than allowed.
        let disjoint = format!(
            "bytes={}",
            (0..20)
                .map(|i| format!("{}-{}", i * 1000, i * 1000))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(matches!(plan(&disjoint, 100_000), RangePlan::Rejected(r) if r.contains("20")));
        let thousands = format!(
            "bytes={}",
            (0..5000)
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse(&thousands), ParsedRange::TooMany(5000));
    }

    #[test]
    fn multipart_layout_counts_every_byte() {
        let ranges = [ByteRange::new(0, 9), ByteRange::new(100, 104)];
        let l = MultipartLayout::new(&ranges, 1000, "video/mp4", "B0UND");
        let mut body = String::new();
        for (head, r) in &l.parts {
            body.push_str(head);
            body.push_str(&"x".repeat(r.len() as usize));
        }
        body.push_str(&l.closing);
        assert_eq!(body.len() as u64, l.content_length);
        assert!(body.starts_with("--B0UND\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-9/1000\r\n\r\nxxxxxxxxxx\r\n--B0UND\r\n"));
        assert!(body.ends_with("xxxxx\r\n--B0UND--\r\n"));
        assert_eq!(l.content_type(), "multipart/byteranges; boundary=B0UND");
    }

    #[test]
    fn content_range_strings() {
        assert_eq!(ByteRange::new(0, 99).content_range(1000), "bytes 0-99/1000");
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
        assert_eq!(ByteRange::new(5, 9).len(), 5);
    }
}
