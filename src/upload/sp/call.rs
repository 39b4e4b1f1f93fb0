//! The plumbing every storage-provider call shares: honouring the
//! provider's `Retry-After`, small requests with capped answers, retries of
//! calls safe to repeat, status polls, the `201 Created` + `Location`
//! pattern, and the checks on arguments and answers (hex, addresses, ids,
//! JSON). It owns no endpoint of its own; the uploads, data sets and pulls
//! build on it.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use super::error::{parse_retry_after, retryable_status};
use super::{PollVerdict, SpClient, SpError, Step};

/// Most bytes of an answer body read for a small call; more is a broken
/// provider, and the excerpt in an error needs far less.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Characters of an answer body quoted in an error.
const EXCERPT_CHARS: usize = 200;
impl SpClient {
    /// Waits out a `Retry-After` the provider gave, before any request: a
    /// throttled client never comes back sooner than asked. A wait longer
    /// than [`SpTimeouts::poll_deadline`] fails at once instead.
    async fn honour_retry_after(&self, step: Step) -> Result<(), SpError> {
        let until = *self
            .throttled_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(until) = until else {
            return Ok(());
        };
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        if wait > self.timeouts.poll_deadline {
            return Err(SpError::Throttled { step, wait });
        }
        log::info!(
            "{step}: the provider {} asked us to wait {wait:?} (Retry-After)",
            self.base
        );
        tokio::time::sleep_until(until.into()).await;
        Ok(())
    }

    /// Notes a `429`/`503` answer's `Retry-After` (seconds or an HTTP date).
    pub(super) fn note_retry_after(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
    ) {
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
            return;
        }
        let Some(wait) = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
        else {
            return;
        };
        let until = Instant::now() + wait;
        let mut slot = self
            .throttled_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }

    /// Sends `request`, expects 201 Created and returns its `Location`.
    pub(super) async fn created_location(
        &self,
        step: Step,
        request: reqwest::RequestBuilder,
    ) -> Result<String, SpError> {
        self.honour_retry_after(step).await?;
        let response = request
            .send()
            .await
            .map_err(|source| SpError::Transport { step, source })?;
        let location = location_of(&response);
        let status = response.status();
        self.note_retry_after(status, response.headers());
        let body = read_capped(response)
            .await
            .map_err(|source| SpError::Transport { step, source })?;
        expect_status(step, status, &body, StatusCode::CREATED)?;
        location.ok_or_else(|| SpError::BadResponse {
            step,
            reason: "201 without a Location header".into(),
        })
    }

    /// A JSON `POST` answered 201 with a `Location` ending in a tx hash.
    pub(super) async fn post_for_tx(
        &self,
        step: Step,
        path: &str,
        body: Value,
    ) -> Result<String, SpError> {
        let url = self.url(step, path)?;
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.timeouts.request)
            .body(body.to_string());
        let location = self.created_location(step, request).await?;
        let hash = location_tx_hash(&location).ok_or_else(|| SpError::BadResponse {
            step,
            reason: format!("Location {location:?} does not end in a 0x transaction hash"),
        })?;
        Ok(hash.to_string())
    }

    /// One small request: status and at most 1 MiB of body.
    pub(super) async fn send_small(
        &self,
        step: Step,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Bytes), SpError> {
        self.honour_retry_after(step).await?;
        let response = request
            .timeout(self.timeouts.request)
            .send()
            .await
            .map_err(|source| SpError::Transport { step, source })?;
        let status = response.status();
        self.note_retry_after(status, response.headers());
        let body = read_capped(response)
            .await
            .map_err(|source| SpError::Transport { step, source })?;
        Ok((status, body))
    }

    /// Runs `call` once plus up to [`SpTimeouts::retries`] times while it
    /// fails retryably. Only for calls safe to repeat.
    pub(super) async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T, SpError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SpError>>,
    {
        let mut backoff = self.timeouts.retry_backoff;
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && attempt < self.timeouts.retries => {
                    attempt += 1;
                    log::debug!("{e}; retry {attempt} in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                other => return other,
            }
        }
    }

    /// GETs `url` every [`SpTimeouts::poll_interval`] until `judge` says
    /// ready or fails, or the deadline passes. Transport errors and
    /// retryable statuses count as "not yet".
    pub(super) async fn poll<T>(
        &self,
        step: Step,
        url: Url,
        mut judge: impl FnMut(StatusCode, &[u8]) -> Result<PollVerdict<T>, SpError>,
    ) -> Result<T, SpError> {
        let start = Instant::now();
        let deadline = self.timeouts.poll_deadline;
        loop {
            let last = match self.send_small(step, self.http.get(url.clone())).await {
                Ok((status, body)) => match judge(status, &body)? {
                    PollVerdict::Ready(value) => return Ok(value),
                    PollVerdict::Pending(why) => why,
                },
                Err(e) if e.is_retryable() => e.to_string(),
                Err(e) => return Err(e),
            };
            let waited = start.elapsed();
            if waited + self.timeouts.poll_interval > deadline {
                return Err(SpError::PollTimeout { step, waited, last });
            }
            log::trace!("{step}: {last}; polling again");
            tokio::time::sleep(self.timeouts.poll_interval).await;
        }
    }
}

