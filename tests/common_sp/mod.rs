//! A mock storage provider that speaks Curio's retrieval route over real
//! HTTP/1.1 on loopback: `GET|HEAD /piece/<cid>` with single ranges (206 and
//! `Content-Range`), 404 for an unknown piece, a strong ETag `"<cid>"` and
//! `Cache-Control: public, max-age=29030400, immutable` (filecoin.md, last
//! section, "Curio `/piece/<cid>`"). Two switchable faults, both as Curio
//! shows them: 429 with no Retry-After (past 256 concurrent retrievals), and
//! a compressed answer (gzip body, `Content-Encoding: gzip`, no Range, no
//! Content-Length) as Curio sends when a request offers gzip; this mock
//! compresses whatever the request offers, standing for a provider (or a
//! proxy in front of it) that ignores `Accept-Encoding: identity`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// The shared mock start-up and request-head reader (the test crates that use
// this module declare `mod common;` beside it).
use crate::common::{read_request_head, serve_loopback, RequestHead};

/// One request the provider received.
#[derive(Debug, Clone)]
pub struct SpRequest {
    pub method: String,
    pub path: String,
    /// The `Accept-Encoding` header, if any.
    pub accept_encoding: Option<String>,
}

#[derive(Default)]
struct SpState {
    pieces: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// GETs still to answer 429 (`u32::MAX`: all of them).
    busy_gets: AtomicU32,
    compress: AtomicBool,
    /// When not 0, every GET of a known piece answers this status (a HEAD
    /// still answers 200: a provider whose retrieval path is broken).
    get_status: AtomicU32,
    /// While set, HEAD requests are logged but not answered.
    hold_heads: AtomicBool,
    log: Mutex<Vec<SpRequest>>,
}

/// A mock Curio `/piece/` endpoint on loopback.
pub struct MockSp {
    pub addr: SocketAddr,
    state: Arc<SpState>,
    _rt: tokio::runtime::Runtime,
}

impl MockSp {
    pub fn start() -> MockSp {
        let state = Arc::new(SpState::default());
        let (addr, rt) = serve_loopback(1, state.clone(), serve_conn);
        MockSp {
            addr,
            state,
            _rt: rt,
        }
    }

    /// The service URL (what the registry's `serviceURL` capability holds).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_piece(&self, cid: &str, data: Vec<u8>) {
        self.state
            .pieces
            .lock()
            .unwrap()
            .insert(cid.to_string(), Arc::new(data));
    }

    /// Answers every GET with 429 (HEAD still answers: the probe found it idle).
    pub fn set_busy(&self) {
        self.state.busy_gets.store(u32::MAX, Ordering::SeqCst);
    }

    /// Every GET of a known piece answers `status` with a short body; HEAD
    /// still answers 200 with the piece's headers.
    pub fn set_get_status(&self, status: u16) {
        self.state
            .get_status
            .store(u32::from(status), Ordering::SeqCst);
    }

    /// HEAD requests wait (logged) until [`MockSp::release_heads`].
    pub fn hold_heads(&self) {
        self.state.hold_heads.store(true, Ordering::SeqCst);
    }

    pub fn release_heads(&self) {
        self.state.hold_heads.store(false, Ordering::SeqCst);
    }

    /// Compresses every answer with a body.
    pub fn set_compress(&self) {
        self.state.compress.store(true, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<SpRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests with this method.
    pub fn count(&self, method: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method)
            .count()
    }
}

fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        size - 1
    } else {
        b.parse::<u64>().ok()?.min(size - 1)
    };
    (a <= b).then_some((a, b))
}

async fn serve_conn(mut sock: TcpStream, st: Arc<SpState>) -> std::io::Result<()> {
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
        st.log.lock().unwrap().push(SpRequest {
            method: method.clone(),
            path: path.clone(),
            accept_encoding: headers.get("accept-encoding").cloned(),
        });
        let cid = path
            .strip_prefix("/piece/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        while method == "HEAD" && st.hold_heads.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let data = st.pieces.lock().unwrap().get(&cid).cloned();
        let Some(data) = data else {
            let body = "piece not found\n";
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                if method == "HEAD" { "" } else { body }
            );
            sock.write_all(resp.as_bytes()).await?;
            continue;
        };
        if method == "GET"
            && st
                .busy_gets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                    0 => None,
                    u32::MAX => Some(u32::MAX),
                    n => Some(n - 1),
                })
                .is_ok()
        {
            // Curio's concurrency limit: 429 at once, no Retry-After.
            let body = "Too Many Requests\n";
            let resp = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
            continue;
        }
        let get_status = st.get_status.load(Ordering::SeqCst);
        if method == "GET" && get_status != 0 {
            let body = "retrieval failed\n";
            let resp = format!(
                "HTTP/1.1 {get_status} Failed\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
            continue;
        }
        let size = data.len() as u64;
        let common = format!(
            "ETag: \"{cid}\"\r\nCache-Control: public, max-age=29030400, immutable\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n"
        );
        if method == "GET" && st.compress.load(Ordering::SeqCst) {
            // Compressed: Range and Content-Length dropped, the connection
            // closes after the body.
            let body = gzip_stored(&data);
            let resp = format!(
                "HTTP/1.1 200 OK\r\n{common}Content-Encoding: gzip\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(resp.as_bytes()).await?;
            sock.write_all(&body).await?;
            return Ok(());
        }
        let range = headers.get("range").and_then(|r| parse_range(r, size));
        let (status, extra, body) = match range {
            Some((a, b)) => (
                "206 Partial Content",
                format!("Content-Range: bytes {a}-{b}/{size}\r\n"),
                &data[a as usize..=b as usize],
            ),
            None => ("200 OK", String::new(), &data[..]),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\n{common}{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await?;
        if method != "HEAD" {
            sock.write_all(body).await?;
        }
    }
}

/// A real gzip stream (RFC 1952) of `data` in stored deflate blocks, as
/// `gzip -0` would write it: any gzip reader inflates it back to `data`.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65_535).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i == last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
