//! A mock Beam for benchmarks: serves `DIR/<cid>` for any path ending in
//! `/<cid>`, over hand-rolled HTTP/1.1 on tokio, with real single-range
//! semantics (206 + `Content-Range`; 200 without `Range`, with several
//! ranges or with an invalid one; 416 when unsatisfiable), keep-alive, an
//! optional latency before each response header and an optional rate limit
//! per connection on the body. It is not a Beam model beyond that: no
//! payers, no cold-cache 200s, no faults besides `--stall` (the integration
//! tests' mock has those).
//!
//! ```text
//! cargo run --release --example bench_upstream -- --dir DIR --listen 127.0.0.1:PORT \
//!     [--latency 80ms] [--rate 40MB/s] [--stall 2s --stall-every 20] [--log FILE]
//! ```
//!
//! `GET /__stats` answers `{"requests":N,"body_bytes":N,"connections":N}`
//! (piece requests and the body bytes written for them); the same line is
//! printed to stderr on SIGTERM or SIGINT.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "A fast mock Beam serving DIR/<cid> with single-range semantics")]
struct Args {
    /// Directory holding one file per piece, named by its PieceCID.
    #[arg(long)]
    dir: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Wait this long before each response header (e.g. `80ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// A stalling holder: every `--stall-every`-th piece request waits this
    /// much longer before its response header (e.g. `2s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    stall: Option<Duration>,
    /// Which requests stall: every Nth (20: 5 %). Deterministic, so two runs
    /// stall the same requests.
    #[arg(long, default_value_t = 20)]
    stall_every: u64,
    /// Body rate limit per connection (`40MB/s`, `32MiB/s`, bytes per second).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Append one line per request (method, path, range, status, body
    /// bytes, and when it arrived and ended, in ms since the Unix epoch).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// `40MB/s` → 40,000,000; `32MiB/s` → 33,554,432; a bare number is bytes/s.
fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s");
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid rate {s:?}"))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("invalid rate unit {u:?} in {s:?}")),
    };
    let r = (n * mult) as u64;
    if r == 0 {
        return Err(format!("rate must be positive: {s:?}"));
    }
    Ok(r)
}

struct Server {
    dir: PathBuf,
    latency: Option<Duration>,
    stall: Option<(Duration, u64)>,
    rate: Option<u64>,
    log: Option<Mutex<File>>,
    requests: AtomicU64,
    body_bytes: AtomicU64,
    connections: AtomicU64,
}

