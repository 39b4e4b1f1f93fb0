//! Test harness: a mock Beam that speaks real HTTP/1.1 over loopback and
//! behaves as the real FilBeam piece-retriever worker does (filbeam/worker
//! e92089f, and `filecoin.md` "Learnt against the real systems"): while a
//! piece is cold it answers every request with 200 and the whole piece,
//! chunked, without Content-Length, pulling the whole piece from its
//! provider each time; it warms only once such a response completed, and
//! then answers ranges with 206. Its refusals carry the worker's statuses,
//! order and texts. Faults are switchable. Also a runner for the real
//! `beam-edge` binary.
#![allow(dead_code, clippy::manual_div_ceil)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the mock answers piece requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Correct RFC 9110 behaviour.
    None,
    /// Wait this long before the response header.
    Delay(Duration),
    /// Answer this status with a short body.
    Status(u16),
    /// Ignore Range: 200 with the whole piece and a Content-Length (a server
    /// that ignores Range; Beam's own cold answer is the default, chunked).
    FullBodyForRange,
    /// Beam's cold answer (chunked whole piece) that stops half way and
    /// closes the connection, every time.
    FullBodyForRangeCut,
    /// A 206 whose Content-Range is shifted by one byte.
    WrongContentRange,
    /// Promise the full length, send half, then close.
    ShortBody,
    /// Send half the body, then reset the connection.
    ResetMidBody,
    /// Correct answers, but sleep this long after each 64 KiB of body.
    Throttle(Duration),
    /// Correct headers and lengths, but the last byte of each body flipped.
    Corrupt,
    /// A WAN-like Beam: wait `delay` before each response header, then send
    /// each body at most `bytes_per_sec` (per connection).
    Wan { delay: Duration, bytes_per_sec: u64 },
}

/// The bytes `offset..offset + len` of a generated piece (see
/// [`MockBeam::add_generated_piece`]): each 8-byte word is a hash of its
/// index, so any range is cheap to make and to check, and distinct regions
/// differ.
pub fn generated_bytes(offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    let mut word = offset / 8;
    let skip = (offset % 8) as usize;
    while out.len() < len + skip {
        let mut z = word.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        word += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// Why the mock refuses a piece, with the real worker's status and text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refuse {
    /// 404 "flagged by the Bad Bits Denylist".
    BadBits,
    /// 403 "Wallet … is sanctioned".
    Sanctioned,
    /// 402 "… has withCDN=false."
    NoCdn,
    /// 402 "CDN egress quota exhausted …".
    Quota,
}

#[derive(Default)]
struct MockState {
    pieces: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Pieces in the CDN cache (the real cache is keyed by the provider's
    /// URL, so a piece warmed through one payer is warm for every payer).
    warm: Mutex<std::collections::HashSet<String>>,
    /// Answer as a CDN that holds every piece (the behaviour before the
    /// real worker was measured); off by default.
    always_warm: AtomicBool,
    /// Refusals by CID.
    refusals: Mutex<HashMap<String, Refuse>>,
    /// Bytes the worker pulled from the storage provider (cold answers).
    provider_bytes: AtomicU64,
    /// Whole-piece cold answers written to the end.
    completed_cold: AtomicU64,
    /// Whole-piece cold answers started.
    cold_answers: AtomicU64,
    fault: Mutex<Option<Fault>>,
    log: Mutex<Vec<Logged>>,
    body_bytes_sent: AtomicU64,
    /// Requests logged whose answer is not finished (or cut) yet.
    answering: AtomicU64,
    /// While set, requests are logged but not answered.
    held: AtomicBool,
    /// Requests whose range starts at one of these bytes are logged but
    /// not answered, until [`MockBeam::release_ranges_from`].
    held_starts: Mutex<std::collections::HashSet<u64>>,
    /// Generated pieces by CID: their size (bytes from [`generated_bytes`]).
    generated: Mutex<HashMap<String, u64>>,
    /// While not 0, a cold (whole-piece) answer stops before the first
    /// chunk that would take its body past this many bytes, and waits.
    cold_gate: AtomicU64,
    /// Pieces only some payers have CDN data sets for (lowercase 0x
    /// addresses): others get Beam's 402. Pieces not listed serve anyone.
    payers: Mutex<HashMap<String, Vec<String>>>,
}

/// A mock Beam on loopback. Serves `/<anything>/<cid>`; unknown CIDs get 404.
pub struct MockBeam {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    _rt: tokio::runtime::Runtime,
}

/// Serves `serve` on every connection accepted on a fresh loopback port, on
/// a runtime of its own with `threads` workers (the mocks' shared start-up).
/// The server lives as long as the returned runtime.
pub fn serve_loopback<S, F, Fut>(
    threads: usize,
    state: Arc<S>,
    serve: F,
) -> (SocketAddr, tokio::runtime::Runtime)
where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, Arc<S>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let st = state.clone();
            tokio::spawn(async move {
                let _ = serve(sock, st).await;
            });
        }
    });
    (addr, rt)
}