fn location_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer body.
pub(super) async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(Bytes::from(out))
}

/// One line of at most [`EXCERPT_CHARS`] characters from an answer body.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

pub(super) fn status_error(step: Step, status: StatusCode, body: &[u8]) -> SpError {
    SpError::Status {
        step,
        status: status.as_u16(),
        body: excerpt(body),
    }
}

pub(super) fn expect_status(
    step: Step,
    status: StatusCode,
    body: &[u8],
    want: StatusCode,
) -> Result<(), SpError> {
    if status == want {
        Ok(())
    } else {
        Err(status_error(step, status, body))
    }
}

// ------------------------------------------------------------------ answers
//
// The provider's answers, judged without I/O, so the hostile-input harness
// (tests/fuzz.rs) can feed them arbitrary bytes.

/// The `0x` transaction hash a `201 Created` answer's `Location` ends in.
pub fn location_tx_hash(location: &str) -> Option<&str> {
    let hash = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    is_hex_prefixed(hash).then_some(hash)
}

/// A non-200 poll answer: "not yet" for `pending` statuses and retryable
/// ones, an error otherwise.
pub(super) fn pending_or_error<T>(
    step: Step,
    status: StatusCode,
    body: &[u8],
    pending: &[StatusCode],
) -> Result<PollVerdict<T>, SpError> {
    if pending.contains(&status) || retryable_status(status.as_u16()) {
        Ok(PollVerdict::Pending(format!(
            "provider answered {}: {}",
            status.as_u16(),
            excerpt(body)
        )))
    } else {
        Err(status_error(step, status, body))
    }
}

pub(super) fn parse_json(step: Step, body: &[u8]) -> Result<Value, SpError> {
    serde_json::from_slice(body).map_err(|e| SpError::BadResponse {
        step,
        reason: format!("invalid JSON ({e}): {}", excerpt(body)),
    })
}

/// An id sent as a JSON number or a decimal string.
pub(super) fn parse_id(step: Step, field: &str, value: Option<&Value>) -> Result<u64, SpError> {
    let parsed = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| SpError::BadResponse {
        step,
        reason: format!(
            "{field} is not an unsigned integer: {}",
            value.map_or("missing".into(), Value::to_string)
        ),
    })
}

pub(super) fn is_hex_prefixed(s: &str) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `0x`-prefixed hex bytes (the prefix is added when missing).
pub(super) fn hex_data(step: Step, s: &str) -> Result<String, SpError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SpError::InvalidArgument {
            step,
            reason: format!("extraData {:?} is not hex bytes", excerpt(s.as_bytes())),
        });
    }
    Ok(format!("0x{digits}"))
}

pub(super) fn address(step: Step, s: &str) -> Result<&str, SpError> {
    if s.len() == 42 && is_hex_prefixed(s) {
        Ok(s)
    } else {
        Err(SpError::InvalidArgument {
            step,
            reason: format!("recordKeeper {s:?} is not a 0x address"),
        })
    }
}

pub(super) fn tx_hash_arg(step: Step, s: &str) -> Result<String, SpError> {
    if is_hex_prefixed(s) {
        Ok(s.to_string())
    } else {
        Err(SpError::InvalidArgument {
            step,
            reason: format!("transaction hash {s:?} is not 0x hex"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_parse_from_numbers_and_strings() {
        let step = Step::WaitDataSetCreated;
        assert_eq!(parse_id(step, "id", Some(&json!(42))).ok(), Some(42));
        assert_eq!(parse_id(step, "id", Some(&json!("42"))).ok(), Some(42));
        assert!(parse_id(step, "id", Some(&json!("0x2a"))).is_err());
        assert!(parse_id(step, "id", Some(&json!(-1))).is_err());
        assert!(parse_id(step, "id", None).is_err());
    }

    #[test]
    fn excerpt_is_one_short_line() {
        let long = "x\n".repeat(500);
        let e = excerpt(long.as_bytes());
        assert!(!e.contains('\n'));
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt(b"  "), "(empty body)");
    }

    #[test]
    fn hex_arguments_are_checked() {
        assert_eq!(hex_data(Step::AddPieces, "abcd").unwrap(), "0xabcd");
        assert_eq!(hex_data(Step::AddPieces, "0x").unwrap(), "0x");
        assert!(hex_data(Step::AddPieces, "0xabc").is_err());
        assert!(address(Step::CreateDataSet, "0x1234").is_err());
    }
}
