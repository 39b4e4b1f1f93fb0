//! Per-piece metadata learnt from upstream responses: the size (a v1 CID does
//! not carry it) and the sniffed content type. Pieces are immutable, so an
//! entry never goes stale; the store is bounded by entry count and simply
//! starts over when full (each entry costs one small upstream request to
//! relearn).

use std::collections::HashMap;
use std::sync::Mutex;

/// What is known about one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PieceMeta {
    /// Total size in bytes, once known.
    pub size: Option<u64>,
    /// Sniffed content type, once known.
    pub content_type: Option<&'static str>,
}

/// A bounded map from PieceCID string to [`PieceMeta`].
#[derive(Debug)]
pub struct PieceMetaStore {
    entries: Mutex<HashMap<String, PieceMeta>>,
    max_entries: usize,
}

impl PieceMetaStore {
    /// A store holding at most `max_entries` pieces.
    pub fn new(max_entries: usize) -> PieceMetaStore {
        PieceMetaStore {
            entries: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// What is known about `cid` (all `None` when nothing is).
    pub fn get(&self, cid: &str) -> PieceMeta {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(cid).copied().unwrap_or_default()
    }

    /// Every piece with an entry.
    pub fn cids(&self) -> Vec<String> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }

    /// Records facts about `cid`; `None` fields leave what was known.
    pub fn update(&self, cid: &str, size: Option<u64>, content_type: Option<&'static str>) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_entries && !map.contains_key(cid) {
            map.clear();
        }
        let e = map.entry(cid.to_string()).or_default();
        if size.is_some() {
            e.size = size;
        }
        if content_type.is_some() {
            e.content_type = content_type;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_merge_and_the_store_stays_bounded() {
        let s = PieceMetaStore::new(2);
        assert_eq!(s.get("a"), PieceMeta::default());
        s.update("a", Some(10), None);
        s.update("a", None, Some("video/mp4"));
        assert_eq!(
            s.get("a"),
            PieceMeta {
                size: Some(10),
                content_type: Some("video/mp4")
            }
        );
        s.update("b", Some(1), None);
        s.update("c", Some(2), None);
        assert_eq!(s.get("c").size, Some(2));
        assert_eq!(s.get("a"), PieceMeta::default());
    }
}
