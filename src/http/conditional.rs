//! Conditional requests (RFC 9110 §13) against the one validator a piece has:
//! its strong ETag `"<PieceCID>"`. Pieces are immutable, so there is no
//! `Last-Modified` and a date in `If-Range` never matches.

/// The strong entity tag of a piece: the CID in double quotes.
pub fn piece_etag(cid: &str) -> String {
    format!("\"{cid}\"")
}

/// Splits an entity-tag list (`"a", W/"b"`) into its tags, keeping the `W/` prefix.
fn etag_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// `If-None-Match` (weak comparison, §13.1.2): true when the header matches
/// `etag`, i.e. the answer is 304 Not Modified.
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let header = header.trim();
    if header == "*" {
        return true;
    }
    let opaque = etag.trim_start_matches("W/");
    etag_list(header).any(|t| t.trim_start_matches("W/") == opaque)
}

/// `If-Range` (strong comparison, §13.1.5): true when the Range header may be
/// honoured. A weak tag, a different tag or an HTTP-date never matches, so the
/// whole representation is sent.
pub fn if_range_allows(header: &str, etag: &str) -> bool {
    let h = header.trim();
    !etag.starts_with("W/") && h == etag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let e = piece_etag("bafkzcibx");
        assert_eq!(e, "\"bafkzcibx\"");
        assert!(if_none_match("\"bafkzcibx\"", &e));
        assert!(if_none_match("W/\"bafkzcibx\"", &e));
        assert!(if_none_match("\"other\", \"bafkzcibx\"", &e));
        assert!(if_none_match(" * ", &e));
        assert!(!if_none_match("\"other\"", &e));
        assert!(!if_none_match("bafkzcibx", &e));
        assert!(!if_none_match("", &e));
    }

    #[test]
    fn if_range_uses_strong_comparison() {
        let e = piece_etag("bafkzcibx");
        assert!(if_range_allows("\"bafkzcibx\"", &e));
        assert!(if_range_allows(" \"bafkzcibx\" ", &e));
        assert!(!if_range_allows("W/\"bafkzcibx\"", &e));
        assert!(!if_range_allows("\"other\"", &e));
        assert!(!if_range_allows("Wed, 21 Oct 2015 07:28:00 GMT", &e));
    }
}