/// One HTTP/1.1 request head as a mock reads it: header names lowercased.
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// Reads the next request head from `sock`, keeping what follows it in
/// `buf`; `None` once the peer has closed.
pub async fn read_request_head(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<RequestHead>> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut tmp = [0u8; 4096];
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(Some(RequestHead {
        method,
        path,
        headers,
    }))
}

impl MockBeam {
    pub fn start() -> MockBeam {
        let state = Arc::new(MockState::default());
        let (addr, rt) = serve_loopback(2, state.clone(), serve_conn);
        MockBeam {
            addr,
            state,
            _rt: rt,
        }
    }

    /// A mock storage provider (Curio's `/piece/<cid>`): a correct RFC 7233
    /// server from the first request, serving `/<anything>/<cid>`.
    pub fn start_provider() -> MockBeam {
        let m = MockBeam::start();
        m.set_always_warm();
        m
    }

    /// A piece Beam knows and that is cold in its CDN (as after an upload).
    pub fn add_piece(&self, cid: &str, data: Vec<u8>) {
        self.state
            .pieces
            .lock()
            .unwrap()
            .insert(cid.to_string(), Arc::new(data));
    }

    /// A piece Beam knows and already holds in its CDN (played before).
    pub fn add_warm_piece(&self, cid: &str, data: Vec<u8>) {
        self.add_piece(cid, data);
        self.state.warm.lock().unwrap().insert(cid.to_string());
    }

    /// Every piece, present and future, is warm: for tests whose subject is
    /// not Beam's cold behaviour (ranges answered 206 from the first request).
    pub fn set_always_warm(&self) {
        self.state.always_warm.store(true, Ordering::SeqCst);
    }

    /// True once the piece is in the mock CDN's cache.
    pub fn is_warm(&self, cid: &str) -> bool {
        self.state.warm.lock().unwrap().contains(cid)
    }

    /// Refuses `cid` as the real worker does for `why`.
    pub fn refuse(&self, cid: &str, why: Refuse) {
        self.state
            .refusals
            .lock()
            .unwrap()
            .insert(cid.to_string(), why);
    }

    /// Serves `cid` again after [`MockBeam::refuse`].
    pub fn stop_refusing(&self, cid: &str) {
        self.state.refusals.lock().unwrap().remove(cid);
    }

    /// Bytes the worker pulled from the storage provider for cold answers
    /// since the last `clear_log` (it pulls the whole piece per request and
    /// stops when the client goes away).
    pub fn provider_bytes(&self) -> u64 {
        self.state.provider_bytes.load(Ordering::SeqCst)
    }

    /// Cold whole-piece answers started since the last `clear_log`.
    pub fn cold_answers(&self) -> u64 {
        self.state.cold_answers.load(Ordering::SeqCst)
    }

    /// Cold whole-piece answers written to the end since the last `clear_log`.
    pub fn completed_cold(&self) -> u64 {
        self.state.completed_cold.load(Ordering::SeqCst)
    }

