//! Which upstream answers a run: Beam first; a whole-piece answer to a
//! range starting past `max_skip` is dropped at once and the range asked of
//! each storage provider in turn (the static ones, then the chain-resolved
//! holders, minus those backing off after a 429: `crate::upstream::resolve`),
//! then of Beam once more after a delay; a Beam error also falls back to the
//! providers.
//!
//! What it is not: the request and retry loop of a run (`run`) or the
//! upstream HTTP client (`crate::upstream`).

use super::{Inner, Piece};
use crate::http::range::ByteRange;
use crate::metrics;
use crate::upstream::{Origin, UpstreamBody, UpstreamError};

impl Inner {
    /// Opens `range` from the best upstream. Returns the body and whether it
    /// starts at byte 0 (a whole-piece answer used as is).
    pub(super) async fn open_upstream(
        &self,
        piece: &Piece,
        range: ByteRange,
    ) -> Result<(UpstreamBody, bool), UpstreamError> {
        let beam = self
            .upstream
            .fetch_from(Origin::Beam, &piece.cid, range, Some(piece.size))
            .await;
        match beam {
            Ok(body) if !body.whole_piece() => Ok((body, false)),
            Ok(mut body) if range.start <= self.settings.max_skip => {
                body.rewind_to_zero();
                Ok((body, true))
            }
            Ok(body) => {
                // A deep range answered with the whole piece: never read up to it.
                drop(body);
                if let Some(b) = self.try_providers(piece, range, "full_body").await {
                    return Ok((b, false));
                }
                metrics::FALLBACKS
                    .with_label_values(&["full_body", "beam_retry"])
                    .inc();
                tokio::time::sleep(self.settings.beam_retry_delay).await;
                match self.upstream.fetch_from(Origin::Beam, &piece.cid, range, Some(piece.size)).await {
                    Ok(b) if !b.whole_piece() => Ok((b, false)),
                    Ok(_) => Err(UpstreamError::BadResponse(format!(
                        "Beam answered a range starting at byte {} with the whole piece and no storage provider \
                         could serve it (set upstream.providers or upstream.resolve_providers)",
                        range.start
                    ))),
                    Err(e) => Err(e),
                }
            }
            Err(e) => match self.try_providers(piece, range, "error").await {
                Some(b) => Ok((b, false)),
                None => Err(e),
            },
        }
    }

    /// Asks the static providers, then the chain-resolved holders of the
    /// piece, skipping providers backing off after a 429
    /// (`crate::upstream::resolve`).
    async fn try_providers(
        &self,
        piece: &Piece,
        range: ByteRange,
        reason: &str,
    ) -> Option<UpstreamBody> {
        let pool = &self.settings.pool;
        let mut tried: Vec<String> = Vec::new();
        for chain in [false, true] {
            let candidates = if chain {
                pool.resolved(&piece.cid, &tried).await
            } else {
                pool.usable(&self.settings.providers)
            };
            for p in candidates {
                metrics::FALLBACKS
                    .with_label_values(&[reason, "provider"])
                    .inc();
                match self
                    .upstream
                    .fetch_from(Origin::Provider(&p), &piece.cid, range, Some(piece.size))
                    .await
                {
                    Ok(b) if !b.whole_piece() || range.start == 0 => return Some(b),
                    Ok(_) => log::warn!("provider {p} ignored Range for {}", piece.cid),
                    Err(UpstreamError::Status(429)) => pool.mark_busy(&p),
                    Err(e) => log::warn!("provider {p} failed for {}: {e}", piece.cid),
                }
                tried.push(p);
            }
        }
        None
    }
}
