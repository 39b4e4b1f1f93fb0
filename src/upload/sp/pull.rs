//! The SP-to-SP pull (Curio's `POST /pdp/piece/pull`): ask a second provider
//! to fetch pieces from the first one's `/piece/<cid>`, and repeat the
//! (idempotent) call until the pull is complete or failed. Adding the pulled
//! pieces to a data set is in `data_set`.

use std::time::Instant;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::piece::PieceCid;

use super::call::{address, excerpt, hex_data, parse_json, status_error};
use super::{SpClient, SpError, Step};
/// Where an SP-to-SP pull stands (Curio's `POST /pdp/piece/pull`; the
/// overall status is the worst of the pieces': failed > retrying >
/// inProgress > pending > complete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullStatus {
    /// Queued, not started.
    Pending,
    /// Downloading (first attempt).
    InProgress,
    /// Downloading again after a failure.
    Retrying,
    /// Downloaded and re-hashed: the provider holds the piece.
    Complete,
    /// Given up after its retries.
    Failed,
}

impl PullStatus {
    fn parse(s: &str) -> Option<PullStatus> {
        Some(match s {
            "pending" => PullStatus::Pending,
            "inProgress" => PullStatus::InProgress,
            "retrying" => PullStatus::Retrying,
            "complete" => PullStatus::Complete,
            "failed" => PullStatus::Failed,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PullStatus::Pending => "pending",
            PullStatus::InProgress => "inProgress",
            PullStatus::Retrying => "retrying",
            PullStatus::Complete => "complete",
            PullStatus::Failed => "failed",
        }
    }

    /// Complete or failed: polling stops.
    pub fn is_final(&self) -> bool {
        matches!(self, PullStatus::Complete | PullStatus::Failed)
    }
}

/// One answer of `POST /pdp/piece/pull`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullAnswer {
    /// Overall status.
    pub status: PullStatus,
    /// Per piece: CID string and status.
    pub pieces: Vec<(String, PullStatus)>,
}

/// One piece for a provider to pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSource {
    /// The piece.
    pub piece_cid: PieceCid,
    /// Where the puller GETs it (exactly 200 needed): another provider's
    /// `/piece/<cid>`.
    pub source_url: String,
}

impl SpClient {
    /// `POST /pdp/piece/pull` once: asks this provider to fetch `pieces` from
    /// their source URLs, or (the call is idempotent on `extraData`) asks how
    /// far it got. `extraData` is the payer's signed AddPieces (with
    /// `data_set_id`) or CreateDataSetAndAddPieces (without): Curio checks
    /// with it that the later add can be paid, and the same bytes then go to
    /// [`add_pieces`](Self::add_pieces) / [`create_and_add`](Self::create_and_add).
    /// Body and answer as synapse-core `sp/pull-pieces.ts` (2026-08).
    pub async fn pull_pieces(
        &self,
        record_keeper: &str,
        extra_data_hex: &str,
        pieces: &[PullSource],
        data_set_id: Option<u64>,
    ) -> Result<PullAnswer, SpError> {
        let step = Step::PullPieces;
        if pieces.is_empty() {
            return Err(SpError::InvalidArgument {
                step,
                reason: "at least one piece is required".into(),
            });
        }
        let list: Vec<Value> = pieces
            .iter()
            .map(|p| json!({"pieceCid": p.piece_cid.to_string(), "sourceUrl": p.source_url}))
            .collect();
        let mut body = json!({
            "extraData": hex_data(step, extra_data_hex)?,
            "recordKeeper": address(step, record_keeper)?,
            "pieces": list,
        });
        if let Some(id) = data_set_id.filter(|id| *id > 0) {
            body["dataSetId"] = json!(id);
        }
        let url = self.url(step, "pdp/piece/pull")?;
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let (status, answer) = self.send_small(step, request).await?;
        if status != StatusCode::OK && status != StatusCode::ACCEPTED {
            return Err(status_error(step, status, &answer));
        }
        let value = parse_json(step, &answer)?;
        let bad = |reason: String| SpError::BadResponse { step, reason };
        let overall = value
            .get("status")
            .and_then(Value::as_str)
            .and_then(PullStatus::parse)
            .ok_or_else(|| bad(format!("no known status in {}", excerpt(&answer))))?;
        let mut per_piece = Vec::new();
        for piece in value
            .get("pieces")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let cid = piece.get("pieceCid").and_then(Value::as_str).unwrap_or("");
            let status = piece
                .get("status")
                .and_then(Value::as_str)
                .and_then(PullStatus::parse)
                .ok_or_else(|| bad(format!("piece {cid} has no known status")))?;
            per_piece.push((cid.to_string(), status));
        }
        Ok(PullAnswer {
            status: overall,
            pieces: per_piece,
        })
    }

    /// Repeats [`pull_pieces`](Self::pull_pieces) every
    /// [`SpTimeouts::poll_interval`] until the pull is complete or failed;
    /// 429 and 5xx answers and transport errors (a loaded provider) count as
    /// "not yet" until [`SpTimeouts::poll_deadline`], then
    /// [`SpError::PollTimeout`]. Returns the final answer (which may be
    /// [`PullStatus::Failed`]).
    pub async fn wait_pulled(
        &self,
        record_keeper: &str,
        extra_data_hex: &str,
        pieces: &[PullSource],
        data_set_id: Option<u64>,
    ) -> Result<PullAnswer, SpError> {
        let step = Step::PullPieces;
        let start = Instant::now();
        loop {
            let last = match self
                .pull_pieces(record_keeper, extra_data_hex, pieces, data_set_id)
                .await
            {
                Ok(answer) if answer.status.is_final() => return Ok(answer),
                Ok(answer) => format!("pull {}", answer.status.as_str()),
                Err(e) if e.is_retryable() => e.to_string(),
                Err(e) => return Err(e),
            };
            let waited = start.elapsed();
            if waited + self.timeouts.poll_interval > self.timeouts.poll_deadline {
                return Err(SpError::PollTimeout { step, waited, last });
            }
            log::trace!("{step}: {last}; asking again");
            tokio::time::sleep(self.timeouts.poll_interval).await;
        }
    }
}
