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
//! Use:
//! ```ignore
//! let sp = SpClient::new("https://sp.example/", SpTimeouts::default())?;
//! let up = sp.upload_streaming(body_stream, MAX_UPLOAD_SIZE).await?;
//! sp.find_piece(&up.piece_cid).await?;
//! let tx = sp.add_pieces(data_set_id, &[up.piece_cid], &extra_data).await?;
//! let added = sp.wait_pieces_added(data_set_id, &tx).await?;
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use url::Url;

use crate::piece::commp::{CommP, CommpError, Node, DEFAULT_WINDOW_PADDED, MIN_PAYLOAD};
use crate::piece::PieceCid;

/// Largest payload one piece holds: 1 GiB padded × 127/128 (Curio answers
/// 413 above it).
pub const MAX_UPLOAD_SIZE: u64 = 1_065_353_216;

/// Smallest payload Curio accepts (it answers 400 below it).
pub const MIN_UPLOAD_SIZE: u64 = MIN_PAYLOAD;

/// Chunks queued between the HTTP body and the CommP thread. Memory in flight
/// is about this many chunks of the caller's stream.
pub const HASH_QUEUE_CHUNKS: usize = 4;

/// Read size when the body is an [`AsyncRead`].
const READER_CHUNK: usize = 256 * 1024;

/// Most bytes of an answer body read for a small call; more is a broken
/// provider, and the excerpt in an error needs far less.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Characters of an answer body quoted in an error.
const EXCERPT_CHARS: usize = 200;

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

fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

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

/// Settings of one streaming upload.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Most payload bytes accepted; at most [`MAX_UPLOAD_SIZE`].
    pub size_limit: u64,
    /// Record the window layer of windows of this many padded bytes (a power
    /// of two); `None` skips it.
    pub layer_window_padded: Option<u64>,
    /// CommP threads; more than 1 buffers 8 MiB per thread.
    pub commp_threads: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            size_limit: MAX_UPLOAD_SIZE,
            layer_window_padded: Some(DEFAULT_WINDOW_PADDED),
            commp_threads: 1,
        }
    }
}

/// A finished upload: the provider holds the piece, parked under `piece_cid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadOutcome {
    /// The v2 PieceCID computed while streaming, accepted by the provider.
    pub piece_cid: PieceCid,
    /// Payload bytes sent.
    pub size: u64,
    /// Window roots, when [`UploadOptions::layer_window_padded`] was set.
    pub layer: Option<Vec<Node>>,
}

