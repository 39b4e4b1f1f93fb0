//! Which upstream answers a run: Beam first. A whole-piece answer (Beam is
//! cold) starts the piece's warm-up (`warmup`); the run then reads from it
//! when its range is near the head, else asks each storage provider in turn
//! (the static ones, then the chain-resolved holders, minus those backing
//! off after a 429: `crate::upstream::resolve`). Without a warm-up such an
//! answer to a range past `max_skip` is dropped at once for the providers,
//! then Beam once more after a delay. A Beam error falls back to the
//! providers, except a refusal (Bad Bits, sanctioned, no CDN; an exhausted
//! quota unless `upstream.on_quota_exhausted: providers`).
//!
//! What it is not: the request and retry loop of a run (`run`) or the
//! upstream HTTP client (`crate::upstream`).

use std::sync::Arc;

use super::{Inner, Piece};
use crate::http::range::ByteRange;
use crate::metrics;
use crate::upstream::{Origin, Refusal, UpstreamBody, UpstreamError};

/// Who answered a Beam request that may have been hedged.
enum Answer {
    /// Beam (or its error): the hedge, if any, was dropped or failed.
    Beam(Result<UpstreamBody, UpstreamError>),
    /// A storage provider, asked when Beam was late.
    Hedge(UpstreamBody, Arc<str>),
    /// Beam failed, and so did every storage provider the hedge asked: no
    /// second round of them.
    Failed(UpstreamError),
}

impl Inner {
    /// Opens `range` from the best upstream. Returns the body and whether it
    /// starts at byte 0 (a whole-piece answer used as is).
    /// [`UpstreamError::Warming`] means the piece's Beam warm-up runs (maybe
    /// started here) and no provider served the range: the caller hands its
    /// fills to the warm-up.
    pub(super) async fn open_upstream(
        self: &Arc<Self>,
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
        let ((b, holder), z) = self.open_upstream_inner(piece, range).await?;
        Ok((b, z, holder.unwrap_or(beam)))
    }

    /// [`Inner::open_upstream`] without the distrust rule: the body, the
    /// provider that sent it (`None`: Beam) and whether it starts at byte 0.
    async fn open_upstream_inner(
        self: &Arc<Self>,
        piece: &Piece,
        range: ByteRange,
    ) -> Result<((UpstreamBody, Option<Arc<str>>), bool), UpstreamError> {
        // The first request for a piece whose state at Beam is unknown goes
        // alone (the head and the tail of a first play start at once): the
        // others wait for its answer, so a cold piece gets one whole-body
        // answer and a refusal one request. The turn is given back as soon
        // as Beam's answer is recorded (and a warm-up it calls for has
        // started), not after the storage providers this request may go on
        // to: the others wait for Beam's answer only.
        let first = self.first_contact(piece).await;
        let beam = match self.beam_or_hedge(piece, range).await {
            Answer::Beam(result) => result,
            Answer::Hedge(body, holder) => return Ok(((body, Some(holder)), false)),
            Answer::Failed(e) => return Err(e),
        };
        let beam = match beam {
            Ok(body) if body.whole_piece() => Err(self.start_warmup(piece, body)),
            other => Ok(other),
        };
        drop(first);
        let beam = match beam {
            Ok(answer) => answer,
            Err(None) if range.start <= self.settings.max_skip => {
                return Err(UpstreamError::Warming)
            }
            Err(None) => return self.providers_while_warming(piece, range).await,
            Err(Some(body)) => return self.cold_body(piece, range, body).await,
        };
        match beam {
            Ok(body) => Ok(((body, None), false)),
            Err(UpstreamError::Warming) => self.providers_while_warming(piece, range).await,
            Err(e) if !self.may_fall_back(&e) => Err(e),
            Err(e) => match self.try_providers(piece, range, "error").await {
                Some((b, p)) => Ok(((b, Some(p)), false)),
                None => Err(e),
            },
        }
    }

