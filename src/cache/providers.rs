//! Which upstream answers a run: Beam first; a whole-piece answer to a
//! range starting past `max_skip` is dropped at once and the range asked of
//! each storage provider in turn (the static ones, then the chain-resolved
//! holders, minus those backing off after a 429: `crate::upstream::resolve`),
//! then of Beam once more after a delay; a Beam error also falls back to the
//! providers.
//!
//! What it is not: the request and retry loop of a run (`run`) or the
//! upstream HTTP client (`crate::upstream`).

use std::sync::Arc;

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
    ) -> Result<(UpstreamBody, bool, Arc<str>), UpstreamError> {
        let beam: Arc<str> = Arc::from("beam");
        // Beam sent wrong bytes of this piece lately: providers first.
        if self.builds.beam_distrusted(&piece.cid) {
            if let Some((b, p)) = self.try_providers(piece, range, "wrong_bytes").await {
                return Ok((b, false, p));
            }
        }
        let (b, z) = self.open_upstream_inner(piece, range).await?;
        Ok((b.0, z, b.1.unwrap_or(beam)))
    }

    async fn open_upstream_inner(
        &self,
        piece: &Piece,
        range: ByteRange,
    ) -> Result<((UpstreamBody, Option<Arc<str>>), bool), UpstreamError> {
        let beam = self
            .upstream
            .fetch_from(piece.beam_origin(), &piece.cid, range, Some(piece.size))
            .await;
        match beam {
            Ok(body) if !body.whole_piece() => Ok(((body, None), false)),
            Ok(mut body) if range.start <= self.settings.max_skip => {
                body.rewind_to_zero();
                Ok(((body, None), true))
            }
            Ok(body) => {
                // A deep range answered with the whole piece: never read up to it.
                drop(body);
                if let Some((b, p)) = self.try_providers(piece, range, "full_body").await {
                    return Ok(((b, Some(p)), false));
                }
                metrics::FALLBACKS
                    .with_label_values(&["full_body", "beam_retry"])
                    .inc();
                tokio::time::sleep(self.settings.beam_retry_delay).await;
                match self.upstream.fetch_from(piece.beam_origin(), &piece.cid, range, Some(piece.size)).await {
                    Ok(b) if !b.whole_piece() => Ok(((b, None), false)),
                    Ok(_) => Err(UpstreamError::BadResponse(format!(
                        "Beam answered a range starting at byte {} with the whole piece and no storage provider \
                         could serve it (set upstream.providers or upstream.resolve_providers)",
                        range.start
                    ))),
                    Err(e) => Err(e),
                }
            }
            Err(e) => match self.try_providers(piece, range, "error").await {
                Some((b, p)) => Ok(((b, Some(p)), false)),
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
    ) -> Option<(UpstreamBody, Arc<str>)> {
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
                    Ok(b) if !b.whole_piece() || range.start == 0 => {
                        return Some((b, Arc::from(p.as_str())))
                    }
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
