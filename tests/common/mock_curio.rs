//! A mock Curio provider for tests: a real HTTP/1.1 server on 127.0.0.1
//! speaking the PDP API that `upload::sp` uses, plus `GET /piece/{cid}` so the
//! proxy can use it as a provider fallback.
//!
//! What it is: a hand-rolled server on its own thread and Tokio runtime
//! (so it works from sync and async tests of any flavour). It accepts
//! `Content-Length` and chunked bodies with keep-alive, stores each upload
//! session's bytes in a temp file while computing CommP on the fly (memory
//! stays small for 1 GiB uploads), and answers like Curio: `PUT` 400 under
//! 127 bytes, 413 over the maximum (at once, without reading the rest), 404
//! for an unknown session; finalize 400 unless the CID is v2 and equals the
//! CommP of the bytes received. Data-set creation, add-pieces and
//! create-and-add answer 201 with a fake `0x` tx hash in `Location`; their
//! status polls answer "pending" [`MockConfig::pending_polls`] times, then
//! "confirmed" (or "rejected" when told to).
//!
//! `POST /pdp/piece/pull` (SP-to-SP pull, Curio of 2026-08) really fetches
//! each `sourceUrl` with a plain HTTP `GET` (exactly 200 accepted, like
//! Curio's puller), re-hashes the bytes (CommP) and parks the piece only when
//! they match its PieceCID; the call is idempotent on `extraData` and answers
//! `{status, pieces:[{pieceCid, status}]}` (pending, inProgress, complete,
//! failed; overall the worst), 202 until final, then 200.
//!
//! Linked to a mock chain (`common_rpc::chain_with` posts `/mock/chain`),
//! it sends each data-set transaction to that chain (`eth_sendTransaction`
//! of PDPVerifier `createDataSet` / `addPieces`, as Curio's `pdp/handlers*.go`
//! build them) and, when the chain reverts (a signature that is not the
//! payer's, funds that cannot cover the new lockup), answers what Curio
//! relays: `500 Failed to send transaction: failed to estimate gas:
//! execution reverted: <reason>`. As Curio does (`pdp/handlers_create.go`),
//! it answers 403 to a `recordKeeper` that is not the network's FWSS, and
//! throttles per IP (`pdp/ip_offense_throttle.go`, curio e0294b0f of
//! 2026-08-20): an add-pieces to a data set it does not have is an offence;
//! the 5th within a minute blocks the IP for 5 minutes, every `/pdp/*`
//! request then answered `429` with `Retry-After` (whole seconds left, at
//! least 1). [`MockConfig::throttle`] shortens the clock for tests.
//!
//! What it is not: a PDP prover or a chain. Nothing persists after drop.
//!
//! Use: `let sp = MockCurio::start();` then point a client at `sp.url()`;
//! `sp.fail(MockStep::Upload, 500)` or `sp.configure(|c| c.delay = ..)` to
//! misbehave; assert with `sp.requests()`, `sp.sessions()`, `sp.piece_bytes()`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use beam_edge::piece::commp::CommP;
use beam_edge::piece::PieceCid;

/// Curio's maximum piece payload: 1 GiB padded × 127/128.
pub const CURIO_MAX_UPLOAD: u64 = 1_065_353_216;

/// The routes, for failure injection ([`MockCurio::fail`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MockStep {
    /// `GET /pdp/ping`.
    Ping,
    /// `POST /pdp/piece/uploads`.
    CreateSession,
    /// `PUT /pdp/piece/uploads/{uuid}`.
    Upload,
    /// `POST /pdp/piece/uploads/{uuid}`.
    Finalize,
    /// `GET /pdp/piece?pieceCid=`.
    FindPiece,
    /// `POST /pdp/data-sets`.
    CreateDataSet,
    /// `GET /pdp/data-sets/created/{tx}`.
    DataSetStatus,
    /// `POST /pdp/data-sets/{id}/pieces`.
    AddPieces,
    /// `GET /pdp/data-sets/{id}/pieces/added/{tx}`.
    PiecesAddedStatus,
    /// `POST /pdp/data-sets/create-and-add`.
    CreateAndAdd,
    /// `GET`/`HEAD /piece/{cid}`.
    GetPiece,
    /// `POST /pdp/piece/pull`.
    PullPieces,
}

/// Behaviour switches; change them any time with [`MockCurio::configure`].
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Largest `PUT` body accepted; more is answered 413.
    pub max_upload: u64,
    /// Status polls answered "pending" before the final answer.
    pub pending_polls: u32,
    /// `GET /pdp/piece` answers 202 this many times for a parked piece
    /// before 200.
    pub find_piece_pending: u32,
    /// New data-set creations end "rejected".
    pub reject_create: bool,
    /// New add-pieces transactions end "rejected".
    pub reject_add: bool,
    /// Ids in status JSON as decimal strings instead of numbers.
    pub ids_as_strings: bool,
    /// Pause before every answer.
    pub delay: Duration,
    /// Store and hash uploaded bytes. `false` only counts them (for
    /// throughput runs) and finalize then accepts any v2 CID of the right size.
    pub verify_uploads: bool,
    /// Pulls end "failed" without fetching anything.
    pub pull_fails: bool,
    /// First data set id minus one (two mocks in one test keep ids apart).
    pub data_set_base: u64,
    /// Curio's offence policy for add-pieces to a missing data set:
    /// (offences, window, block). Curio: (5, 1 min, 5 min).
    pub throttle: (u32, Duration, Duration),
    /// Status answers also carry `confirmedTxHash`: the transaction landed
    /// under another hash (Curio replaced it by fee).
    pub replace_by_fee: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            max_upload: CURIO_MAX_UPLOAD,
            pending_polls: 1,
            find_piece_pending: 0,
            reject_create: false,
            reject_add: false,
            ids_as_strings: false,
            delay: Duration::ZERO,
            verify_uploads: true,
            pull_fails: false,
            data_set_base: 4000,
            throttle: (5, Duration::from_secs(60), Duration::from_secs(300)),
            replace_by_fee: false,
        }
    }
}

