//! Why a storage-provider call failed: [`SpError`], the [`Step`] (API call)
//! it failed in, which failures are worth repeating, and the `Retry-After`
//! parser. No I/O here.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::piece::commp::CommpError;

#[cfg(doc)]
use super::MIN_UPLOAD_SIZE;

/// The API call a failure happened in; its `Display` starts every
/// [`SpError`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET /pdp/ping`.
    Ping,
    /// `POST /pdp/piece/uploads`.
    CreateUploadSession,
    /// `PUT /pdp/piece/uploads/{uuid}`.
    UploadPiece,
    /// `POST /pdp/piece/uploads/{uuid}`.
    FinalizeUpload,
    /// `GET /pdp/piece?pieceCid=`.
    FindPiece,
    /// `POST /pdp/data-sets`.
    CreateDataSet,
    /// `GET /pdp/data-sets/created/{txHash}`.
    WaitDataSetCreated,
    /// `POST /pdp/data-sets/{id}/pieces`.
    AddPieces,
    /// `GET /pdp/data-sets/{id}/pieces/added/{txHash}`.
    WaitPiecesAdded,
    /// `POST /pdp/data-sets/create-and-add`.
    CreateAndAdd,
    /// `POST /pdp/piece/pull`.
    PullPieces,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Ping => "ping",
            Step::CreateUploadSession => "create upload session",
            Step::UploadPiece => "upload piece data",
            Step::FinalizeUpload => "finalize upload",
            Step::FindPiece => "find piece",
            Step::CreateDataSet => "create data set",
            Step::WaitDataSetCreated => "wait for data set creation",
            Step::AddPieces => "add pieces",
            Step::WaitPiecesAdded => "wait for pieces added",
            Step::CreateAndAdd => "create data set and add pieces",
            Step::PullPieces => "pull pieces",
        })
    }
}

/// Why a storage-provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum SpError {
    /// The service URL cannot be used as a base URL.
    #[error("service URL {url:?} is invalid: {reason}")]
    InvalidServiceUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument cannot be sent (bad hex, empty piece list, bad limit).
    #[error("{step}: invalid argument: {reason}")]
    InvalidArgument {
        /// The call.
        step: Step,
        /// What is wrong.
        reason: String,
    },
    /// No HTTP answer: connect failure, timeout, connection reset.
    #[error("{step}: request failed: {source}")]
    Transport {
        /// The call.
        step: Step,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The provider answered with a status the step does not expect.
    #[error("{step}: provider answered {status}: {body}")]
    Status {
        /// The call.
        step: Step,
        /// HTTP status code.
        status: u16,
        /// The start of the answer body, one line.
        body: String,
    },
    /// The answer had the right status but unusable content (no `Location`,
    /// malformed JSON, a non-numeric id).
    #[error("{step}: unexpected answer: {reason}")]
    BadResponse {
        /// The call.
        step: Step,
        /// What was wrong.
        reason: String,
    },
    /// The body ended under [`MIN_UPLOAD_SIZE`] bytes; nothing was uploaded.
    #[error(
        "upload piece data: payload of {len} bytes is too small: a piece holds at least 127 bytes"
    )]
    TooSmall {
        /// Bytes the body held.
        len: u64,
    },
    /// The body passed the size limit; the `PUT` was aborted and no finalize
    /// sent.
    #[error("upload piece data: payload is larger than the limit of {limit} bytes; upload aborted, session abandoned")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// The body stream failed (typically: the client disconnected); the `PUT`
    /// was aborted and no finalize sent.
    #[error("upload piece data: body stream failed after {received} bytes ({source}); upload aborted, session abandoned, no finalize sent")]
    BodyFailed {
        /// Bytes taken from the stream before it failed.
        received: u64,
        /// The stream's error.
        #[source]
        source: io::Error,
    },
    /// The CommP computation refused its input or settings.
    #[error("upload piece data: PieceCID computation failed: {0}")]
    Commp(#[from] CommpError),
    /// The transaction reached the chain and was rejected: final.
    #[error("{step}: transaction {tx_hash} was rejected")]
    Rejected {
        /// The call.
        step: Step,
        /// The transaction.
        tx_hash: String,
    },
    /// The provider asked us (`429` with `Retry-After`) to stay away longer
    /// than the poll deadline: Curio blocks an IP for 5 minutes after 5
    /// offences in a minute.
    #[error("{step}: the provider throttles this client for {wait:?} more (Retry-After); try again later")]
    Throttled {
        /// The call that would have been sent.
        step: Step,
        /// Time left before the provider takes requests again.
        wait: Duration,
    },
    /// A poll did not reach a final answer before the deadline.
    #[error("{step}: no final answer after {waited:?} (last: {last})")]
    PollTimeout {
        /// The call.
        step: Step,
        /// Time spent polling.
        waited: Duration,
        /// The last answer or error seen.
        last: String,
    },
}

impl SpError {
    /// Whether the same operation may succeed if repeated later (with a fresh
    /// body, for an upload): network failures, timeouts, 408, 429 and 5xx
    /// answers. Rejections, bad arguments, size errors and 4xx are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            SpError::Transport { .. } | SpError::PollTimeout { .. } => true,
            SpError::Status { status, .. } => retryable_status(*status),
            _ => false,
        }
    }

    /// The step the failure happened in, when it is tied to one.
    pub fn step(&self) -> Option<Step> {
        match self {
            SpError::InvalidArgument { step, .. }
            | SpError::Transport { step, .. }
            | SpError::Status { step, .. }
            | SpError::BadResponse { step, .. }
            | SpError::Rejected { step, .. }
            | SpError::Throttled { step, .. }
            | SpError::PollTimeout { step, .. } => Some(*step),
            SpError::TooSmall { .. }
            | SpError::TooLarge { .. }
            | SpError::BodyFailed { .. }
            | SpError::Commp(_) => Some(Step::UploadPiece),
            SpError::InvalidServiceUrl { .. } => None,
        }
    }
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (RFC 9110 §10.2.3)
/// counted from `now` (a date in the past is no wait). `None` when it is
/// neither.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

pub(super) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        use std::time::{SystemTime, UNIX_EPOCH};
        // 1994-11-06T08:49:37Z, RFC 9110's example date.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("300", now),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_retry_after(" 1 ", now), Some(Duration::from_secs(1)));
        // Two minutes later, in each of the three date forms RFC 9110 accepts.
        for date in [
            "Sun, 06 Nov 1994 08:51:37 GMT",
            "Sunday, 06-Nov-94 08:51:37 GMT",
            "Sun Nov  6 08:51:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(120)),
                "{date}"
            );
        }
        // A date already past is no wait; garbage is no answer.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after("-5", SystemTime::now()), None);
    }
}
