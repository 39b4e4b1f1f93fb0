//! The identity of one window of a piece: the key that the cache's tiers,
//! its fills and the cluster's ownership all name windows by.
//!
//! It lives here, below `cache` and `cluster`, because both need it and
//! neither should import the other for it. The window *geometry* (how many
//! raw bytes a window holds) is the cache's concern: `crate::cache::window`.

use std::sync::Arc;

/// Identity of one cached window: the piece's CID string and the window's
/// index within the piece.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowKey {
    /// PieceCID as a lowercase base32 string (`[a-z0-9]{1,128}`).
    pub cid: Arc<str>,
    /// Window index within the piece (window `i` starts at `i * window_len`).
    pub index: u64,
}

impl WindowKey {
    /// A key for window `index` of piece `cid`.
    pub fn new(cid: impl Into<Arc<str>>, index: u64) -> WindowKey {
        WindowKey {
            cid: cid.into(),
            index,
        }
    }
}
