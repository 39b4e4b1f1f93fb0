//! Cluster mode inside the cache: which source a run is opened from (the
//! window's owner, the next member in hash order, finally Beam), and what
//! happens to a window that came from a peer (not stored on this disk;
//! kept in memory once hot here).
//!
//! What it is not: ownership, membership or the peer client, which live in
//! [`crate::cluster`]; this file only connects them to the fill path.

use std::sync::Arc;

use bytes::Bytes;

use super::fill::{Fill, FillReader};
use super::{Inner, Piece, Source};
use crate::cluster::Route;
use crate::http::range::ByteRange;
use crate::metrics;
use crate::upstream::{UpstreamBody, UpstreamError};

/// Where the bytes a fill reader yields come from.
pub(super) fn fill_source(reader: &FillReader) -> Source {
    if reader.from_peer() {
        Source::Peer
    } else {
        Source::Upstream
    }
}

impl Inner {
    /// Opens `range` from its owner in cluster mode (unless `local_only`),
    /// else from the best upstream. An owner that fails is marked and the
    /// next member in hash order is asked, finally Beam: a peer's death
    /// never reaches the client.
    pub(super) async fn open_source(
        self: &Arc<Self>,
        piece: &Piece,
        range: ByteRange,
        local_only: bool,
    ) -> Result<(UpstreamBody, bool, Arc<str>), UpstreamError> {
        if let Some(cluster) = self.cluster.as_ref().filter(|_| !local_only) {
            let index = self.geometry.index_of(range.start);
            let mut failed_before = false;
            while let Route::Peer(peer) = cluster.route(&piece.cid, index) {
                if failed_before {
                    metrics::PEER_FALLBACKS
                        .with_label_values(&["next_peer"])
                        .inc();
                }
                match cluster.fetch(&peer, &piece.cid, range, piece.size).await {
                    Ok(body) => {
                        let holder: Arc<str> = Arc::from(format!("peer:{}", peer.name));
                        return Ok((body, false, holder));
                    }
                    // The piece itself is refused: Beam would say the same.
                    Err(e @ (UpstreamError::NotFound | UpstreamError::Refused { .. })) => {
                        return Err(e)
                    }
                    Err(e) => {
                        log::warn!("peer {} failed for {}: {e}", peer.name, piece.cid);
                        cluster.peer_failed(&peer);
                        failed_before = true;
                    }
                }
            }
            if failed_before {
                metrics::PEER_FALLBACKS.with_label_values(&["beam"]).inc();
            }
        }
        self.open_upstream(piece, range).await
    }

    /// True in cluster mode when window `index` of `piece` belongs to
    /// another replica (its bytes come from that owner, which asks Beam).
    pub(super) fn owned_elsewhere(&self, piece: &Piece, index: u64) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !matches!(c.route(&piece.cid, index), Route::Local))
    }

    /// A window that came from its owner: not stored on this replica's disk
    /// (one copy per cluster), but kept in memory once it is hot here.
    pub(super) fn keep_peer_window(&self, fill: &Arc<Fill>, whole: Bytes) {
        if let Some(cluster) = &self.cluster {
            let (keep, dropped) = cluster.note_peer_window(&fill.key);
            for k in &dropped {
                self.memory.remove(k);
            }
            if keep && !fill.is_purged() {
                let evicted = self.memory.put(fill.key.clone(), whole);
                metrics::EVICTIONS
                    .with_label_values(&["memory"])
                    .inc_by(evicted.len() as u64);
            }
            self.publish_sizes();
        }
        self.unregister(fill);
    }
}
