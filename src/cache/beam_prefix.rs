//! Beam's whole-piece 200 to a ranged request, used from byte 0 (when the
//! range starts within `max_skip`): the whole windows the body carries
//! before the run are checked like the run's and cached as they pass.
//!
//! What it is not: the decision to use or drop such a body (`providers`) or
//! the run itself (`run`).

use std::sync::Arc;

use bytes::BytesMut;

use super::store::count_check;
use super::verify::PieceCheck;
use super::window::WindowKey;
use super::{Inner, Piece};

impl Inner {
    /// Caches whole windows that lie before `run_start`, from a whole-piece
    /// body read from byte 0, once they pass `check` (the run's). `prefix`
    /// accumulates the current window.
    pub(super) fn cache_prefix(
        self: &Arc<Self>,
        piece: &Piece,
        check: Option<&PieceCheck>,
        offset: u64,
        data: &[u8],
        run_start: u64,
        prefix: &mut BytesMut,
    ) {
        let g = self.geometry;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() && pos < run_start {
            let idx = g.index_of(pos);
            let Some(span) = g.span(idx, piece.size) else {
                return;
            };
            let take = usize::try_from((span.end + 1 - pos).min(rest.len() as u64)).unwrap_or(0);
            prefix.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            pos += take as u64;
            if pos == span.end + 1 {
                let key = WindowKey::new(piece.cid.clone(), idx);
                let bytes = std::mem::take(prefix).freeze();
                if bytes.len() as u64 == span.len() && !self.is_cached(&key) {
                    // Checked as the run's windows are (one decision per
                    // run), inline: at most max_skip of windows, once.
                    let checked = check.map(|c| {
                        let verdict = c.check(idx, &bytes, self.settings.window_padded);
                        count_check(&key, &verdict);
                        verdict.is_ok()
                    });
                    if checked != Some(false) {
                        self.store(key, bytes, None, || {});
                    }
                }
            }
        }
    }
}