    /// Beam's answer for `range`; when it is late (`upstream.hedge_after`)
    /// and the budget allows, raced against the storage providers' for the
    /// same range (`crate::upstream::hedge`). The first answer is used; a
    /// provider's request that lost is dropped, and a Beam request that lost
    /// runs on in the background to its response header, so that a refusal
    /// Beam answers late is still remembered for the piece's next windows.
    /// A Beam error while the hedge runs waits for the hedge's answer, unless
    /// it is a refusal. Only a piece Beam has answered with ranges is hedged:
    /// a cold piece's first answer decides its warm-up.
    async fn beam_or_hedge(&self, piece: &Piece, range: ByteRange) -> Answer {
        let origin = piece.beam_origin();
        let base = match self.upstream.beam_base(&origin) {
            Some(base) if self.hedging.enabled() && self.may_hedge(piece, base) => base.to_string(),
            _ => {
                let result = self
                    .upstream
                    .fetch_from(origin, &piece.cid, range, Some(piece.size))
                    .await;
                return Answer::Beam(result);
            }
        };
        self.hedging.note_request();
        let started = tokio::time::Instant::now();
        // Only answers Beam sent before any hedge are times to first byte:
        // a request that lost was dropped, and its time is unknown. (The time
        // it was dropped is only a lower bound; counting it would push the
        // percentile up after every hedge.)
        let note = |result: &Result<UpstreamBody, UpstreamError>| {
            if matches!(result, Ok(b) if !b.whole_piece()) {
                self.hedging.note_ttfb(&base, started.elapsed());
            }
        };
        let mut beam = {
            let (upstream, piece) = (self.upstream.clone(), piece.clone());
            Box::pin(async move {
                upstream
                    .fetch_from(piece.beam_origin(), &piece.cid, range, Some(piece.size))
                    .await
            })
        };
        let Some(delay) = self.hedging.delay(&base) else {
            let result = beam.await;
            note(&result);
            return Answer::Beam(result);
        };
        tokio::select! {
            biased;
            result = &mut beam => {
                note(&result);
                return Answer::Beam(result);
            }
            () = tokio::time::sleep(delay) => {}
        }
        if !self.hedging.try_hedge() {
            metrics::HEDGES.with_label_values(&["over_budget"]).inc();
            let result = beam.await;
            note(&result);
            return Answer::Beam(result);
        }
        let hedge = self.try_providers(piece, range, "hedge");
        tokio::pin!(hedge);
        tokio::select! {
            // Beam first when both are ready: its answer may be a refusal.
            biased;
            result = &mut beam => {
                note(&result);
                match result {
                    Ok(body) => {
                        metrics::HEDGES.with_label_values(&["lost"]).inc();
                        Answer::Beam(Ok(body))
                    }
                    Err(e) if !self.may_fall_back(&e) => {
                        metrics::HEDGES.with_label_values(&["lost"]).inc();
                        Answer::Beam(Err(e))
                    }
                    Err(e) => match hedge.await {
                        Some((body, holder)) => {
                            metrics::HEDGES.with_label_values(&["won"]).inc();
                            Answer::Hedge(body, holder)
                        }
                        None => {
                            metrics::HEDGES.with_label_values(&["failed"]).inc();
                            Answer::Failed(e)
                        }
                    },
                }
            }
            answer = &mut hedge => match answer {
                Some((body, holder)) => {
                    metrics::HEDGES.with_label_values(&["won"]).inc();
                    log::debug!(
                        "{}: Beam had not answered bytes {range} after {:?}; {holder} did",
                        piece.cid,
                        started.elapsed()
                    );
                    // Beam's answer still comes, unread: a refusal in it is
                    // remembered (the body, if any, is dropped).
                    tokio::spawn(async move {
                        let _ = beam.await;
                    });
                    Answer::Hedge(body, holder)
                }
                None => {
                    metrics::HEDGES.with_label_values(&["failed"]).inc();
                    match beam.await {
                        Err(e) if self.may_fall_back(&e) => Answer::Failed(e),
                        result => {
                            note(&result);
                            Answer::Beam(result)
                        }
                    }
                }
            },
        }
    }

    /// Whether a late Beam request for `piece` may be hedged: Beam has
    /// answered it with ranges (a cold piece's first answer is Beam's
    /// warm-up), and some storage provider may hold it.
    fn may_hedge(&self, piece: &Piece, base: &str) -> bool {
        self.upstream.beam_state().is_warm(base, &piece.cid)
            && (!self.settings.providers.is_empty()
                || self.settings.pool.resolves_for(&piece.chain_payer))
    }