/// One request as the mock saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path with query.
    pub path: String,
    /// The body, when it was JSON.
    pub json: Option<Value>,
    /// Body bytes read (stored, for an upload).
    pub body_len: u64,
    /// The status answered; `None` when the client aborted the request.
    pub status: Option<u16>,
}

/// An upload session's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSession {
    /// The session id in `/pdp/piece/uploads/{uuid}`.
    pub uuid: String,
    /// Bytes stored from `PUT` bodies.
    pub received: u64,
    /// The `PUT` body ended properly (and was accepted).
    pub complete: bool,
    /// The client dropped the `PUT` mid-body.
    pub aborted: bool,
    /// The CID accepted at finalize.
    pub finalized: Option<String>,
}

struct Session {
    info: UploadSession,
    path: PathBuf,
    computed: Option<PieceCid>,
}

struct Tx {
    data_set_id: u64,
    creates: bool,
    piece_ids: Option<Vec<u64>>,
    rejected_create: bool,
    rejected_add: bool,
    created_polls: u32,
    added_polls: u32,
}

struct Failure {
    status: u16,
    remaining: Option<u32>,
}

/// Where this provider's transactions run (`POST /mock/chain`).
#[derive(Clone, Debug)]
struct ChainLink {
    rpc_url: String,
    /// The provider's address: the transactions' sender.
    from: String,
    /// The network's FWSS: the only record keeper allowed.
    fwss: String,
}

/// Curio's `ipOffenseState`.
#[derive(Clone, Copy, Debug)]
struct Offences {
    hits: u32,
    window_start: std::time::Instant,
    blocked_until: Option<std::time::Instant>,
}

#[derive(Default)]
struct State {
    chain: Option<ChainLink>,
    offences: HashMap<std::net::IpAddr, Offences>,
    config: MockConfig,
    failures: HashMap<MockStep, Failure>,
    requests: Vec<RecordedRequest>,
    sessions: HashMap<String, Session>,
    /// Finalized pieces: CID string → (file, size).
    pieces: HashMap<String, (PathBuf, u64)>,
    find_polls: HashMap<String, u32>,
    txs: HashMap<String, Tx>,
    data_sets: HashMap<u64, Vec<(u64, String)>>,
    /// Pull jobs by `extraData`: per piece (CID, status).
    pulls: HashMap<String, Vec<(String, &'static str)>>,
    next_data_set: u64,
    next_piece: u64,
    counter: u64,
}

struct Shared {
    state: Mutex<State>,
    dir: PathBuf,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the mock's state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running mock; stops and deletes its files on drop.
pub struct MockCurio {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl MockCurio {
    /// Starts a mock with the default [`MockConfig`].
    pub fn start() -> Self {
        Self::start_with(MockConfig::default())
    }