/// A confirmed add-pieces transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PiecesAdded {
    /// The data set the pieces joined.
    pub data_set_id: u64,
    /// The ids the chain gave the pieces, in request order.
    pub piece_ids: Vec<u64>,
    /// The transaction that landed on chain: Curio's `confirmedTxHash` when
    /// it replaced a stuck transaction by fee, else the one it was sent as.
    /// Receipts are read for this hash; Curio is polled with the original.
    pub tx_hash: String,
}

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
    fn note_retry_after(&self, status: StatusCode, headers: &reqwest::header::HeaderMap) {
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
    async fn created_location(
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

    /// Uploads `body` as one piece (three steps: session, streamed `PUT`,
    /// finalize with the PieceCID computed on the way) and returns its CID,
    /// size and 1 MiB window layer. `size_limit` (at most
    /// [`MAX_UPLOAD_SIZE`]) is enforced while streaming.
    pub async fn upload_streaming<S>(
        &self,
        body: S,
        size_limit: u64,
    ) -> Result<UploadOutcome, SpError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let options = UploadOptions {
            size_limit,
            ..UploadOptions::default()
        };
        self.upload_streaming_with(body, &options).await
    }

    /// [`upload_streaming`](Self::upload_streaming) from an [`AsyncRead`],
    /// read in 256 KiB chunks.
    pub async fn upload_reader<R>(
        &self,
        reader: R,
        options: &UploadOptions,
    ) -> Result<UploadOutcome, SpError>
    where
        R: AsyncRead + Send + 'static,
    {
        let reader = Box::pin(reader);
        let stream = futures_util::stream::unfold(Some(reader), |state| async move {
            let mut reader = state?;
            let mut buf = vec![0u8; READER_CHUNK];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(reader)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        self.upload_streaming_with(stream, options).await
    }

    /// [`upload_streaming`](Self::upload_streaming) with every setting.
    pub async fn upload_streaming_with<S>(
        &self,
        body: S,
        options: &UploadOptions,
    ) -> Result<UploadOutcome, SpError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let limit = options.size_limit;
        if !(MIN_UPLOAD_SIZE..=MAX_UPLOAD_SIZE).contains(&limit) {
            return Err(SpError::InvalidArgument {
                step: Step::UploadPiece,
                reason: format!(
                    "size limit {limit} is outside {MIN_UPLOAD_SIZE}..={MAX_UPLOAD_SIZE}"
                ),
            });
        }
        let mut hasher = CommP::with_threads(options.commp_threads);
        if let Some(window) = options.layer_window_padded {
            hasher = hasher.layer(window)?;
        }

        // Read the first 127 bytes before opening a session, so a too-small
        // body never leaves an orphan session at the provider.
        let mut input: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> = Box::pin(body);
        let mut head = Vec::new();
        let mut head_len = 0u64;
        while head_len < MIN_UPLOAD_SIZE {
            match input.next().await {
                Some(Ok(chunk)) => {
                    head_len += chunk.len() as u64;
                    head.push(chunk);
                }
                Some(Err(source)) => {
                    return Err(SpError::BodyFailed {
                        received: head_len,
                        source,
                    })
                }
                None => return Err(SpError::TooSmall { len: head_len }),
            }
        }
        if head_len > limit {
            return Err(SpError::TooLarge { limit });
        }

        let session = self.create_upload_session().await?;
        log::debug!("upload session {session}");

        let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(HASH_QUEUE_CHUNKS);
        let hash_task = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = hash_rx.blocking_recv() {
                hasher.update(&chunk);
            }
            let len = hasher.len();
            (len, hasher.finish_with_layer())
        });
        let shared = Arc::new(BodyShared {
            received: AtomicU64::new(0),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
            hash_tx: Mutex::new(Some(hash_tx)),
        });
        let tee = TeeBody {
            head: head.into_iter(),
            input,
            shared: Arc::clone(&shared),
            limit,
            done: false,
        };
        let body = futures_util::stream::unfold(tee, TeeBody::next_chunk);

        let put = self
            .http
            .put(session.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .timeout(self.timeouts.upload)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        // From here on the body must not feed the hasher or the wire: a body
        // still held by the connection (early answer) ends at its next poll.
        shared.stop.store(true, Ordering::SeqCst);
        shared.close_hasher();
        let received = shared.received.load(Ordering::SeqCst);

        if let Some(failure) = shared.take_failure() {
            match failure {
                BodyFailure::TooLarge => return Err(SpError::TooLarge { limit }),
                BodyFailure::Stream(source) => {
                    return Err(SpError::BodyFailed { received, source })
                }
                BodyFailure::Stopped => {}
            }
        }
        let response = put.map_err(|source| SpError::Transport {
            step: Step::UploadPiece,
            source,
        })?;
        let status = response.status();
        self.note_retry_after(status, response.headers());
        if status != StatusCode::NO_CONTENT {
            let body = read_capped(response).await.unwrap_or_default();
            return Err(status_error(Step::UploadPiece, status, &body));
        }

        let (hashed, result) = hash_task.await.map_err(|e| SpError::BadResponse {
            step: Step::UploadPiece,
            reason: format!("CommP thread failed: {e}"),
        })?;
        if hashed != received {
            return Err(SpError::BadResponse {
                step: Step::UploadPiece,
                reason: format!("provider answered 204 after {hashed} of {received} bytes"),
            });
        }
        let (piece_cid, layer) = result?;
        log::debug!("uploaded {received} bytes as {piece_cid}; finalizing");

        let finalize = self
            .http
            .post(session)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({ "pieceCid": piece_cid.to_string() }).to_string());
        let (status, body) = self.send_small(Step::FinalizeUpload, finalize).await?;
        expect_status(Step::FinalizeUpload, status, &body, StatusCode::OK)?;

        Ok(UploadOutcome {
            piece_cid,
            size: received,
            layer: options.layer_window_padded.map(|_| layer),
        })
    }

    /// Step 1: `POST /pdp/piece/uploads` → 201 with the session's `Location`.
    /// Safe to retry: an unused session costs the provider nothing.
    async fn create_upload_session(&self) -> Result<Url, SpError> {
        let step = Step::CreateUploadSession;
        let url = self.url(step, "pdp/piece/uploads")?;
        let location = self
            .with_retries(|| {
                let request = self.http.post(url.clone()).timeout(self.timeouts.request);
                self.created_location(step, request)
            })
            .await?;
        let uuid = upload_session_id(&location).ok_or_else(|| SpError::BadResponse {
            step,
            reason: format!("Location {location:?} is not /pdp/piece/uploads/{{uuid}}"),
        })?;
        self.url(step, &format!("pdp/piece/uploads/{uuid}"))
    }

    /// Polls `GET /pdp/piece?pieceCid=` until the provider has the piece
    /// parked (200), for at most [`SpTimeouts::poll_deadline`].
    pub async fn find_piece(&self, cid: &PieceCid) -> Result<(), SpError> {
        let step = Step::FindPiece;
        let mut url = self.url(step, "pdp/piece")?;
        let want = cid.to_string();
        url.query_pairs_mut().append_pair("pieceCid", &want);
        self.poll(step, url, |status, body| {
            judge_find_piece(status, body, &want)
        })
        .await
    }

    /// `POST /pdp/data-sets` with `{recordKeeper, extraData}`; returns the
    /// transaction hash to give [`wait_data_set_created`](Self::wait_data_set_created).
    /// Not retried: a repeat could create a second data set.
    pub async fn create_data_set(
        &self,
        record_keeper: &str,
        extra_data_hex: &str,
    ) -> Result<String, SpError> {
        let step = Step::CreateDataSet;
        let body = json!({
            "recordKeeper": address(step, record_keeper)?,
            "extraData": hex_data(step, extra_data_hex)?,
        });
        self.post_for_tx(step, "pdp/data-sets", body).await
    }

    /// Polls `GET /pdp/data-sets/created/{txHash}` until the data set exists
    /// and returns its id. A rejected transaction is final.
    pub async fn wait_data_set_created(&self, tx_hash: &str) -> Result<u64, SpError> {
        let step = Step::WaitDataSetCreated;
        let tx = tx_hash_arg(step, tx_hash)?;
        let url = self.url(step, &format!("pdp/data-sets/created/{tx}"))?;
        self.poll(step, url, |status, body| {
            judge_data_set_created(status, body, &tx)
        })
        .await
    }

    /// `POST /pdp/data-sets/{id}/pieces` with each piece as its own single
    /// sub-piece; returns the transaction hash. Not retried.
    pub async fn add_pieces(
        &self,
        data_set_id: u64,
        pieces: &[PieceCid],
        extra_data_hex: &str,
    ) -> Result<String, SpError> {
        let step = Step::AddPieces;
        let body = json!({
            "pieces": pieces_json(step, pieces)?,
            "extraData": hex_data(step, extra_data_hex)?,
        });
        self.post_for_tx(step, &format!("pdp/data-sets/{data_set_id}/pieces"), body)
            .await
    }

    /// Polls `GET /pdp/data-sets/{id}/pieces/added/{txHash}` until the
    /// pieces are added and returns their ids. A rejected transaction is final.
    pub async fn wait_pieces_added(
        &self,
        data_set_id: u64,
        tx_hash: &str,
    ) -> Result<PiecesAdded, SpError> {
        let step = Step::WaitPiecesAdded;
        let tx = tx_hash_arg(step, tx_hash)?;
        let url = self.url(
            step,
            &format!("pdp/data-sets/{data_set_id}/pieces/added/{tx}"),
        )?;
        self.poll(step, url, |status, body| {
            judge_pieces_added(status, body, &tx, data_set_id)
        })
        .await
    }

    /// `POST /pdp/data-sets/create-and-add`: one transaction that creates a
    /// data set holding `pieces`. Returns its hash; wait with
    /// [`wait_created_and_added`](Self::wait_created_and_added). Not retried.
    pub async fn create_and_add(
        &self,
        record_keeper: &str,
        pieces: &[PieceCid],
        extra_data_hex: &str,
    ) -> Result<String, SpError> {
        let step = Step::CreateAndAdd;
        let body = json!({
            "recordKeeper": address(step, record_keeper)?,
            "extraData": hex_data(step, extra_data_hex)?,
            "pieces": pieces_json(step, pieces)?,
        });
        self.post_for_tx(step, "pdp/data-sets/create-and-add", body)
            .await
    }

    /// Waits for a create-and-add transaction: the data set first, then its
    /// pieces (both polls use the same transaction hash, as the reference
    /// client does).
    pub async fn wait_created_and_added(&self, tx_hash: &str) -> Result<PiecesAdded, SpError> {
        let data_set_id = self.wait_data_set_created(tx_hash).await?;
        self.wait_pieces_added(data_set_id, tx_hash).await
    }

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

    /// A JSON `POST` answered 201 with a `Location` ending in a tx hash.
    async fn post_for_tx(&self, step: Step, path: &str, body: Value) -> Result<String, SpError> {
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
    async fn send_small(
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
    async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T, SpError>
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
    async fn poll<T>(
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

/// What stopped the body stream early.
enum BodyFailure {
    TooLarge,
    Stream(io::Error),
    /// The `PUT` already returned; the connection polled a leftover body.
    Stopped,
}

/// State shared by the upload call and its body stream.
struct BodyShared {
    received: AtomicU64,
    failure: Mutex<Option<BodyFailure>>,
    stop: AtomicBool,
    /// Taken (closing the queue) when the `PUT` returns, so the CommP thread
    /// ends even if the connection still holds the body.
    hash_tx: Mutex<Option<mpsc::Sender<Bytes>>>,
}

impl BodyShared {
    fn fail(&self, failure: BodyFailure) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(failure);
        }
        self.close_hasher();
    }

    fn take_failure(&self) -> Option<BodyFailure> {
        self.failure.lock().ok().and_then(|mut slot| slot.take())
    }

    fn close_hasher(&self) {
        if let Ok(mut tx) = self.hash_tx.lock() {
            tx.take();
        }
    }

    fn hasher(&self) -> Option<mpsc::Sender<Bytes>> {
        self.hash_tx.lock().ok().and_then(|tx| tx.clone())
    }
}

/// The `PUT` body: the caller's stream, counted, limited, and teed into the
/// CommP queue before each chunk goes to the wire.
struct TeeBody {
    head: std::vec::IntoIter<Bytes>,
    input: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    shared: Arc<BodyShared>,
    limit: u64,
    done: bool,
}

impl TeeBody {
    async fn next_chunk(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return self.abort(BodyFailure::Stopped, "upload stopped");
            }
            let next = match self.head.next() {
                Some(chunk) => Some(Ok(chunk)),
                None => self.input.next().await,
            };
            let chunk = match next {
                None => {
                    // The end: closing the queue lets the CommP thread finish.
                    self.shared.close_hasher();
                    return None;
                }
                Some(Err(e)) => return self.abort(BodyFailure::Stream(e), "body stream failed"),
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => chunk,
            };
            let total = self
                .shared
                .received
                .fetch_add(chunk.len() as u64, Ordering::SeqCst)
                + chunk.len() as u64;
            if total > self.limit {
                return self.abort(BodyFailure::TooLarge, "size limit passed");
            }
            let sent = match self.shared.hasher() {
                Some(tx) => tx.send(chunk.clone()).await.is_ok(),
                None => false,
            };
            if !sent {
                return self.abort(BodyFailure::Stopped, "upload stopped");
            }
            return Some((Ok(chunk), self));
        }
    }

    fn abort(
        mut self,
        failure: BodyFailure,
        why: &'static str,
    ) -> Option<(io::Result<Bytes>, Self)> {
        self.shared.fail(failure);
        self.done = true;
        Some((Err(io::Error::other(why)), self))
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
async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
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
fn excerpt(body: &[u8]) -> String {
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

fn status_error(step: Step, status: StatusCode, body: &[u8]) -> SpError {
    SpError::Status {
        step,
        status: status.as_u16(),
        body: excerpt(body),
    }
}

fn expect_status(
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

/// The upload session id at the end of a `POST /pdp/piece/uploads` answer's
/// `Location` (`.../pdp/piece/uploads/{uuid}`): hex digits and dashes only,
/// so it cannot change the path it is put into.
pub fn upload_session_id(location: &str) -> Option<&str> {
    location
        .trim_end_matches('/')
        .rsplit_once("/pdp/piece/uploads/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

/// The `0x` transaction hash a `201 Created` answer's `Location` ends in.
pub fn location_tx_hash(location: &str) -> Option<&str> {
    let hash = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    is_hex_prefixed(hash).then_some(hash)
}

/// One answer to `GET /pdp/piece?pieceCid=want`: 200 naming `want` is ready,
/// 202/404 and retryable statuses are pending, anything else is an error.
pub fn judge_find_piece(
    status: StatusCode,
    body: &[u8],
    want: &str,
) -> Result<PollVerdict<()>, SpError> {
    let step = Step::FindPiece;
    if status == StatusCode::OK {
        let value = parse_json(step, body)?;
        let found = value
            .get("pieceCid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if found != want {
            return Err(SpError::BadResponse {
                step,
                reason: format!("asked for {want}, provider answered {found:?}"),
            });
        }
        return Ok(PollVerdict::Ready(()));
    }
    pending_or_error(
        step,
        status,
        body,
        &[StatusCode::ACCEPTED, StatusCode::NOT_FOUND],
    )
}

/// One answer to `GET /pdp/data-sets/created/{tx}`: the new data set's id
/// once created; a rejected transaction is final.
pub fn judge_data_set_created(
    status: StatusCode,
    body: &[u8],
    tx: &str,
) -> Result<PollVerdict<u64>, SpError> {
    let step = Step::WaitDataSetCreated;
    let (value, tx_status) = match tx_status_answer(step, status, body, tx)? {
        Ok(answer) => answer,
        Err(pending) => return Ok(pending),
    };
    if value.get("dataSetCreated").and_then(Value::as_bool) == Some(true) {
        return parse_id(step, "dataSetId", value.get("dataSetId")).map(PollVerdict::Ready);
    }
    Ok(PollVerdict::Pending(format!(
        "transaction {tx_status}, data set not created yet"
    )))
}

/// One answer to `GET /pdp/data-sets/{data_set_id}/pieces/added/{tx}`: the
/// confirmed piece ids once added; a rejected transaction is final.
pub fn judge_pieces_added(
    status: StatusCode,
    body: &[u8],
    tx: &str,
    data_set_id: u64,
) -> Result<PollVerdict<PiecesAdded>, SpError> {
    let step = Step::WaitPiecesAdded;
    let (value, tx_status) = match tx_status_answer(step, status, body, tx)? {
        Ok(answer) => answer,
        Err(pending) => return Ok(pending),
    };
    if value.get("piecesAdded").and_then(Value::as_bool) != Some(true) {
        return Ok(PollVerdict::Pending(format!(
            "transaction {tx_status}, pieces not added yet"
        )));
    }
    let id = match value.get("dataSetId") {
        Some(v) => parse_id(step, "dataSetId", Some(v))?,
        None => data_set_id,
    };
    if id != data_set_id {
        return Err(SpError::BadResponse {
            step,
            reason: format!("asked about data set {data_set_id}, answer is for {id}"),
        });
    }
    let ids = value
        .get("confirmedPieceIds")
        .and_then(Value::as_array)
        .ok_or_else(|| SpError::BadResponse {
            step,
            reason: "piecesAdded without confirmedPieceIds".into(),
        })?
        .iter()
        .map(|v| parse_id(step, "confirmedPieceIds", Some(v)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PollVerdict::Ready(PiecesAdded {
        data_set_id: id,
        piece_ids: ids,
        tx_hash: landed_tx_hash(&value, tx),
    }))
}

/// The hash of the transaction that landed: `confirmedTxHash ?? txHash`
/// (Curio of 2026-08, `pdp/handlers.go`: a replace-by-fee lands under a new
/// hash), or `polled` when the answer names neither as `0x` hex.
fn landed_tx_hash(value: &Value, polled: &str) -> String {
    ["confirmedTxHash", "txHash"]
        .iter()
        .filter_map(|key| value.get(*key).and_then(Value::as_str))
        .find(|hash| is_hex_prefixed(hash))
        .unwrap_or(polled)
        .to_string()
}

/// The common part of a transaction-status answer: a non-200 is pending (404)
/// or an error; a rejected transaction is final. Gives the JSON and its
/// `txStatus`, or the pending verdict to return.
fn tx_status_answer<T>(
    step: Step,
    status: StatusCode,
    body: &[u8],
    tx: &str,
) -> Result<Result<(Value, String), PollVerdict<T>>, SpError> {
    if status != StatusCode::OK {
        return pending_or_error(step, status, body, &[StatusCode::NOT_FOUND]).map(Err);
    }
    let value = parse_json(step, body)?;
    let tx_status = value
        .get("txStatus")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    if tx_status == "rejected" {
        return Err(SpError::Rejected {
            step,
            tx_hash: tx.to_string(),
        });
    }
    Ok(Ok((value, tx_status)))
}

/// A non-200 poll answer: "not yet" for `pending` statuses and retryable
/// ones, an error otherwise.
fn pending_or_error<T>(
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

fn parse_json(step: Step, body: &[u8]) -> Result<Value, SpError> {
    serde_json::from_slice(body).map_err(|e| SpError::BadResponse {
        step,
        reason: format!("invalid JSON ({e}): {}", excerpt(body)),
    })
}

/// An id sent as a JSON number or a decimal string.
fn parse_id(step: Step, field: &str, value: Option<&Value>) -> Result<u64, SpError> {
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

fn is_hex_prefixed(s: &str) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `0x`-prefixed hex bytes (the prefix is added when missing).
fn hex_data(step: Step, s: &str) -> Result<String, SpError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SpError::InvalidArgument {
            step,
            reason: format!("extraData {:?} is not hex bytes", excerpt(s.as_bytes())),
        });
    }
    Ok(format!("0x{digits}"))
}

fn address(step: Step, s: &str) -> Result<&str, SpError> {
    if s.len() == 42 && is_hex_prefixed(s) {
        Ok(s)
    } else {
        Err(SpError::InvalidArgument {
            step,
            reason: format!("recordKeeper {s:?} is not a 0x address"),
        })
    }
}

fn tx_hash_arg(step: Step, s: &str) -> Result<String, SpError> {
    if is_hex_prefixed(s) {
        Ok(s.to_string())
    } else {
        Err(SpError::InvalidArgument {
            step,
            reason: format!("transaction hash {s:?} is not 0x hex"),
        })
    }
}

fn pieces_json(step: Step, pieces: &[PieceCid]) -> Result<Value, SpError> {
    if pieces.is_empty() {
        return Err(SpError::InvalidArgument {
            step,
            reason: "at least one piece is required".into(),
        });
    }
    if let Some(v1) = pieces.iter().find(|p| p.payload_size().is_none()) {
        return Err(SpError::InvalidArgument {
            step,
            reason: format!("{v1} is a v1 PieceCID; the provider needs v2"),
        });
    }
    Ok(Value::Array(
        pieces
            .iter()
            .map(|p| {
                let cid = p.to_string();
                json!({ "pieceCid": cid, "subPieces": [{ "subPieceCid": cid }] })
            })
            .collect(),
    ))
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

    #[test]
    fn the_landed_transaction_is_confirmed_tx_hash_else_tx_hash() {
        let polled = "0xaa";
        let both = json!({"txHash": "0xaa", "confirmedTxHash": "0xbb"});
        assert_eq!(landed_tx_hash(&both, polled), "0xbb");
        assert_eq!(landed_tx_hash(&json!({"txHash": "0xaa"}), polled), "0xaa");
        // Not hex: not trusted.
        let junk = json!({"txHash": "0xaa", "confirmedTxHash": "../x"});
        assert_eq!(landed_tx_hash(&junk, polled), "0xaa");
        assert_eq!(landed_tx_hash(&json!({}), polled), "0xaa");
    }

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
    fn service_url_keeps_its_prefix() {
        let sp = SpClient::new("http://sp.example/prefix", SpTimeouts::default()).unwrap();
        assert_eq!(
            sp.url(Step::Ping, "pdp/ping").unwrap().as_str(),
            "http://sp.example/prefix/pdp/ping"
        );
        assert!(SpClient::new("ftp://sp.example/", SpTimeouts::default()).is_err());
    }

    #[test]
    fn hex_arguments_are_checked() {
        assert_eq!(hex_data(Step::AddPieces, "abcd").unwrap(), "0xabcd");
        assert_eq!(hex_data(Step::AddPieces, "0x").unwrap(), "0x");
        assert!(hex_data(Step::AddPieces, "0xabc").is_err());
        assert!(address(Step::CreateDataSet, "0x1234").is_err());
    }
}
