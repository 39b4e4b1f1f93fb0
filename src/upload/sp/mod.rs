//! Storage-provider client: the calls beam-edge makes to a Curio provider's
//! PDP HTTP API to park a piece and put it in a data set.
//!
//! What it is: [`SpClient`] speaks the wire protocol described in
//! filecoin.md, "Upload to a storage provider": `ping`, the three-step
//! "CommP last" streaming upload ([`SpClient::upload_streaming`]), `find_piece`,
//! data-set creation, add-pieces, create-and-add, and the status polls that
//! follow each transaction. Every failure is one [`SpError`] whose message
//! names the step and, for HTTP failures, the status and a body excerpt.
//!
//! How the upload stays small and single-pass: each chunk of the body is sent
//! to a CommP hasher on a blocking thread (through a queue of
//! [`HASH_QUEUE_CHUNKS`] chunks) before it is handed to the HTTP connection,
//! so memory holds a few chunks whatever the size, and the PieceCID is ready
//! when the `PUT` ends. The limit is enforced while streaming: the chunk that
//! passes it aborts the `PUT`, and no finalize is sent. A body stream that
//! fails (the client went away) also aborts the `PUT` and abandons the upload
//! session; Curio expires abandoned sessions itself.
//!
//! What it is not: a signer. `extraData` (the EIP-712 authorisation) comes
//! from the caller as hex. It never retries a call that is not safe to repeat:
//! only `ping`, the GET polls and upload-session creation are retried; a
//! consumed body stream is never sent twice.
//!
//! Where things are: this file owns the client type ([`SpClient`]), its
//! settings ([`SpTimeouts`]), the payload limits and `ping`;
//! `error` the failure type ([`SpError`], [`Step`]); `call` the plumbing
//! every call shares (throttling, retries, polls, small answers, argument
//! checks); `upload` the piece upload (session, streamed `PUT`, finalize,
//! `find_piece`); `data_set` data-set creation and add-pieces with their
//! polls; `pull` the SP-to-SP pull of a second copy.
//!
//! Use:
//! ```ignore
//! let sp = SpClient::new("https://sp.example/", SpTimeouts::default())?;
//! let up = sp.upload_streaming(body_stream, MAX_UPLOAD_SIZE).await?;
//! sp.find_piece(&up.piece_cid).await?;
//! let tx = sp.add_pieces(data_set_id, &[up.piece_cid], &extra_data).await?;
//! let added = sp.wait_pieces_added(data_set_id, &tx).await?;
//! ```

mod call;
mod data_set;
mod error;
mod pull;
mod upload;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use url::Url;

use crate::piece::commp::MIN_PAYLOAD;

use call::expect_status;
pub use call::location_tx_hash;
pub use data_set::{judge_data_set_created, judge_pieces_added, PiecesAdded};
pub use error::{parse_retry_after, SpError, Step};
pub use pull::{PullAnswer, PullSource, PullStatus};
pub use upload::{
    judge_find_piece, upload_session_id, UploadOptions, UploadOutcome, HASH_QUEUE_CHUNKS,
};

/// Largest payload one piece holds: 1 GiB padded × 127/128 (Curio answers
/// 413 above it).
pub const MAX_UPLOAD_SIZE: u64 = 1_065_353_216;

/// Smallest payload Curio accepts (it answers 400 below it).
pub const MIN_UPLOAD_SIZE: u64 = MIN_PAYLOAD;

/// Timeouts, polling and retry settings. Defaults follow the reference
/// client (poll every 4 s, give up after 5 min) and Curio (30 min per
/// request).
#[derive(Clone, Debug)]
pub struct SpTimeouts {
    /// TCP and TLS connect.
    pub connect: Duration,
    /// Whole request for every call except the data `PUT`.
    pub request: Duration,
    /// Whole data `PUT`; Curio itself gives a request 30 minutes.
    pub upload: Duration,
    /// Pause between two status polls.
    pub poll_interval: Duration,
    /// Total time a status poll may take before [`SpError::PollTimeout`].
    pub poll_deadline: Duration,
    /// Extra attempts for calls safe to repeat (ping, session creation).
    pub retries: u32,
    /// Pause before the first retry; doubles each time.
    pub retry_backoff: Duration,
}

impl Default for SpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            upload: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(4),
            poll_deadline: Duration::from_secs(5 * 60),
            retries: 3,
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// A client of one provider's PDP API. Cheap to clone (shares its connection
/// pool).
#[derive(Clone, Debug)]
pub struct SpClient {
    base: Url,
    http: reqwest::Client,
    timeouts: SpTimeouts,
    /// Until when the provider asked us to stay away (`429` with
    /// `Retry-After`): Curio throttles `/pdp/*` per client IP, so every
    /// request of every clone of this client waits, not only the one that
    /// was refused.
    throttled_until: Arc<Mutex<Option<Instant>>>,
}

/// What a poll made of one answer.
#[derive(Debug, PartialEq, Eq)]
pub enum PollVerdict<T> {
    /// The final answer.
    Ready(T),
    /// Not final yet; the text says why, for the timeout error.
    Pending(String),
}

impl SpClient {
    /// A client for the provider at `service_url` (its PDP service URL, e.g.
    /// `https://sp.example/`; a path prefix is kept).
    pub fn new(service_url: &str, timeouts: SpTimeouts) -> Result<Self, SpError> {
        let invalid = |reason: String| SpError::InvalidServiceUrl {
            url: service_url.to_string(),
            reason,
        };
        let mut base = Url::parse(service_url).map_err(|e| invalid(e.to_string()))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(invalid("scheme must be http or https".into()));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("not a base URL".into()));
        }
        // Joining "pdp/..." must append to the path, not replace its last segment.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            base,
            http,
            timeouts,
            throttled_until: Arc::new(Mutex::new(None)),
        })
    }

    /// The service URL, with a trailing slash.
    pub fn service_url(&self) -> &Url {
        &self.base
    }

    /// The settings in force.
    pub fn timeouts(&self) -> &SpTimeouts {
        &self.timeouts
    }

    /// The same provider with other timeouts (sharing the connection pool).
    pub fn with_timeouts(&self, timeouts: SpTimeouts) -> SpClient {
        SpClient {
            base: self.base.clone(),
            http: self.http.clone(),
            timeouts,
            throttled_until: Arc::clone(&self.throttled_until),
        }
    }

    fn url(&self, step: Step, path: &str) -> Result<Url, SpError> {
        self.base.join(path).map_err(|e| SpError::InvalidArgument {
            step,
            reason: format!("URL path {path:?}: {e}"),
        })
    }

    /// `GET /pdp/ping`: `Ok` when the provider answers 200.
    pub async fn ping(&self) -> Result<(), SpError> {
        let url = self.url(Step::Ping, "pdp/ping")?;
        self.with_retries(|| async {
            let (status, body) = self
                .send_small(Step::Ping, self.http.get(url.clone()))
                .await?;
            expect_status(Step::Ping, status, &body, StatusCode::OK)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_url_keeps_its_prefix() {
        let sp = SpClient::new("http://sp.example/prefix", SpTimeouts::default()).unwrap();
        assert_eq!(
            sp.url(Step::Ping, "pdp/ping").unwrap().as_str(),
            "http://sp.example/prefix/pdp/ping"
        );
        assert!(SpClient::new("ftp://sp.example/", SpTimeouts::default()).is_err());
    }
}