    /// Starts a mock on 127.0.0.1 with an OS-chosen port.
    pub fn start_with(config: MockConfig) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mock-curio-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("mock-curio temp dir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("mock-curio bind");
        listener
            .set_nonblocking(true)
            .expect("mock-curio nonblocking");
        let addr = listener.local_addr().expect("mock-curio addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_data_set: config.data_set_base,
                config,
                next_piece: 1,
                ..State::default()
            }),
            dir,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mock-curio".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("mock-curio runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("mock-curio listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, server) => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("mock-curio thread");
        Self {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The service URL, `http://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the behaviour for the next requests.
    pub fn configure(&self, change: impl FnOnce(&mut MockConfig)) {
        change(&mut self.shared.lock().config);
    }

    /// Answers every request of `step` with `status` (body drained first).
    pub fn fail(&self, step: MockStep, status: u16) {
        self.shared.lock().failures.insert(
            step,
            Failure {
                status,
                remaining: None,
            },
        );
    }

    /// Answers the next `times` requests of `step` with `status`.
    pub fn fail_times(&self, step: MockStep, status: u16, times: u32) {
        self.shared.lock().failures.insert(
            step,
            Failure {
                status,
                remaining: Some(times),
            },
        );
    }

    /// Stops every injected failure.
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
    }

    /// Every request so far, in arrival order of their answers.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests whose method is `method` and whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// Every upload session.
    pub fn sessions(&self) -> Vec<UploadSession> {
        self.shared
            .lock()
            .sessions
            .values()
            .map(|s| s.info.clone())
            .collect()
    }

    /// The bytes of a finalized piece.
    pub fn piece_bytes(&self, cid: &str) -> Option<Vec<u8>> {
        let path = self.piece_path(cid)?;
        std::fs::read(path).ok()
    }

    /// The file holding a finalized piece.
    pub fn piece_path(&self, cid: &str) -> Option<PathBuf> {
        self.shared.lock().pieces.get(cid).map(|(p, _)| p.clone())
    }

    /// Piece ids and CIDs of a data set, once created.
    pub fn data_set_pieces(&self, data_set_id: u64) -> Option<Vec<(u64, String)>> {
        self.shared.lock().data_sets.get(&data_set_id).cloned()
    }
}

impl Drop for MockCurio {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.shared.dir);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(stream, peer.ip(), Arc::clone(&shared)));
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, key: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// What a handler did: the answer's status (`None`: the client went away
/// mid-body) and whether the connection can take another request.
struct Handled {
    /// Already in the request log (every answered request is).
    recorded: bool,
    keep_alive: bool,
    /// Body bytes read or stored.
    body_len: u64,
}

type Reader = BufReader<OwnedReadHalf>;

async fn serve_connection(stream: TcpStream, peer: std::net::IpAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    loop {
        let head = match read_head(&mut rd).await {
            Ok(Some(head)) => head,
            _ => return,
        };
        let mut body = match BodyReader::for_head(&head) {
            Ok(body) => body,
            Err(_) => {
                let _ = respond(&mut wr, 400, &[], b"bad framing", false).await;
                return;
            }
        };
        let handled = match handle(&shared, peer, &head, &mut body, &mut rd, &mut wr).await {
            Ok(handled) => handled,
            Err(_) => Handled {
                recorded: false,
                keep_alive: false,
                body_len: 0,
            },
        };
        if !handled.recorded {
            record(&shared, &head, None, None, handled.body_len);
        }
        if !handled.keep_alive
            || !body.finished
            || head
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

async fn read_head(rd: &mut Reader) -> io::Result<Option<Head>> {
    let mut line = String::new();
    // Tolerate blank lines between requests.
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let mut head = Head {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(Some(head));
        }
        if let Some((name, value)) = l.split_once(':') {
            head.headers
                .push((name.trim().to_string(), value.trim().to_string()));
        }
        if head.headers.len() > 100 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many headers",
            ));
        }
    }
}

/// Reads a request body framed by `Content-Length` or chunked encoding.
struct BodyReader {
    chunked: bool,
    /// Bytes left in the body (`Content-Length`) or in the current chunk.
    remaining: u64,
    /// Chunked: a chunk's data was read and its CRLF is due.
    after_chunk: bool,
    finished: bool,
}

impl BodyReader {
    fn for_head(head: &Head) -> io::Result<Self> {
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = match head.header("content-length") {
            Some(v) if !chunked => v
                .parse::<u64>()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?,
            _ => 0,
        };
        Ok(Self {
            chunked,
            remaining: length,
            after_chunk: false,
            finished: !chunked && length == 0,
        })
    }

    /// The declared length, when not chunked.
    fn declared(&self) -> Option<u64> {
        (!self.chunked).then_some(self.remaining)
    }

    /// Next body bytes into `buf`; `Ok(0)` at the end of the body,
    /// `UnexpectedEof` when the connection ends first.
    async fn read(&mut self, rd: &mut Reader, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        if self.chunked && self.remaining == 0 {
            let mut line = String::new();
            if self.after_chunk {
                read_line(rd, &mut line).await?;
                self.after_chunk = false;
            }
            line.clear();
            read_line(rd, &mut line).await?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size.trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    line.clear();
                    read_line(rd, &mut line).await?;
                    if line.trim().is_empty() {
                        break;
                    }
                }
                self.finished = true;
                return Ok(0);
            }
            self.remaining = size;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = rd.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        if self.remaining == 0 {
            if self.chunked {
                self.after_chunk = true;
            } else {
                self.finished = true;
            }
        }
        Ok(n)
    }

    /// Reads and discards the rest of the body; returns its length.
    async fn drain(&mut self, rd: &mut Reader) -> io::Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = self.read(rd, &mut buf).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// Reads a whole small body (at most 4 MiB).
    async fn read_all(&mut self, rd: &mut Reader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read(rd, &mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() > 4 << 20 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
            }
        }
    }
}

async fn read_line(rd: &mut Reader, line: &mut String) -> io::Result<()> {
    if rd.read_line(line).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn write_head(
    wr: &mut OwnedWriteHalf,
    status: u16,
    headers: &[(&str, String)],
    content_length: Option<u64>,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(len) = content_length {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    wr.write_all(head.as_bytes()).await
}

async fn respond(
    wr: &mut OwnedWriteHalf,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let len = if status == 204 {
        None
    } else {
        Some(body.len() as u64)
    };
    write_head(wr, status, headers, len, keep_alive).await?;
    if status != 204 {
        wr.write_all(body).await?;
    }
    wr.flush().await
}

fn json_headers() -> [(&'static str, String); 1] {
    [("Content-Type", "application/json".to_string())]
}

fn text_headers() -> [(&'static str, String); 1] {
    [("Content-Type", "text/plain; charset=utf-8".to_string())]
}

fn step_of(method: &str, path: &str) -> Option<MockStep> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match (method, segs.as_slice()) {
        ("GET", ["pdp", "ping"]) => MockStep::Ping,
        ("POST", ["pdp", "piece", "uploads"]) => MockStep::CreateSession,
        ("PUT", ["pdp", "piece", "uploads", _]) => MockStep::Upload,
        ("POST", ["pdp", "piece", "uploads", _]) => MockStep::Finalize,
        ("GET", ["pdp", "piece"]) => MockStep::FindPiece,
        ("POST", ["pdp", "data-sets"]) => MockStep::CreateDataSet,
        ("GET", ["pdp", "data-sets", "created", _]) => MockStep::DataSetStatus,
        ("POST", ["pdp", "data-sets", "create-and-add"]) => MockStep::CreateAndAdd,
        ("POST", ["pdp", "data-sets", _, "pieces"]) => MockStep::AddPieces,
        ("GET", ["pdp", "data-sets", _, "pieces", "added", _]) => MockStep::PiecesAddedStatus,
        ("GET" | "HEAD", ["piece", _]) => MockStep::GetPiece,
        ("POST", ["pdp", "piece", "pull"]) => MockStep::PullPieces,
        _ => return None,
    })
}

/// A pseudo-random 64-bit value from a counter (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fake_tx_hash(state: &mut State) -> String {
    state.counter += 1;
    let c = state.counter;
    format!(
        "0x{:016x}{:016x}{:016x}{:016x}",
        mix(c),
        mix(c ^ 1 << 40),
        mix(c ^ 2 << 40),
        mix(c ^ 3 << 40)
    )
}

fn fake_uuid(state: &mut State) -> String {
    state.counter += 1;
    let a = mix(state.counter);
    let b = mix(!state.counter);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn id_json(id: u64, as_string: bool) -> Value {
    if as_string {
        json!(id.to_string())
    } else {
        json!(id)
    }
}

async fn handle(
    shared: &Arc<Shared>,
    peer: std::net::IpAddr,
    head: &Head,
    body: &mut BodyReader,
    rd: &mut Reader,
    wr: &mut OwnedWriteHalf,
) -> io::Result<Handled> {
    let path = head.path().to_string();
    if head.method == "POST" && path == "/mock/chain" {
        // The mock chain's link (not a Curio route; not recorded).
        let raw = body.read_all(rd).await?;
        let link: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let field = |k: &str| link.get(k).and_then(Value::as_str).map(str::to_string);
        if let (Some(rpc_url), Some(from), Some(fwss)) =
            (field("rpcUrl"), field("from"), field("fwss"))
        {
            shared.lock().chain = Some(ChainLink {
                rpc_url,
                from,
                fwss,
            });
        }
        respond(wr, 204, &[], b"", true).await?;
        return Ok(Handled {
            recorded: true,
            keep_alive: true,
            body_len: raw.len() as u64,
        });
    }
    if path.starts_with("/pdp/") {
        // Curio's IPOffenseThrottle middleware: a blocked IP gets 429 on
        // every /pdp route, before its handler runs.
        let left = {
            let state = shared.lock();
            state
                .offences
                .get(&peer)
                .and_then(|o| o.blocked_until)
                .and_then(|until| until.checked_duration_since(std::time::Instant::now()))
        };
        if let Some(left) = left.filter(|d| !d.is_zero()) {
            let len = body.drain(rd).await?;
            return throttled(shared, head, wr, left, len).await;
        }
    }
    let step = step_of(&head.method, &path);
    let (delay, injected) = {
        let mut state = shared.lock();
        let injected = step.and_then(|s| {
            let failure = state.failures.get_mut(&s)?;
            let status = failure.status;
            match &mut failure.remaining {
                Some(0) => return None,
                Some(n) => *n -= 1,
                None => {}
            }
            Some(status)
        });
        (state.config.delay, injected)
    };

    let Some(step) = step else {
        let len = body.drain(rd).await?;
        tokio::time::sleep(delay).await;
        return answer(
            shared,
            head,
            wr,
            404,
            &text_headers(),
            b"no such route",
            true,
            None,
            len,
        )
        .await;
    };
    if step == MockStep::Upload && injected.is_none() {
        return upload(shared, head, body, rd, wr, &path, delay).await;
    }

    let raw = if step == MockStep::Upload {
        Vec::new()
    } else {
        body.read_all(rd).await?
    };
    let drained = if step == MockStep::Upload {
        body.drain(rd).await?
    } else {
        0
    };
    let json_body: Option<Value> = serde_json::from_slice(&raw).ok();
    let body_len = raw.len() as u64 + drained;
    tokio::time::sleep(delay).await;

    if let Some(status) = injected {
        let text = format!("mock-curio: injected failure for {step:?}");
        return answer(
            shared,
            head,
            wr,
            status,
            &text_headers(),
            text.as_bytes(),
            true,
            json_body,
            body_len,
        )
        .await;
    }

    let (status, headers, reply): (u16, Vec<(&str, String)>, Vec<u8>) = match step {
        MockStep::Ping => (200, vec![], Vec::new()),
        MockStep::CreateSession => {
            let mut state = shared.lock();
            let uuid = fake_uuid(&mut state);
            let file = shared.dir.join(format!("{uuid}.upload"));
            state.sessions.insert(
                uuid.clone(),
                Session {
                    info: UploadSession {
                        uuid: uuid.clone(),
                        received: 0,
                        complete: false,
                        aborted: false,
                        finalized: None,
                    },
                    path: file,
                    computed: None,
                },
            );
            (
                201,
                vec![("Location", format!("/pdp/piece/uploads/{uuid}"))],
                Vec::new(),
            )
        }
        MockStep::Finalize => finalize(shared, &path, json_body.as_ref()),
        MockStep::FindPiece => {
            let cid = head.query("pieceCid").unwrap_or("").to_string();
            let mut state = shared.lock();
            let pending = state.config.find_piece_pending;
            if !state.pieces.contains_key(&cid) {
                (404, text_headers().to_vec(), b"piece not found".to_vec())
            } else {
                let polls = state.find_polls.entry(cid.clone()).or_insert(0);
                *polls += 1;
                if *polls <= pending {
                    (
                        202,
                        text_headers().to_vec(),
                        b"piece is being processed".to_vec(),
                    )
                } else {
                    (
                        200,
                        json_headers().to_vec(),
                        json!({ "pieceCid": cid }).to_string().into_bytes(),
                    )
                }
            }
        }
        MockStep::CreateDataSet | MockStep::CreateAndAdd | MockStep::AddPieces => {
            match new_transaction(shared, peer, step, &path, json_body.as_ref()).await {
                Ok(reply) => reply,
                Err(block) => {
                    return throttled(shared, head, wr, block, body_len).await;
                }
            }
        }
        MockStep::DataSetStatus => data_set_status(shared, &path),
        MockStep::PiecesAddedStatus => pieces_added_status(shared, &path),
        MockStep::GetPiece => return get_piece(shared, head, wr, &path).await,
        MockStep::PullPieces => pull_pieces(shared, json_body.as_ref()),
        MockStep::Upload => (405, vec![], Vec::new()),
    };
    answer(
        shared, head, wr, status, &headers, &reply, true, json_body, body_len,
    )
    .await
}

fn record(shared: &Shared, head: &Head, status: Option<u16>, json: Option<Value>, body_len: u64) {
    shared.lock().requests.push(RecordedRequest {
        method: head.method.clone(),
        path: head.target.clone(),
        json,
        body_len,
        status,
    });
}

/// Records the request, then answers it: a client that has its answer also
/// finds the request in [`MockCurio::requests`].
#[allow(clippy::too_many_arguments)]
async fn answer(
    shared: &Shared,
    head: &Head,
    wr: &mut OwnedWriteHalf,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
    json: Option<Value>,
    body_len: u64,
) -> io::Result<Handled> {
    record(shared, head, Some(status), json, body_len);
    respond(wr, status, headers, body, keep_alive).await?;
    Ok(Handled {
        recorded: true,
        keep_alive,
        body_len,
    })
}

fn text(status: u16, msg: &str) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    (status, text_headers().to_vec(), msg.as_bytes().to_vec())
}

async fn upload(
    shared: &Arc<Shared>,
    head: &Head,
    body: &mut BodyReader,
    rd: &mut Reader,
    wr: &mut OwnedWriteHalf,
    path: &str,
    delay: Duration,
) -> io::Result<Handled> {
    let uuid = path.rsplit('/').next().unwrap_or("").to_string();
    let found = {
        let state = shared.lock();
        state.sessions.get(&uuid).map(|s| {
            (
                s.info.complete,
                s.path.clone(),
                state.config.max_upload,
                state.config.verify_uploads,
            )
        })
    };
    let (file_path, max, verify) = match found {
        Some((false, path, max, verify)) => (path, max, verify),
        Some((true, ..)) => {
            let len = body.drain(rd).await?;
            return answer(
                shared,
                head,
                wr,
                409,
                &text_headers(),
                b"upload already complete",
                true,
                None,
                len,
            )
            .await;
        }
        None => {
            let len = body.drain(rd).await?;
            return answer(
                shared,
                head,
                wr,
                404,
                &text_headers(),
                b"upload session not found",
                true,
                None,
                len,
            )
            .await;
        }
    };
    if body.declared().is_some_and(|len| len > max) {
        return too_large(shared, head, wr, rd, body, 0).await;
    }
    let mut file = if verify {
        Some(File::create(&file_path)?)
    } else {
        None
    };
    let mut commp = CommP::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let n = match body.read(rd, &mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                let mut state = shared.lock();
                if let Some(s) = state.sessions.get_mut(&uuid) {
                    s.info.aborted = true;
                }
                return Ok(Handled {
                    recorded: false,
                    keep_alive: false,
                    body_len: received,
                });
            }
        };
        if received + n as u64 > max {
            return too_large(shared, head, wr, rd, body, received).await;
        }
        received += n as u64;
        if let Some(file) = file.as_mut() {
            file.write_all(&buf[..n])?;
            commp.update(&buf[..n]);
        }
        if let Some(s) = shared.lock().sessions.get_mut(&uuid) {
            s.info.received = received;
        }
    }
    tokio::time::sleep(delay).await;
    if received < 127 {
        return answer(
            shared,
            head,
            wr,
            400,
            &text_headers(),
            b"piece data must be at least 127 bytes",
            true,
            None,
            received,
        )
        .await;
    }
    let computed = if verify { commp.finish().ok() } else { None };
    if let Some(s) = shared.lock().sessions.get_mut(&uuid) {
        s.info.complete = true;
        s.computed = computed;
    }
    answer(shared, head, wr, 204, &[], b"", true, None, received).await
}

/// Answers 413 before the body is read, then lets the client see it: stop
/// writing, and swallow what it still sends for a moment so the kernel does
/// not reset the connection under the answer.
async fn too_large(
    shared: &Arc<Shared>,
    head: &Head,
    wr: &mut OwnedWriteHalf,
    rd: &mut Reader,
    body: &mut BodyReader,
    stored: u64,
) -> io::Result<Handled> {
    let handled = answer(
        shared,
        head,
        wr,
        413,
        &text_headers(),
        b"piece data exceeds the maximum size",
        false,
        None,
        stored,
    )
    .await?;
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), body.drain(rd)).await;
    Ok(handled)
}

fn finalize(
    shared: &Arc<Shared>,
    path: &str,
    json_body: Option<&Value>,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let uuid = path.rsplit('/').next().unwrap_or("");
    let Some(cid_str) = json_body
        .and_then(|v| v.get("pieceCid"))
        .and_then(Value::as_str)
    else {
        return text(400, "body must be JSON {\"pieceCid\": ...}");
    };
    let Ok(cid) = cid_str.parse::<PieceCid>() else {
        return text(400, "invalid pieceCid");
    };
    if cid.payload_size().is_none() {
        return text(400, "pieceCid must be a v2 PieceCID");
    }
    let mut state = shared.lock();
    let verify = state.config.verify_uploads;
    let Some(session) = state.sessions.get_mut(uuid) else {
        return text(404, "upload session not found");
    };
    if !session.info.complete {
        return text(400, "no complete upload in this session");
    }
    let matches = match &session.computed {
        Some(computed) => *computed == cid,
        None => !verify && cid.payload_size() == Some(session.info.received),
    };
    if !matches {
        let computed = session
            .computed
            .as_ref()
            .map_or("?".into(), |c| c.to_string());
        return text(400, &format!("pieceCid mismatch: computed {computed}"));
    }
    session.info.finalized = Some(cid_str.to_string());
    let entry = (session.path.clone(), session.info.received);
    state.pieces.insert(cid_str.to_string(), entry);
    (
        200,
        json_headers().to_vec(),
        json!({ "pieceCid": cid_str }).to_string().into_bytes(),
    )
}

/// Validates `pieces` of an add or create-and-add body: each a parked v2 CID.
fn parse_pieces(state: &State, body: &Value) -> Result<Vec<String>, String> {
    let pieces = body
        .get("pieces")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or("pieces must be a non-empty array")?;
    let mut out = Vec::new();
    for piece in pieces {
        let cid = piece
            .get("pieceCid")
            .and_then(Value::as_str)
            .ok_or("each piece needs a pieceCid")?;
        let subs = piece
            .get("subPieces")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
            .ok_or("each piece needs subPieces")?;
        if subs
            .iter()
            .any(|s| s.get("subPieceCid").and_then(Value::as_str).is_none())
        {
            return Err("each sub-piece needs a subPieceCid".into());
        }
        if !state.pieces.contains_key(cid) {
            return Err(format!("piece {cid} not found"));
        }
        out.push(cid.to_string());
    }
    Ok(out)
}

type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// Curio's `respondIPThrottled`: 429, `Retry-After` in whole seconds (at
/// least 1), the offence's reason as the body.
async fn throttled(
    shared: &Shared,
    head: &Head,
    wr: &mut OwnedWriteHalf,
    left: Duration,
    body_len: u64,
) -> io::Result<Handled> {
    let seconds = left.as_secs().max(1);
    let headers = [
        ("Content-Type", "text/plain; charset=utf-8".to_string()),
        ("Retry-After", seconds.to_string()),
    ];
    answer(
        shared,
        head,
        wr,
        429,
        &headers,
        b"too many requests for unavailable data sets\n",
        true,
        None,
        body_len,
    )
    .await
}

/// Curio's `IPOffenseThrottle.Record` for `bad_dataset_add`: `Some(block)`
/// once this offence blocks the IP.
fn record_offence(state: &mut State, peer: std::net::IpAddr) -> Option<Duration> {
    let (hits, window, block) = state.config.throttle;
    let now = std::time::Instant::now();
    let entry = state.offences.entry(peer).or_insert(Offences {
        hits: 0,
        window_start: now,
        blocked_until: None,
    });
    if let Some(until) = entry.blocked_until.filter(|u| *u > now) {
        return Some(until - now);
    }
    if now.duration_since(entry.window_start) >= window {
        entry.hits = 0;
        entry.window_start = now;
    }
    entry.hits += 1;
    if entry.hits < hits {
        return None;
    }
    entry.blocked_until = Some(now + block);
    entry.hits = 0;
    entry.window_start = now;
    Some(block)
}

alloy::sol! {
    /// PDPVerifier's entry points, as Curio packs them.
    interface IPdpVerifierTx {
        struct PieceCid { bytes data; }
        function createDataSet(address listenerAddr, bytes extraData) external payable returns (uint256);
        function addPieces(uint256 setId, address listenerAddr, PieceCid[] pieceData, bytes extraData) external payable returns (uint256);
    }
}

/// Sends the transaction to the linked chain; `Err` is the revert reason.
async fn send_to_chain(
    link: &ChainLink,
    input: Vec<u8>,
    to: &str,
    new_set_id: u64,
) -> Result<(), String> {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
        "params": [{
            "from": link.from,
            "to": to,
            "input": format!("0x{}", alloy::primitives::hex::encode(input)),
            "mockDataSetId": new_set_id,
        }],
    })
    .to_string();
    let rest = link
        .rpc_url
        .strip_prefix("http://")
        .ok_or("mock chain URL is not http")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("mock chain unreachable: {e}"))?;
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut rd = BufReader::new(stream);
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("mock chain closed the connection".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut answer = vec![0u8; length];
    rd.read_exact(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    match answer.get("error") {
        None => Ok(()),
        Some(error) => Err(error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("execution reverted")
            .to_string()),
    }
}

/// FWSS of mainnet and calibration (filecoin.md, "Chains"): the record
/// keepers an unlinked mock allows.
const KNOWN_FWSS: [&str; 2] = [
    "0x8408502033C418E1bbC97cE9ac48E5528F371A9f",
    "0x02925630df557F957f70E112bA06e50965417CA0",
];

/// A data-set transaction: validated as Curio validates it, run on the
/// linked chain (whose revert is relayed), then recorded for the status
/// polls. `Err` carries the block when this request got the IP throttled.
async fn new_transaction(
    shared: &Arc<Shared>,
    peer: std::net::IpAddr,
    step: MockStep,
    path: &str,
    json_body: Option<&Value>,
) -> Result<Reply, Duration> {
    let Some(body) = json_body else {
        return Ok(text(400, "body must be JSON"));
    };
    let hexed = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("0x"))
    };
    if !hexed("extraData") {
        return Ok(text(400, "extraData must be 0x hex"));
    }
    if step != MockStep::AddPieces && !hexed("recordKeeper") {
        return Ok(text(400, "recordKeeper must be a 0x address"));
    }
    let record_keeper = body["recordKeeper"].as_str().unwrap_or("").to_string();
    let (link, data_set_id, pieces) = {
        let mut state = shared.lock();
        let link = state.chain.clone();
        if step != MockStep::AddPieces {
            let allowed = match &link {
                Some(l) => record_keeper.eq_ignore_ascii_case(&l.fwss),
                None => KNOWN_FWSS
                    .iter()
                    .any(|f| record_keeper.eq_ignore_ascii_case(f)),
            };
            if !allowed {
                return Ok(text(
                    403,
                    "recordKeeper address not allowed for public service",
                ));
            }
        }
        let existing = path.split('/').nth(3).and_then(|s| s.parse::<u64>().ok());
        if step == MockStep::AddPieces
            && !existing.is_some_and(|id| state.data_sets.contains_key(&id))
        {
            if let Some(block) = record_offence(&mut state, peer) {
                return Err(block);
            }
            return Ok(text(404, "Data set not found"));
        }
        let pieces = if step == MockStep::CreateDataSet {
            Vec::new()
        } else {
            match parse_pieces(&state, body) {
                Ok(p) => p,
                Err(e) => return Ok(text(400, &e)),
            }
        };
        let data_set_id = match (step, existing) {
            (MockStep::AddPieces, Some(id)) => id,
            _ => {
                state.next_data_set += 1;
                state.next_data_set
            }
        };
        (link, data_set_id, pieces)
    };
    if let Some(link) = &link {
        let extra = alloy::primitives::hex::decode(body["extraData"].as_str().unwrap_or(""))
            .unwrap_or_default();
        let listener: alloy::primitives::Address = record_keeper.parse().unwrap_or_default();
        let cids: Vec<IPdpVerifierTx::PieceCid> = pieces
            .iter()
            .map(|c| IPdpVerifierTx::PieceCid {
                data: c
                    .parse::<PieceCid>()
                    .map(|c| c.to_bytes())
                    .unwrap_or_default()
                    .into(),
            })
            .collect();
        use alloy::sol_types::SolCall;
        let input = match step {
            MockStep::CreateDataSet => IPdpVerifierTx::createDataSetCall {
                listenerAddr: listener,
                extraData: extra.into(),
            }
            .abi_encode(),
            MockStep::CreateAndAdd => IPdpVerifierTx::addPiecesCall {
                setId: alloy::primitives::U256::ZERO,
                listenerAddr: listener,
                pieceData: cids,
                extraData: extra.into(),
            }
            .abi_encode(),
            _ => IPdpVerifierTx::addPiecesCall {
                setId: alloy::primitives::U256::from(data_set_id),
                listenerAddr: alloy::primitives::Address::ZERO,
                pieceData: cids,
                extraData: extra.into(),
            }
            .abi_encode(),
        };
        // PDPVerifier on calibration (filecoin.md, "Chains").
        let pdp = "0x85e366Cf9DD2c0aE37E963d9556F5f4718d6417C";
        if let Err(reason) = send_to_chain(link, input, pdp, data_set_id).await {
            return Ok(text(
                500,
                &format!(
                    "Failed to send transaction: failed to estimate gas: {reason} [eid: mock]"
                ),
            ));
        }
    }
    let mut state = shared.lock();
    let (reject_create, reject_add) = (state.config.reject_create, state.config.reject_add);
    let tx = fake_tx_hash(&mut state);
    let creates = step != MockStep::AddPieces;
    if creates && !reject_create {
        state.data_sets.insert(data_set_id, Vec::new());
    }
    let rejected_add = reject_add || (creates && reject_create);
    let piece_ids = if pieces.is_empty() {
        None
    } else {
        let mut ids = Vec::new();
        for cid in pieces {
            let id = state.next_piece;
            state.next_piece += 1;
            ids.push(id);
            if !rejected_add {
                if let Some(set) = state.data_sets.get_mut(&data_set_id) {
                    set.push((id, cid));
                }
            }
        }
        Some(ids)
    };
    state.txs.insert(
        tx.clone(),
        Tx {
            data_set_id,
            creates,
            piece_ids,
            rejected_create: creates && reject_create,
            rejected_add,
            created_polls: 0,
            added_polls: 0,
        },
    );
    let location = if step == MockStep::AddPieces {
        format!("/pdp/data-sets/{data_set_id}/pieces/added/{tx}")
    } else {
        format!("/pdp/data-sets/created/{tx}")
    };
    Ok((201, vec![("Location", location)], Vec::new()))
}

/// The hash a replaced-by-fee transaction landed under (Curio's
/// `confirmedTxHash`): the polled one with its last digit changed.
pub fn replaced_tx_hash(tx: &str) -> String {
    let mut hash = tx.to_string();
    let last = if hash.ends_with('f') { '0' } else { 'f' };
    hash.pop();
    hash.push(last);
    hash
}

fn data_set_status(
    shared: &Arc<Shared>,
    path: &str,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let tx_hash = path.rsplit('/').next().unwrap_or("").to_string();
    let mut state = shared.lock();
    let (pending, as_strings) = (state.config.pending_polls, state.config.ids_as_strings);
    let Some(tx) = state.txs.get_mut(&tx_hash).filter(|t| t.creates) else {
        return text(404, "data set creation not found");
    };
    tx.created_polls += 1;
    let answer = if tx.created_polls <= pending {
        json!({ "createMessageHash": tx_hash, "dataSetCreated": false, "service": "mock-curio",
                "txStatus": "pending", "ok": null })
    } else if tx.rejected_create {
        json!({ "createMessageHash": tx_hash, "dataSetCreated": false, "service": "mock-curio",
                "txStatus": "rejected", "ok": false })
    } else {
        json!({ "createMessageHash": tx_hash, "dataSetCreated": true, "service": "mock-curio",
                "txStatus": "confirmed", "ok": true, "dataSetId": id_json(tx.data_set_id, as_strings) })
    };
    (
        200,
        json_headers().to_vec(),
        answer.to_string().into_bytes(),
    )
}

fn pieces_added_status(
    shared: &Arc<Shared>,
    path: &str,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = segs.get(2).and_then(|s| s.parse::<u64>().ok());
    let tx_hash = segs.last().copied().unwrap_or("").to_string();
    let mut state = shared.lock();
    let (pending, as_strings) = (state.config.pending_polls, state.config.ids_as_strings);
    let replaced = state
        .config
        .replace_by_fee
        .then(|| replaced_tx_hash(&tx_hash));
    let Some(tx) = state
        .txs
        .get_mut(&tx_hash)
        .filter(|t| t.piece_ids.is_some() && Some(t.data_set_id) == id)
    else {
        return text(404, "add-pieces transaction not found");
    };
    tx.added_polls += 1;
    let ids = tx.piece_ids.clone().unwrap_or_default();
    let data_set_id = id_json(tx.data_set_id, as_strings);
    let answer = if tx.added_polls <= pending {
        json!({ "txHash": tx_hash, "txStatus": "pending", "dataSetId": data_set_id,
                "pieceCount": ids.len(), "addMessageOk": null, "piecesAdded": false })
    } else if tx.rejected_add {
        json!({ "txHash": tx_hash, "txStatus": "rejected", "dataSetId": data_set_id,
                "pieceCount": ids.len(), "addMessageOk": null, "piecesAdded": false })
    } else {
        let confirmed: Vec<Value> = ids.iter().map(|&i| id_json(i, as_strings)).collect();
        let mut answer = json!({ "txHash": tx_hash, "txStatus": "confirmed", "dataSetId": data_set_id,
                "pieceCount": ids.len(), "addMessageOk": true, "piecesAdded": true,
                "confirmedPieceIds": confirmed });
        if let Some(landed) = replaced {
            answer["confirmedTxHash"] = json!(landed);
        }
        answer
    };
    (
        200,
        json_headers().to_vec(),
        answer.to_string().into_bytes(),
    )
}

/// `POST /pdp/piece/pull`: starts a job per new `extraData` (a task that
/// GETs every source and re-hashes it), answers a known one with its state.
fn pull_pieces(
    shared: &Arc<Shared>,
    json_body: Option<&Value>,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let Some(body) = json_body else {
        return text(400, "body must be JSON");
    };
    let hexed = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("0x"))
    };
    if !hexed("extraData") || !hexed("recordKeeper") {
        return text(400, "extraData and recordKeeper must be 0x hex");
    }
    let extra = body["extraData"].as_str().unwrap_or("").to_string();
    let Some(list) = body
        .get("pieces")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    else {
        return text(400, "pieces must be a non-empty array");
    };
    let mut wanted = Vec::new();
    for piece in list {
        let (Some(cid), Some(url)) = (
            piece.get("pieceCid").and_then(Value::as_str),
            piece.get("sourceUrl").and_then(Value::as_str),
        ) else {
            return text(400, "each piece needs pieceCid and sourceUrl");
        };
        if cid
            .parse::<PieceCid>()
            .ok()
            .and_then(|c| c.payload_size())
            .is_none()
        {
            return text(400, "pieceCid must be a v2 PieceCID");
        }
        wanted.push((cid.to_string(), url.to_string()));
    }
    let mut state = shared.lock();
    if let Some(id) = body.get("dataSetId") {
        if !id
            .as_u64()
            .is_some_and(|id| state.data_sets.contains_key(&id))
        {
            return text(404, "data set not found");
        }
    }
    if !state.pulls.contains_key(&extra) {
        let fails = state.config.pull_fails;
        let initial = if fails { "failed" } else { "pending" };
        state.pulls.insert(
            extra.clone(),
            wanted.iter().map(|(c, _)| (c.clone(), initial)).collect(),
        );
        if !fails {
            let shared = Arc::clone(shared);
            let extra = extra.clone();
            tokio::spawn(async move {
                for (i, (cid, url)) in wanted.into_iter().enumerate() {
                    set_pull(&shared, &extra, i, "inProgress");
                    let status = match fetch_and_park(&shared, &cid, &url).await {
                        Ok(()) => "complete",
                        Err(_) => "failed",
                    };
                    set_pull(&shared, &extra, i, status);
                }
            });
        }
    }
    let pieces = state.pulls[&extra].clone();
    let rank = |s: &str| match s {
        "failed" => 4,
        "retrying" => 3,
        "inProgress" => 2,
        "pending" => 1,
        _ => 0,
    };
    let overall = pieces
        .iter()
        .map(|(_, s)| *s)
        .max_by_key(|s| rank(s))
        .unwrap_or("complete");
    let answer = json!({
        "status": overall,
        "pieces": pieces.iter().map(|(c, s)| json!({"pieceCid": c, "status": s})).collect::<Vec<_>>(),
    });
    let code = if overall == "complete" || overall == "failed" {
        200
    } else {
        202
    };
    (
        code,
        json_headers().to_vec(),
        answer.to_string().into_bytes(),
    )
}

fn set_pull(shared: &Shared, extra: &str, index: usize, status: &'static str) {
    if let Some(job) = shared.lock().pulls.get_mut(extra) {
        job[index].1 = status;
    }
}

/// The puller: a plain HTTP/1.1 `GET` of `url` (exactly 200), CommP of the
/// body, parked under `cid` only when they match.
async fn fetch_and_park(shared: &Shared, cid: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// sources in tests")?;
    let (host, path) = rest.split_once('/').ok_or("no path")?;
    let stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let (rd, mut wr) = stream.into_split();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    wr.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    rd.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(format!("source answered {line:?}"));
    }
    let mut length = None;
    loop {
        line.clear();
        rd.read_line(&mut line).await.map_err(|e| e.to_string())?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            }
        }
    }
    let length = length.ok_or("no Content-Length")?;
    let file_path = shared
        .dir
        .join(format!("pulled-{}", fake_uuid(&mut shared.lock())));
    let mut file = File::create(&file_path).map_err(|e| e.to_string())?;
    let mut commp = CommP::new();
    let mut left = length;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = rd.read(&mut buf[..want]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("source ended early".into());
        }
        commp.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    let computed = commp.finish().map_err(|e| e.to_string())?;
    if computed.to_string() != cid {
        return Err(format!("bytes hash to {computed}, not {cid}"));
    }
    shared
        .lock()
        .pieces
        .insert(cid.to_string(), (file_path, length));
    Ok(())
}

/// Parses a single `bytes=` range against `len`: `Ok(None)` without one,
/// `Err(())` when unsatisfiable or malformed.
fn parse_range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = value else { return Ok(None) };
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn get_piece(
    shared: &Arc<Shared>,
    head: &Head,
    wr: &mut OwnedWriteHalf,
    path: &str,
) -> io::Result<Handled> {
    let cid = path.rsplit('/').next().unwrap_or("");
    let found = shared.lock().pieces.get(cid).cloned();
    let Some((file_path, len)) = found else {
        return answer(
            shared,
            head,
            wr,
            404,
            &text_headers(),
            b"piece not found",
            true,
            None,
            0,
        )
        .await;
    };
    let (status, start, end) = match parse_range(head.header("range"), len) {
        Ok(None) => (200, 0, len - 1),
        Ok(Some((s, e))) => (206, s, e),
        Err(()) => {
            let headers = [("Content-Range", format!("bytes */{len}"))];
            return answer(shared, head, wr, 416, &headers, b"", true, None, 0).await;
        }
    };
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    if status == 206 {
        headers.push(("Content-Range", format!("bytes {start}-{end}/{len}")));
    }
    let count = end - start + 1;
    record(shared, head, Some(status), None, 0);
    write_head(wr, status, &headers, Some(count), true).await?;
    if head.method == "GET" {
        let mut file = File::open(&file_path)?;
        file.seek(SeekFrom::Start(start))?;
        let mut left = count;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            file.read_exact(&mut buf[..want])?;
            wr.write_all(&buf[..want]).await?;
            left -= want as u64;
        }
    }
    wr.flush().await?;
    Ok(Handled {
        recorded: true,
        keep_alive: true,
        body_len: 0,
    })
}
