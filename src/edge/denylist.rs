//! `access.denylist`: pieces this edge never serves, read from files in the
//! Bad Bits format (badbits.dwebops.pub, the list Beam and IPFS gateways
//! use): one `//<hex SHA-256 of "<cid>/">` entry per line. A listed piece is
//! refused with 451 before any upstream I/O on every route that reads a
//! piece (`/piece`, `/beam/<payer>/…`, `/asset` and each piece it spans,
//! peer requests, the admin warm-up). The files are read again on SIGHUP,
//! and the windows of newly listed pieces are purged from the cache.
//!
//! Why 451 and not Beam's 404: the piece exists and is withheld on purpose
//! (RFC 7725); a 404 would read as "not uploaded yet" and players and
//! scripts retry those. Curio answers its own denylist with 451 too.
//!
//! Format details: blank lines and `#` comments are skipped, and so is a
//! header ending in a `---` line (the compact denylist format's optional
//! YAML header); any other line that is not a `//` + 64 hex digits entry is
//! counted and logged, never fatal (a list grows by appending lines).
//! A CID is looked up in every string form it has here: as requested, and
//! its v1 (`baga…`) form, so one entry for either form blocks both when the
//! request names a v2 CID.
//!
//! What it is not: signed URLs or rate limits (`access`'s other keys), or
//! Beam's own refusals (`crate::upstream::Refusal`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::piece::PieceCid;

/// One entry: the SHA-256 of `"<cid>/"`.
pub type Entry = [u8; 32];

/// The entry naming `cid` (a CID string as it would be requested).
pub fn entry_of(cid: &str) -> Entry {
    let mut h = Sha256::new();
    h.update(cid.as_bytes());
    h.update(b"/");
    h.finalize().into()
}

/// What reading the files gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Entries read.
    pub entries: usize,
    /// Lines that were neither entries, comments nor header.
    pub skipped: usize,
}

/// The denylist. Cheap to clone; a reload swaps the set in place.
#[derive(Debug, Clone, Default)]
pub struct Denylist {
    files: Vec<PathBuf>,
    set: Arc<RwLock<Arc<HashSet<Entry>>>>,
}

impl Denylist {
    /// Reads `files` (an error names the file that cannot be read).
    pub fn load(files: &[PathBuf]) -> Result<(Denylist, LoadReport), String> {
        let (set, report) = read_all(files)?;
        let list = Denylist {
            files: files.to_vec(),
            set: Arc::new(RwLock::new(Arc::new(set))),
        };
        Ok((list, report))
    }

    /// True when no file is configured.
    pub fn is_off(&self) -> bool {
        self.files.is_empty()
    }

    fn current(&self) -> Arc<HashSet<Entry>> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True when the piece is listed, in any of its string forms.
    pub fn denies(&self, cid: &PieceCid) -> bool {
        if self.is_off() {
            return false;
        }
        let set = self.current();
        if set.is_empty() {
            return false;
        }
        let text = cid.to_string();
        let v1 = cid.to_v1().to_string();
        set.contains(&entry_of(&text)) || (v1 != text && set.contains(&entry_of(&v1)))
    }

    /// True when the CID string (any form) is listed.
    pub fn denies_text(&self, cid: &str) -> bool {
        match PieceCid::parse(cid) {
            Ok(c) => self.denies(&c),
            Err(_) => self.current().contains(&entry_of(cid)),
        }
    }

    /// Reads the files again and swaps the set in; on an error the current
    /// list stays. Returns the report and the entries that are new.
    pub fn reload(&self) -> Result<(LoadReport, HashSet<Entry>), String> {
        let (set, report) = read_all(&self.files)?;
        let old = self.current();
        let added: HashSet<Entry> = set.difference(&old).copied().collect();
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok((report, added))
    }
}

fn read_all(files: &[PathBuf]) -> Result<(HashSet<Entry>, LoadReport), String> {
    let mut set = HashSet::new();
    let mut skipped = 0;
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("access.denylist: cannot read {}: {e}", f.display()))?;
        skipped += parse_into(&text, &mut set, f);
    }
    let report = LoadReport {
        entries: set.len(),
        skipped,
    };
    Ok((set, report))
}

/// Adds the entries of one file to `set`; returns the lines skipped.
fn parse_into(text: &str, set: &mut HashSet<Entry>, file: &Path) -> usize {
    // A compact denylist may open with a YAML header that ends in `---`.
    let body = match text.split_once("\n---") {
        Some((head, rest)) if !head.lines().any(|l| l.trim_start().starts_with("//")) => rest,
        _ => text,
    };
    let mut skipped = 0;
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "---" {
            continue;
        }
        match line.strip_prefix("//").and_then(parse_hex32) {
            Some(e) => {
                set.insert(e);
            }
            None => {
                if skipped < 5 {
                    log::warn!(
                        "access.denylist: {} line {}: not a //<sha256 hex> entry: {:?}",
                        file.display(),
                        n + 1,
                        line.chars().take(80).collect::<String>()
                    );
                }
                skipped += 1;
            }
        }
    }
    skipped
}

fn parse_hex32(s: &str) -> Option<Entry> {
    let s = s.split_whitespace().next()?;
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(e: &Entry) -> String {
        e.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn entries_are_the_sha256_of_the_cid_and_a_slash() {
        // Computed with `printf '%s/' <cid> | sha256sum`.
        let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        let mut h = Sha256::new();
        h.update(format!("{cid}/").as_bytes());
        let want: Entry = h.finalize().into();
        assert_eq!(entry_of(cid), want);
        assert_eq!(hex(&entry_of(cid)).len(), 64);
    }

    #[test]
    fn parses_entries_comments_and_a_header() {
        let a = entry_of("bafk-a");
        let b = entry_of("bafk-b");
        let text = format!(
            "version: 1\nname: test\n---\n# a comment\n\n//{}\n//{}  \nnot an entry\n/ipfs/bafk-c\n",
            hex(&a),
            hex(&b).to_uppercase()
        );
        let mut set = HashSet::new();
        let skipped = parse_into(&text, &mut set, Path::new("x"));
        assert_eq!(set, HashSet::from([a, b]));
        assert_eq!(skipped, 2);
    }

    #[test]
    fn a_v2_cid_is_denied_by_its_v1_entry_too() {
        let v2 =
            PieceCid::parse("bafkzcibcaapao7s2gz2ubsxbf4tmdfbnqdfunhbdlrlohl7cagv3mmw6vkc4xiy")
                .unwrap();
        let v1 = v2.to_v1().to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny.txt");
        std::fs::write(&path, format!("//{}\n", hex(&entry_of(&v1)))).unwrap();
        let (list, report) = Denylist::load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(report.entries, 1);
        assert!(list.denies(&v2));
        assert!(list.denies_text(&v1));
        std::fs::write(&path, "").unwrap();
        let (_, added) = list.reload().unwrap();
        assert!(added.is_empty());
        assert!(!list.denies(&v2));
        assert!(Denylist::load(&[dir.path().join("missing")])
            .unwrap_err()
            .contains("access.denylist"));
    }
}