    /// Piece requests received since the last `clear_log` (GET and HEAD).
    pub fn piece_requests(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Adds a piece of `size` bytes made on the fly by [`generated_bytes`]
    /// (a 1.5 GB piece without 1.5 GB of memory).
    pub fn add_generated_piece(&self, cid: &str, size: u64) {
        self.state
            .generated
            .lock()
            .unwrap()
            .insert(cid.to_string(), size);
    }

    /// Adds a piece that only `payers` have CDN data sets for: a request whose
    /// payer (the path segment before the CID, as the `{payer}` of
    /// [`MockBeam::url_template`] puts it; Beam reads it from the host name)
    /// is another gets 402, as Beam answers.
    pub fn add_piece_for_payers(&self, cid: &str, data: Vec<u8>, payers: &[&str]) {
        self.add_piece(cid, data);
        self.state.payers.lock().unwrap().insert(
            cid.to_string(),
            payers.iter().map(|p| p.to_ascii_lowercase()).collect(),
        );
    }

    /// Holds every answer (requests are still logged) until [`MockBeam::release`].
    pub fn hold(&self) {
        self.state.held.store(true, Ordering::SeqCst);
    }

    /// Answers the held requests, and the next ones at once.
    pub fn release(&self) {
        self.state.held.store(false, Ordering::SeqCst);
    }

    /// Holds every answer to a range that starts at byte `start` (the
    /// request is still logged) until [`MockBeam::release_ranges_from`].
    pub fn hold_ranges_from(&self, start: u64) {
        self.state.held_starts.lock().unwrap().insert(start);
    }

    /// Answers the ranges held by [`MockBeam::hold_ranges_from`].
    pub fn release_ranges_from(&self, start: u64) {
        self.state.held_starts.lock().unwrap().remove(&start);
    }

    /// Cold whole-piece answers stream their first `bytes` (rounded down to
    /// the 64 KiB chunks they are written in) and then wait, until a larger
    /// gate or [`MockBeam::open_cold_gate`].
    pub fn gate_cold_at(&self, bytes: u64) {
        self.state.cold_gate.store(bytes.max(1), Ordering::SeqCst);
    }

    /// Cold answers stream to the end again.
    pub fn open_cold_gate(&self) {
        self.state.cold_gate.store(0, Ordering::SeqCst);
    }

    pub fn set_fault(&self, f: Fault) {
        *self.state.fault.lock().unwrap() = Some(f);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// The `Range` headers of the requests logged, sorted.
    pub fn sorted_ranges(&self) -> Vec<String> {
        let mut ranges: Vec<String> = self
            .requests()
            .iter()
            .filter_map(|r| r.headers.get("range").cloned())
            .collect();
        ranges.sort();
        ranges
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
        self.state.body_bytes_sent.store(0, Ordering::SeqCst);
        self.state.provider_bytes.store(0, Ordering::SeqCst);
        self.state.completed_cold.store(0, Ordering::SeqCst);
        self.state.cold_answers.store(0, Ordering::SeqCst);
    }

    /// Body bytes the mock managed to write since the last `clear_log`.
    pub fn body_bytes_sent(&self) -> u64 {
        self.state.body_bytes_sent.load(Ordering::SeqCst)
    }

    /// Waits until every request the mock has logged is answered, or its
    /// answer cut (the client closed the connection): from then on
    /// [`MockBeam::body_bytes_sent`] is final, so a check that the proxy
    /// stopped reading early means something. The deadline only matters
    /// when a test fails (a proxy that neither reads nor closes).
    pub fn wait_answers_done(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.state.answering.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "the mock Beam is still answering after 30 s ({} body bytes sent, {} requests logged)",
                self.body_bytes_sent(),
                self.requests().len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The beam_url template that points at this mock.
    pub fn url_template(&self) -> String {
        format!("http://{}/{{payer}}", self.addr)
    }
}

/// The payer a mock Beam request was made for: the path segment before the
/// CID (`/<payer>/<cid>` from [`MockBeam::url_template`]), when it is one.
pub fn payer_of(path: &str) -> Option<String> {
    let mut segments = path.rsplit('/');
    segments.next();
    segments
        .next()
        .filter(|p| p.len() == 42 && p.starts_with("0x"))
        .map(str::to_ascii_lowercase)
}

fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        return Some((size.saturating_sub(n), size - 1));
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        size - 1
    } else {
        b.parse::<u64>().ok()?.min(size - 1)
    };
    Some((a, b))
}

async fn write_body(sock: &mut TcpStream, st: &MockState, data: &[u8]) -> std::io::Result<()> {
    let fault = st.fault.lock().unwrap().clone();
    let mut pace = Pace::new(&fault);
    for chunk in data.chunks(64 * 1024) {
        sock.write_all(chunk).await?;
        st.body_bytes_sent
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        pace.after(chunk.len(), &fault).await;
    }
    Ok(())
}

/// Paces a body as the fault asks (`Throttle`, `Wan`).
struct Pace {
    start: Instant,
    sent: u64,
}

impl Pace {
    fn new(_fault: &Option<Fault>) -> Pace {
        Pace {
            start: Instant::now(),
            sent: 0,
        }
    }

