//! File names after the CID (`/piece/<cid>/<name>`): sanitising a name taken
//! from a URL and writing it as a `Content-Disposition` header.
//!
//! The name only labels the response so that players and download tools save
//! a real file name; it never selects bytes and is never sent upstream. A
//! sanitised name has no control characters, no path separators, no quotes
//! and no leading dots (so it cannot climb out of a download directory or
//! hide itself), and is at most [`MAX_NAME_BYTES`] bytes of UTF-8 with its
//! extension kept. The header carries an ASCII `filename="…"` for every
//! client and, for a name that is not plain ASCII, RFC 6266 / RFC 8187's
//! `filename*=UTF-8''…` with the exact name. What this is not: a MIME
//! sniffing or content-type decision (the type comes from the bytes).

/// Longest sanitised name, in bytes of UTF-8 (file systems allow 255).
pub const MAX_NAME_BYTES: usize = 200;

/// Longest extension kept whole when a name is shortened.
const MAX_EXTENSION_BYTES: usize = 16;

/// Decodes `%XX` escapes of a URL path segment (bytes, then lossy UTF-8; a
/// stray `%` stays as it is).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name to announce for `raw` (already percent-decoded), or `None`
/// when nothing usable is left.
pub fn sanitize_filename(raw: &str) -> Option<String> {
    let mut name = String::with_capacity(raw.len().min(MAX_NAME_BYTES * 2));
    for c in raw.chars() {
        match c {
            // Separators would make a path of it; quotes and backslashes
            // would end or escape the quoted header value.
            '/' | '\\' | '"' => name.push('_'),
            c if c.is_control() => {}
            // Bidirectional overrides make "gpj.exe" look like "exe.jpg".
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => {}
            c => name.push(c),
        }
    }
    let name = name.trim().trim_start_matches('.').trim_start();
    if name.is_empty() {
        return None;
    }
    Some(shorten(name))
}

/// Cuts `name` to [`MAX_NAME_BYTES`] at a character boundary, keeping a short
/// extension (`….mp4`).
fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.len() <= MAX_EXTENSION_BYTES && e.len() > 1)
        .unwrap_or("");
    let budget = MAX_NAME_BYTES - ext.len();
    let mut end = 0;
    for (i, c) in name.char_indices() {
        if i + c.len_utf8() > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}{ext}", name[..end].trim_end())
}

/// The `Content-Disposition` value for a sanitised `name`.
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            // `%` is left out of the fallback: some clients decode it.
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    if ascii == name {
        return format!("inline; filename=\"{ascii}\"");
    }
    format!(
        "inline; filename=\"{ascii}\"; filename*=UTF-8''{}",
        encode_rfc8187(name)
    )
}

/// Percent-encodes every byte outside RFC 8187's `attr-char`.
fn encode_rfc8187(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        let attr_char = b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
        if attr_char {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL path segment for a file name (what the upload report and the
/// player append after a CID): every byte but unreserved ones escaped.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_through() {
        assert_eq!(sanitize_filename("clip.mp4").as_deref(), Some("clip.mp4"));
        assert_eq!(
            content_disposition("clip.mp4"),
            "inline; filename=\"clip.mp4\""
        );
    }

    #[test]
    fn hostile_names_are_defused() {
        assert_eq!(
            sanitize_filename("../../etc/passwd").as_deref(),
            Some("_.._etc_passwd")
        );
        assert_eq!(
            sanitize_filename("a\"b\\c\r\nSet-Cookie: x").as_deref(),
            Some("a_b_cSet-Cookie: x")
        );
        assert_eq!(sanitize_filename("..."), None);
        assert_eq!(sanitize_filename(" \t\n"), None);
        assert_eq!(sanitize_filename(".hidden").as_deref(), Some("hidden"));
        assert_eq!(
            sanitize_filename("abc\u{202e}4pm.exe").as_deref(),
            Some("abc4pm.exe")
        );
        // No byte of the header value can break it.
        for raw in ["a\"b", "x\r\ny", "%22", "é\"\\"] {
            let v = content_disposition(&sanitize_filename(raw).unwrap());
            assert!(v.bytes().all(|b| (b' '..=b'~').contains(&b)), "{v}");
            assert_eq!(v.matches('"').count(), 2, "{v}");
        }
    }

    #[test]
    fn unicode_gets_an_ascii_fallback_and_rfc_8187() {
        let v = content_disposition("Über café 🎬.mp4");
        assert_eq!(
            v,
            "inline; filename=\"_ber caf_ _.mp4\"; filename*=UTF-8''%C3%9Cber%20caf%C3%A9%20%F0%9F%8E%AC.mp4"
        );
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.mp4", "é".repeat(300));
        let s = sanitize_filename(&long).unwrap();
        assert!(s.len() <= MAX_NAME_BYTES, "{}", s.len());
        assert!(s.ends_with("é.mp4"), "{s}");
        let no_ext = "x".repeat(1000);
        assert_eq!(sanitize_filename(&no_ext).unwrap().len(), MAX_NAME_BYTES);
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
        assert_eq!(path_segment("a b/é.mp4"), "a%20b%2F%C3%A9.mp4");
    }
}