impl Server {
    fn stats_json(&self) -> String {
        format!(
            "{{\"requests\":{},\"body_bytes\":{},\"connections\":{}}}",
            self.requests.load(Ordering::Relaxed),
            self.body_bytes.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed)
        )
    }

    fn log_line(&self, line: &str) {
        if let Some(f) = &self.log {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Milliseconds since the Unix epoch, for the request log.
fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One range spec, RFC 9110 §14.1.2. Several ranges or bad syntax: the
/// whole file (a server may ignore `Range`).
fn parse_range(header: Option<&str>, size: u64) -> Want {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Want::Whole;
    };
    if spec.contains(',') {
        return Want::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if a.is_empty() {
        let Some(n) = Some(b)
            .filter(|b| digits(b))
            .and_then(|b| b.parse::<u64>().ok())
        else {
            return Want::Whole;
        };
        if n == 0 || size == 0 {
            return Want::Unsatisfiable;
        }
        return Want::Part(size.saturating_sub(n), size - 1);
    }
    let Some(a) = Some(a)
        .filter(|a| digits(a))
        .and_then(|a| a.parse::<u64>().ok())
    else {
        return Want::Whole;
    };
    let b = if b.is_empty() {
        u64::MAX
    } else {
        match Some(b)
            .filter(|b| digits(b))
            .and_then(|b| b.parse::<u64>().ok())
        {
            Some(b) if b >= a => b,
            _ => return Want::Whole,
        }
    };
    if a >= size {
        return Want::Unsatisfiable;
    }
    Want::Part(a, b.min(size - 1))
}

/// A piece name: the last path segment, base32/base58 characters only (no
/// way out of `--dir`).
fn cid_of(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or_default();
    let cid = path.rsplit('/').next()?;
    (!cid.is_empty() && cid.bytes().all(|c| c.is_ascii_alphanumeric())).then_some(cid)
}

async fn simple(
    sock: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        body.len()
    );
    if !head_only {
        resp.push_str(body);
    }
    sock.write_all(resp.as_bytes()).await
}

/// Writes `len` bytes of `file` from `offset`, paced to `rate` bytes/s.
/// Reads are synchronous `pread`s of page-cached data (tens of µs per
/// chunk): cheaper than a blocking-pool hop per chunk for a benchmark tool.
async fn send_body(
    sock: &mut TcpStream,
    srv: &Server,
    file: &File,
    offset: u64,
    len: u64,
) -> std::io::Result<u64> {
    let chunk = if srv.rate.is_some() {
        64 << 10
    } else {
        256 << 10
    };
    let mut buf = vec![0u8; chunk];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(chunk as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset + sent)?;
        sock.write_all(&buf[..n]).await?;
        sent += n as u64;
        srv.body_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(rate) = srv.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let elapsed = started.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    Ok(sent)
}

async fn serve_conn(mut sock: TcpStream, srv: Arc<Server>) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if buf.len() > 64 << 10 {
                return simple(&mut sock, "431 Request Header Fields Too Large", "", false).await;
            }
            let mut tmp = [0u8; 4096];
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        let mut range = None;
        let mut close = false;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim();
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                } else if k.eq_ignore_ascii_case("connection")
                    && v.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                } else if k.eq_ignore_ascii_case("content-length") && v.trim() != "0" {
                    // No request bodies here: do not try to find the next request.
                    close = true;
                }
            }
        }
        let arrived = epoch_ms();
        let head_only = method == "HEAD";
        if method != "GET" && !head_only {
            simple(&mut sock, "405 Method Not Allowed", "GET or HEAD\n", false).await?;
            return Ok(());
        }
        if path == "/__stats" {
            simple(&mut sock, "200 OK", &(srv.stats_json() + "\n"), head_only).await?;
            if close {
                return Ok(());
            }
            continue;
        }
        let nth = srv.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(d) = srv.latency {
            tokio::time::sleep(d).await;
        }
        if let Some((d, every)) = srv.stall {
            if nth.is_multiple_of(every.max(1)) {
                tokio::time::sleep(d).await;
            }
        }
        let file = cid_of(&path).and_then(|cid| File::open(srv.dir.join(cid)).ok());
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len());
        let (Some(file), Some(size)) = (file, size) else {
            simple(&mut sock, "404 Not Found", "piece not found\n", head_only).await?;
            srv.log_line(&format!(
                "{method} {path} range={} status=404 bytes=0",
                range.as_deref().unwrap_or("-")
            ));
            if close {
                return Ok(());
            }
            continue;
        };
        let (status, offset, len) = match parse_range(range.as_deref(), size) {
            Want::Whole => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n\r\n"
                );
                sock.write_all(resp.as_bytes()).await?;
                (200, 0, size)
            }
            Want::Part(a, b) => {
                let resp = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n\r\n",
                    b - a + 1
                );
                sock.write_all(resp.as_bytes()).await?;
                (206, a, b - a + 1)
            }
            Want::Unsatisfiable => {
                let resp = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\n\r\n"
                );
                sock.write_all(resp.as_bytes()).await?;
                (416, 0, 0)
            }
        };
        let sent = if head_only || len == 0 {
            0
        } else {
            send_body(&mut sock, &srv, &file, offset, len).await?
        };
        srv.log_line(&format!(
            "{method} {path} range={} status={status} bytes={sent} arrived_ms={arrived} done_ms={}",
            range.as_deref().unwrap_or("-"),
            epoch_ms()
        ));
        if close {
            return Ok(());
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.dir.is_dir() {
        eprintln!(
            "bench_upstream: --dir {} is not a directory",
            args.dir.display()
        );
        std::process::exit(2);
    }
    let log = match &args.log {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => None,
    };
    let srv = Arc::new(Server {
        dir: args.dir.clone(),
        latency: args.latency,
        stall: args.stall.map(|d| (d, args.stall_every)),
        rate: args.rate,
        log,
        requests: AtomicU64::new(0),
        body_bytes: AtomicU64::new(0),
        connections: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!("bench_upstream listening on {}", listener.local_addr()?);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let accept = {
            let srv = srv.clone();
            async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        // EMFILE and the like: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    srv.connections.fetch_add(1, Ordering::Relaxed);
                    let srv = srv.clone();
                    tokio::spawn(async move {
                        let _ = serve_conn(sock, srv).await;
                    });
                }
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("{}", srv.stats_json());
        Ok::<(), std::io::Error>(())
    })?;
    // Connections still open would keep the runtime's drop waiting on nothing
    // useful: leave at once.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Want::Whole);
        assert_eq!(parse_range(Some("bytes=2-5"), 10), Want::Part(2, 5));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Want::Part(2, 9));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Want::Part(8, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Want::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Want::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Want::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Want::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Want::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Want::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Want::Whole);
        assert_eq!(parse_rate("40MB/s"), Ok(40_000_000));
        assert_eq!(parse_rate("2MiB/s"), Ok(2 << 20));
        assert!(cid_of("/0xaa/baga6ea4seaq").is_some());
        assert!(cid_of("/0xaa/..").is_none());
    }
}