    async fn after(&mut self, n: usize, fault: &Option<Fault>) {
        self.sent += n as u64;
        match fault {
            Some(Fault::Throttle(d)) => tokio::time::sleep(*d).await,
            Some(Fault::Wan { bytes_per_sec, .. }) if *bytes_per_sec > 0 => {
                let due =
                    self.start + Duration::from_secs_f64(self.sent as f64 / *bytes_per_sec as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            _ => {}
        }
    }
}

/// Answers a request for a generated piece of `size` bytes.
async fn serve_generated(
    sock: &mut TcpStream,
    st: &MockState,
    method: &str,
    range: Option<(u64, u64)>,
    size: u64,
) -> std::io::Result<()> {
    let (a, b, head) = match range {
        Some((a, b)) if a < size => (
            a,
            b,
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                b - a + 1
            ),
        ),
        Some(_) => {
            let resp = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n\r\n");
            return sock.write_all(resp.as_bytes()).await;
        }
        None => (
            0,
            size - 1,
            format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n"),
        ),
    };
    sock.write_all(head.as_bytes()).await?;
    if method == "HEAD" {
        return Ok(());
    }
    let fault = st.fault.lock().unwrap().clone();
    let mut pace = Pace::new(&fault);
    let mut at = a;
    while at <= b {
        let n = (b - at + 1).min(64 * 1024) as usize;
        sock.write_all(&generated_bytes(at, n)).await?;
        st.body_bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
        at += n as u64;
        pace.after(n, &fault).await;
    }
    Ok(())
}

/// Writes `data` as a chunked body (64 KiB chunks, then the last chunk),
/// counting what is written as pulled from the provider too.
async fn write_chunked(sock: &mut TcpStream, st: &MockState, data: &[u8]) -> std::io::Result<()> {
    let pause = match *st.fault.lock().unwrap() {
        Some(Fault::Throttle(d)) => Some(d),
        _ => None,
    };
    let mut written = 0u64;
    for chunk in data.chunks(64 * 1024) {
        written += chunk.len() as u64;
        loop {
            let gate = st.cold_gate.load(Ordering::SeqCst);
            if gate == 0 || written <= gate {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker streams the provider's bytes through: a chunk is pulled
        // before it is written, whether or not the client still reads.
        st.provider_bytes
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        sock.write_all(chunk).await?;
        sock.write_all(b"\r\n").await?;
        st.body_bytes_sent
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if let Some(d) = pause {
            tokio::time::sleep(d).await;
        }
    }
    sock.write_all(b"0\r\n\r\n").await?;
    sock.flush().await
}

/// One request being answered ([`MockState::answering`]), until dropped:
/// at the end of its loop turn, or when an error (a cut connection) ends
/// the connection's task.
struct Answering<'a>(&'a MockState);

impl<'a> Answering<'a> {
    fn start(st: &'a MockState) -> Answering<'a> {
        st.answering.fetch_add(1, Ordering::SeqCst);
        Answering(st)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_conn(mut sock: TcpStream, st: Arc<MockState>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(RequestHead {
            method,
            path,
            headers,
        }) = read_request_head(&mut sock, &mut buf).await?
        else {
            return Ok(());
        };
        // Counted before the request is visible in the log, so a test that
        // saw the request never sees the mock idle before its answer ends.
        let _answering = Answering::start(&st);
        st.log.lock().unwrap().push(Logged {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
        });

        while st.held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let start = headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|a| a.parse::<u64>().ok());
        while start.is_some_and(|a| st.held_starts.lock().unwrap().contains(&a)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fault = st.fault.lock().unwrap().clone().unwrap_or(Fault::None);
        if let Fault::Delay(d) | Fault::Wan { delay: d, .. } = fault {
            tokio::time::sleep(d).await;
        }
        if let Fault::Status(code) = fault {
            let body = format!("mock status {code}\n");
            let resp = format!(
                "HTTP/1.1 {code} Mock\r\nContent-Length: {}\r\nCache-Control: public, max-age=31536000\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
            continue;
        }
        let cid = path.rsplit('/').next().unwrap_or_default().to_string();
        let billed = payer_of(&path);
        let payer = billed.clone().unwrap_or_default();
        // A generated piece (tests/memory.rs: 1.5 GB made on the fly) is
        // warm in the mock's CDN: ranges are answered 206 at once.
        let generated = st.generated.lock().unwrap().get(&cid).copied();
        if let Some(size) = generated {
            let range = headers.get("range").and_then(|r| parse_range(r, size));
            serve_generated(&mut sock, &st, &method, range, size).await?;
            continue;
        }
        // The worker's order: unknown piece, payer without a CDN data set,
        // sanctioned wallet, quota, Bad Bits (lib/store.js, bin/piece-retriever.js).
        let data = st.pieces.lock().unwrap().get(&cid).cloned();
        let no_cdn_for_payer = st.payers.lock().unwrap().get(&cid).is_some_and(|allowed| {
            !allowed
                .iter()
                .any(|p| Some(p.as_str()) == billed.as_deref())
        });
        let refusal = st.refusals.lock().unwrap().get(&cid).copied();
        let refused = match (&data, refusal) {
            (None, _) => Some((
                404,
                format!("Piece_cid '{cid}' does not exist or may not have been indexed yet."),
            )),
            _ if no_cdn_for_payer => Some((
                402,
                format!("There is no Filecoin Warm Storage Service deal for payer '{payer}' and piece_cid '{cid}'."),
            )),
            (_, Some(Refuse::NoCdn)) => Some((
                402,
                format!("The Filecoin Warm Storage Service deal for payer '{payer}' and piece_cid '{cid}' has withCDN=false."),
            )),
            (_, Some(Refuse::Sanctioned)) => Some((
                403,
                format!("Wallet '{payer}' is sanctioned and cannot retrieve piece_cid '{cid}'."),
            )),
            (_, Some(Refuse::Quota)) => Some((
                402,
                format!("CDN egress quota exhausted for payer '{payer}' and data set '1'. Please top up your CDN egress quota."),
            )),
            (_, Some(Refuse::BadBits)) => Some((
                404,
                "The requested CID was flagged by the Bad Bits Denylist at https://badbits.dwebops.pub".to_string(),
            )),
            (Some(_), None) => None,
        };
        if let Some((code, body)) = refused {
            let resp = format!(
                "HTTP/1.1 {code} Refused\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
            continue;
        }
        let Some(data) = data else { continue };
        let warm = st.always_warm.load(Ordering::SeqCst) || st.warm.lock().unwrap().contains(&cid);
        if fault == Fault::FullBodyForRangeCut {
            let resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n";
            sock.write_all(resp.as_bytes()).await?;
            let half = &data[..data.len() / 2];
            for chunk in half.chunks(64 * 1024) {
                st.provider_bytes
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                sock.write_all(chunk).await?;
                sock.write_all(b"\r\n").await?;
                st.body_bytes_sent
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            sock.flush().await?;
            return Ok(());
        }
        if !warm && matches!(fault, Fault::None | Fault::Delay(_) | Fault::Throttle(_)) {
            // Cold: the whole piece, pulled from the provider as it streams,
            // chunked with no length; the CDN keeps it only if it completes.
            let resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nCache-Control: public, max-age=31536000\r\nX-Data-Set-ID: 1\r\n\r\n";
            sock.write_all(resp.as_bytes()).await?;
            if method == "HEAD" {
                continue;
            }
            st.cold_answers.fetch_add(1, Ordering::SeqCst);
            write_chunked(&mut sock, &st, &data).await?;
            st.warm.lock().unwrap().insert(cid.clone());
            st.completed_cold.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let size = data.len() as u64;
        let range = headers.get("range").and_then(|r| parse_range(r, size));
        match (range, &fault) {
            (
                Some((a, b)),
                Fault::None
                | Fault::Delay(_)
                | Fault::Throttle(_)
                | Fault::Corrupt
                | Fault::Wan { .. },
            ) if a < size => {
                let resp = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    b - a + 1
                );
                sock.write_all(resp.as_bytes()).await?;
                let mut body = data[a as usize..=b as usize].to_vec();
                if fault == Fault::Corrupt {
                    *body.last_mut().unwrap() ^= 1;
                }
                write_body(&mut sock, &st, &body).await?;
            }
            (Some((a, b)), Fault::WrongContentRange) => {
                let resp = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{size}\r\nContent-Length: {}\r\n\r\n",
                    a + 1,
                    (b + 1).min(size - 1),
                    b - a + 1
                );
                sock.write_all(resp.as_bytes()).await?;
                write_body(&mut sock, &st, &data[a as usize..=b as usize]).await?;
            }
            (Some((a, b)), Fault::ShortBody | Fault::ResetMidBody) => {
                let resp = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\nContent-Length: {}\r\n\r\n",
                    b - a + 1
                );
                sock.write_all(resp.as_bytes()).await?;
                let half = a + (b - a + 1) / 2; // first byte not sent
                write_body(&mut sock, &st, &data[a as usize..half as usize]).await?;
                sock.flush().await?;
                if fault == Fault::ResetMidBody {
                    // Linger 0: close() sends a RST instead of a FIN.
                    #[allow(deprecated)] // linger 0 does not block: it resets
                    sock.set_linger(Some(Duration::ZERO))?;
                    drop(sock);
                }
                return Ok(());
            }
            (Some((a, _)), _) if a >= size => {
                let resp = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n\r\n");
                sock.write_all(resp.as_bytes()).await?;
            }
            _ => {
                // No Range, or FullBodyForRange: the whole piece.
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n");
                sock.write_all(resp.as_bytes()).await?;
                if method != "HEAD" {
                    write_body(&mut sock, &st, &data).await?;
                }
            }
        }
    }
}

/// `upstream:` lines pointing at a mock Beam with the test payer. The read
/// timeout is well above any stall of a loaded test machine, so a timeout
/// (and its retry, an extra upstream request) only happens when a test asks.
pub fn beam_upstream(beam: &MockBeam, extra_upstream: &str) -> String {
    beam_upstream_timing(beam, "10s", extra_upstream)
}

/// [`beam_upstream`] with `upstream.read_timeout` set to `read_timeout`.
pub fn beam_upstream_timing(beam: &MockBeam, read_timeout: &str, extra_upstream: &str) -> String {
    format!(
        "  beam_url: \"{}\"\n  payer: \"{PAYER}\"\n  read_timeout: {read_timeout}\n  connect_timeout: 1s\n{extra_upstream}",
        beam.url_template()
    )
}

/// A free loopback port (bound and released).
/// A port free on loopback now, never one this test process was handed
/// before: the kernel may give a just-released port again, and two
/// listeners of one test (a peer port picked early, an admin port picked
/// later) must not collide.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A running `beam-edge serve` process; killed on drop.
pub struct EdgeProcess {
    pub child: Child,
    pub public: SocketAddr,
    pub metrics: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
    /// CA of the public listener's TLS certificate, when it speaks TLS.
    pub public_ca: Option<PathBuf>,
}

/// A payer address for tests.
pub const PAYER: &str = "0x00000000000000000000000000000000000000aa";

/// The binary under test: this build's, or `BEAM_EDGE_BIN` (how a figure
/// compares an older build on the same mocks, e.g. `tests/beam_cold.rs`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BEAM_EDGE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_beam-edge").to_string())
    })
}

/// What to put in a test config besides listeners.
#[derive(Default, Clone)]
pub struct EdgeOptions {
    /// Lines under `upstream:` (indented two spaces).
    pub upstream: String,
    /// Lines under `cache:` (indented two spaces), besides `disk.path`.
    pub cache: String,
    /// Lines under `cache: disk:` besides `path` (indented four spaces).
    pub disk: String,
    /// Reuse this cache directory (a restart) instead of a fresh one.
    pub cache_dir: Option<PathBuf>,
    /// `admin.token`.
    pub admin_token: Option<String>,
    /// More top-level YAML sections (e.g. `upload:`), appended as is.
    pub extra: String,
    /// Environment variables for the process.
    pub env: Vec<(String, String)>,
    /// More lines under `server:` (indented two spaces); one with
    /// `grace_period:` replaces the default `0s`.
    pub server: String,
    /// The public listener speaks TLS (`server.tls` in `server`), trusted by
    /// this CA certificate: the health check then goes through curl.
    pub public_ca: Option<PathBuf>,
    /// Loopback IP of every listener (e.g. `127.0.0.2`); `127.0.0.1` when `None`.
    pub ip: Option<String>,
}

impl EdgeProcess {
    /// Starts the binary with a config whose upstream section is `upstream_yaml`
    /// (indented two spaces under `upstream:`), and waits for /healthz.
    pub fn start(upstream_yaml: &str) -> EdgeProcess {
        EdgeProcess::start_opts(EdgeOptions {
            upstream: upstream_yaml.to_string(),
            ..Default::default()
        })
    }

    /// Starts the binary with `o`, and waits until every listener answers.
    /// Ports are picked free and then released, so another process can take
    /// one first: the start is then retried on new ports.
    pub fn start_opts(o: EdgeOptions) -> EdgeProcess {
        let mut attempt = 1;
        loop {
            match EdgeProcess::try_start(&o) {
                Ok(p) => return p,
                Err(log) if attempt < 3 && log.contains("cannot listen on") => attempt += 1,
                Err(log) => panic!("beam-edge did not start: {log}"),
            }
        }
    }

    fn try_start(o: &EdgeOptions) -> Result<EdgeProcess, String> {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = o
            .cache_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("cache"));
        let token = o
            .admin_token
            .as_ref()
            .map(|t| format!("  token: \"{t}\"\n"))
            .unwrap_or_default();
        let ip = o.ip.as_deref().unwrap_or("127.0.0.1");
        let public: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let grace = if o.server.contains("grace_period:") {
            ""
        } else {
            "  grace_period: 0s\n"
        };
        // Chain resolution is on by default whenever a payer is known; a
        // test reaches no chain but the mock one it names (upstream.rpc_url).
        let hermetic =
            if o.upstream.contains("resolve_providers:") || o.upstream.contains("rpc_url:") {
                ""
            } else {
                "\n  resolve_providers: false"
            };
        let cfg = format!(
            "server:\n  listen: \"{public}\"\n  threads: 2\n{grace}{}upstream:\n{}{hermetic}\ncache:\n{}\n  disk:\n    path: \"{}\"\n{}\nadmin:\n  listen: \"{admin}\"\n{token}metrics:\n  listen: \"{metrics}\"\n",
            o.server,
            o.upstream.trim_end_matches('\n'),
            o.cache,
            cache_dir.display(),
            o.disk,
        ) + &o.extra;
        let cfg_path = dir.path().join("beam-edge.yaml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log_path = dir.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "info")
            .envs(o.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = EdgeProcess {
            child,
            public,
            metrics,
            admin,
            dir,
            log_path,
            public_ca: o.public_ca.clone(),
        };
        p.wait_healthy()?;
        Ok(p)
    }

    /// Starts against a mock Beam with the test payer.
    pub fn with_beam(beam: &MockBeam, extra_upstream: &str) -> EdgeProcess {
        EdgeProcess::start(&beam_upstream(beam, extra_upstream))
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited with {status}: {}", self.log()));
            }
            // Every listener answers, and start-up is over (the admin and
            // metrics listeners are bound on their own runtimes).
            let answers = |addr, path| raw_get(addr, path, &[]).is_ok_and(|(s, _, _)| s < 500);
            let public_ready = match &self.public_ca {
                None => {
                    let starting = raw_get(self.public, "/readyz", &[])
                        .map_or(true, |(_, _, b)| {
                            String::from_utf8_lossy(&b).contains("starting")
                        });
                    answers(self.public, "/healthz") && !starting
                }
                Some(ca) => Command::new("curl")
                    .args(["-sf", "-o", "/dev/null", "--cacert"])
                    .arg(ca)
                    .arg(format!("https://{}/readyz", self.public))
                    .status()
                    .is_ok_and(|s| s.success()),
            };
            if public_ready && answers(self.metrics, "/metrics") && answers(self.admin, "/") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not healthy after 30 s: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// The metrics text.
    pub fn metrics_text(&self) -> String {
        let (status, _, body) = raw_get(self.metrics, "/metrics", &[]).unwrap();
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Value of a metric sample line (`name{labels} value`) in Prometheus text.
///
/// A series that is not in the text is an error (this panics, naming it and
/// the series of that metric that are there): reading it as 0 would let a
/// `== 0.0` or a `before == after` check pass after a metric or a label was
/// renamed. Series a test reads before their first event must be created at
/// start-up (`metrics::init`).
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    try_metric_value(text, name_and_labels).unwrap_or_else(|e| panic!("{e}"))
}

/// [`metric_value`], with a missing or unreadable series as an `Err` that
/// says which, and which series of that metric there are.
pub fn try_metric_value(text: &str, name_and_labels: &str) -> Result<f64, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '));
    let Some(line) = line else {
        let family = name_and_labels.split('{').next().unwrap_or_default();
        let present: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(family))
            .collect();
        return Err(format!(
            "metric series {name_and_labels} is not exported; series of {family}: {present:#?}"
        ));
    };
    let value = line.rsplit(' ').next().unwrap_or_default();
    value.parse().map_err(|e| {
        format!("metric series {name_and_labels}: value {value:?} is not a number: {e}")
    })
}

/// Status, headers (lowercase names) and body of a response.
pub type Response = (u16, HashMap<String, String>, Vec<u8>);

/// A minimal blocking HTTP/1.1 client: one request on a fresh connection
/// (`Connection: close`), returning status, headers (lowercased names) and
/// the body read to EOF. An `Err` means the transfer was cut short: the
/// body is shorter than its Content-Length.
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("bad status line {line:?}"))?;
    let mut hdrs = HashMap::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).map_err(|e| e.to_string())?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            hdrs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if method != "HEAD" && status != 304 && status != 204 {
        let chunked = hdrs
            .get("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        if chunked {
            return Err("unexpected chunked response".into());
        }
        let res = r.read_to_end(&mut body);
        if let Some(cl) = hdrs
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            if body.len() != cl {
                return Err(format!(
                    "truncated: got {} of {cl} bytes ({res:?})",
                    body.len()
                ));
            }
        }
        res.map_err(|e| e.to_string())?;
    }
    Ok((status, hdrs, body))
}