    /// True when a second Beam request for `piece` may go beside one in
    /// flight: Beam has answered it with ranges (its state is warm, or
    /// warmed by this process), or its state is unknown and
    /// `upstream.beam_assume_warm` takes it as warm. False with no Beam URL.
    pub(super) fn beam_taken_as_warm(&self, piece: &Piece) -> bool {
        use crate::upstream::beam_state::BeamPiece;
        let origin = piece.beam_origin();
        let Some(base) = self.upstream.beam_base(&origin) else {
            return false;
        };
        match self.upstream.beam_state().get(base, &piece.cid) {
            BeamPiece::Warm | BeamPiece::Warmed => true,
            BeamPiece::Unknown => self.assumes_warm(piece),
            _ => false,
        }
    }

    /// A Beam error the storage providers may answer instead: not a refusal
    /// (Bad Bits, sanctioned payer, no CDN), except an exhausted quota with
    /// `upstream.on_quota_exhausted: providers`.
    fn may_fall_back(&self, e: &UpstreamError) -> bool {
        match e.refusal() {
            None => true,
            Some(Refusal::QuotaExhausted) => self.settings.quota_fallback,
            Some(_) => false,
        }
    }

    /// A range the running warm-up will not reach soon: a storage provider's.
    async fn providers_while_warming(
        &self,
        piece: &Piece,
        range: ByteRange,
    ) -> Result<((UpstreamBody, Option<Arc<str>>), bool), UpstreamError> {
        match self.try_providers(piece, range, "warming").await {
            Some((b, p)) => Ok(((b, Some(p)), false)),
            None => Err(UpstreamError::Warming),
        }
    }

    /// Beam's whole-piece answer with no warm-up (off, too large, one
    /// failed or running): used from byte 0 near the head, else dropped at
    /// once for the providers, then Beam once more.
    async fn cold_body(
        &self,
        piece: &Piece,
        range: ByteRange,
        mut body: UpstreamBody,
    ) -> Result<((UpstreamBody, Option<Arc<str>>), bool), UpstreamError> {
        if range.start <= self.settings.max_skip {
            body.rewind_to_zero();
            return Ok(((body, None), true));
        }
        // A deep range answered with the whole piece: never read up to it.
        drop(body);
        if let Some((b, p)) = self.try_providers(piece, range, "full_body").await {
            return Ok(((b, Some(p)), false));
        }
        metrics::FALLBACKS
            .with_label_values(&["full_body", "beam_retry"])
            .inc();
        tokio::time::sleep(self.settings.beam_retry_delay).await;
        match self
            .upstream
            .fetch_from(piece.beam_origin(), &piece.cid, range, Some(piece.size))
            .await
        {
            Ok(b) if !b.whole_piece() => Ok(((b, None), false)),
            Ok(_) => Err(UpstreamError::BadResponse(format!(
                "Beam answered a range starting at byte {} with the whole piece and no storage provider \
                 could serve it (set upstream.providers, or upstream.payer for chain resolution)",
                range.start
            ))),
            Err(e) => Err(e),
        }
    }

    /// Asks the static providers, then the chain-resolved holders of the
    /// piece, skipping providers backing off after a 429
    /// (`crate::upstream::resolve`).
    pub(super) async fn try_providers(
        &self,
        piece: &Piece,
        range: ByteRange,
        reason: &str,
    ) -> Option<(UpstreamBody, Arc<str>)> {
        let pool = &self.settings.pool;
        let mut tried: Vec<String> = Vec::new();
        // The static providers, then the chain's holders as they answer
        // their probes: each round asks the holders not tried yet, and waits
        // for the next to answer only when all those tried have failed.
        let mut candidates = pool.usable(&self.settings.providers);
        loop {
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
                    // It does not hold this piece: no fault of the provider.
                    Err(e @ (UpstreamError::NotFound | UpstreamError::Status(404 | 410))) => {
                        log::info!("provider {p} does not serve {}: {e}", piece.cid)
                    }
                    // A provider that fails a GET (5xx, a timeout, a broken
                    // connection, a response not the range asked for) is
                    // skipped for a while, as after a 429: the next window
                    // asks the other holders first.
                    Err(e) => pool.back_off(&p, &format!("failed a GET of {}: {e}", piece.cid)),
                }
                tried.push(p);
            }
            candidates = pool.resolved(&piece.chain_payer, &piece.cid, &tried).await;
            if candidates.is_empty() {
                return None;
            }
        }
    }
}
