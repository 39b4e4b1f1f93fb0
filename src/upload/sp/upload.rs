//! The piece upload: create an upload session, stream the body in one
//! `PUT` while CommP is computed beside it, finalize with the PieceCID, and
//! poll until the provider has the piece parked (`find_piece`). Owns the
//! body tee that feeds the hasher and enforces the size limit. Data sets and
//! pulls are elsewhere.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use url::Url;

use crate::piece::commp::{CommP, Node, DEFAULT_WINDOW_PADDED};
use crate::piece::PieceCid;

use super::call::{expect_status, parse_json, pending_or_error, read_capped, status_error};
use super::{PollVerdict, SpClient, SpError, Step, MAX_UPLOAD_SIZE, MIN_UPLOAD_SIZE};
/// Chunks queued between the HTTP body and the CommP thread. Memory in flight
/// is about this many chunks of the caller's stream.
pub const HASH_QUEUE_CHUNKS: usize = 4;

/// Read size when the body is an [`AsyncRead`].
const READER_CHUNK: usize = 256 * 1024;
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

impl SpClient {
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