pub fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    raw_request(addr, "GET", path, headers)
}

/// Deterministic test bytes that start like an MP4 file.
pub fn mp4_like(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41");
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Splits `data` into pieces of `piece_size` bytes, puts them and an asset
/// manifest listing them on the mock, and returns the asset id.
pub fn publish_asset(
    beam: &MockBeam,
    data: &[u8],
    piece_size: usize,
    content_type: &str,
) -> String {
    use beam_edge::manifest::{encode_layer, Manifest, ManifestPiece, FORMAT, VERSION};
    use beam_edge::piece::commp::{commp_of, CommP};
    // Layers of 1 MiB windows, as an upload with the default window writes.
    let pieces: Vec<ManifestPiece> = data
        .chunks(piece_size)
        .map(|chunk| {
            let mut hasher = CommP::with_layer(1 << 20).unwrap();
            hasher.update(chunk);
            let (cid, layer) = hasher.finish_with_layer().unwrap();
            let cid = cid.to_string();
            beam.add_piece(&cid, chunk.to_vec());
            ManifestPiece {
                cid,
                size: chunk.len() as u64,
                layer: encode_layer(&layer),
            }
        })
        .collect();
    let m = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        size: data.len() as u64,
        content_type: content_type.into(),
        file_name: "clip".into(),
        window: 1 << 20,
        pieces,
    };
    let bytes = m.to_bytes();
    let id = commp_of(&bytes).unwrap().to_string();
    beam.add_piece(&id, bytes);
    id
}
pub mod mock_curio;
pub mod pki;
