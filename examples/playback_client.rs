//! A player stand-in for benchmarks: reads a piece from beam-edge as
//! consecutive `chunk`-byte ranges at a fixed bitrate, and counts the reads
//! that waited on the upstream. It is not a media player: it neither parses
//! nor decodes anything, and it never seeks.
//!
//! Playback starts when the first read completes; from then on read `i` is
//! sent when the play position reaches chunk `i - ahead` (the player keeps
//! `ahead` chunks buffered), or as soon as read `i - 1` is done if that is
//! later. A read that starts past the first window counts as a *stall* when
//! its time to first byte exceeds `--stall-ttfb` (it waited on the upstream;
//! a read that joins a window already streaming in reports `X-Cache: MISS`
//! but does not wait, so `X-Cache` alone is reported, not judged); it is
//! *late* when it completes after the play position needed it (a visible
//! rebuffer).
//!
//! ```text
//! cargo run --release --example playback_client -- --url http://127.0.0.1:8080/piece/<cid> \
//!     [--bitrate 8MB/s] [--chunk 1MiB] [--verify FILE]
//! ```
//!
//! Prints one JSON line with the counts on stdout, and one line per stall on stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Plays a piece through beam-edge at a fixed bitrate and counts stalls")]
struct Args {
    /// `http://HOST:PORT/piece/<cid>`.
    #[arg(long)]
    url: String,
    /// Playback rate (`8MB/s`, `6MiB/s`, bytes per second).
    #[arg(long, default_value = "8MB/s", value_parser = parse_rate)]
    bitrate: u64,
    /// Bytes per range request (`1MiB`, bytes).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    chunk: u64,
    /// Reads starting below this offset are not judged (the cold first window).
    #[arg(long, default_value_t = 1_040_384)]
    first_window: u64,
    /// A read whose first byte takes longer than this is a stall.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    stall_ttfb: Duration,
    /// Chunks the player keeps buffered ahead of the play position.
    #[arg(long, default_value_t = 1)]
    ahead: u64,
    /// Compare every byte with this file.
    #[arg(long)]
    verify: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn parse_number_unit(s: &str) -> Result<(f64, String), String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid number in {s:?}"))?;
    Ok((n, unit.trim().to_string()))
}

fn unit_multiplier(unit: &str) -> Result<f64, String> {
    Ok(match unit {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("unknown unit {u:?}")),
    })
}

/// `8MB/s` → 8,000,000 bytes/s.
fn parse_rate(s: &str) -> Result<u64, String> {
    let (n, unit) = parse_number_unit(s.trim().trim_end_matches("/s"))?;
    let r = (n * unit_multiplier(&unit)?) as u64;
    if r == 0 {
        return Err("must be positive".into());
    }
    Ok(r)
}

/// `1MiB` → 1,048,576 bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    parse_rate(s)
}

/// The total size from `Content-Range: bytes A-B/SIZE`.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

struct Read {
    start: u64,
    ttfb: Duration,
    x_cache: String,
    late: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    match tokio::time::timeout(args.timeout, play(&args)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("playback_client: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("playback_client: gave up after {:?}", args.timeout);
            std::process::exit(1);
        }
    }
}

async fn play(args: &Args) -> Result<(), String> {
    let expected = match &args.verify {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let per_chunk = Duration::from_secs_f64(args.chunk as f64 / args.bitrate as f64);
    let begun = Instant::now();
    let mut size: Option<u64> = expected.as_ref().map(|e| e.len() as u64);
    let mut reads: Vec<Read> = Vec::new();
    let mut play_start: Option<Instant> = None;
    let mut offset = 0u64;
    let mut i = 0u64;
    while size.is_none_or(|s| offset < s) {
        if let Some(t0) = play_start {
            let due = t0 + per_chunk * (i.saturating_sub(args.ahead) as u32);
            tokio::time::sleep_until(due.into()).await;
        }
        let end = offset + args.chunk - 1;
        let end = size.map_or(end, |s| end.min(s - 1));
        let sent = Instant::now();
        let resp = client
            .get(&args.url)
            .header("Range", format!("bytes={offset}-{end}"))
            .send()
            .await
            .map_err(|e| format!("read {i} ({offset}-{end}): {e}"))?;
        let ttfb = sent.elapsed();
        if resp.status().as_u16() != 206 {
            return Err(format!(
                "read {i} ({offset}-{end}): status {}",
                resp.status()
            ));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let x_cache = header("x-cache");
        if size.is_none() {
            size = total_of(&header("content-range"));
            if size.is_none() {
                return Err("first response has no Content-Range total".into());
            }
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("read {i} ({offset}-{end}) body: {e}"))?;
        if body.len() as u64 != end - offset + 1 {
            return Err(format!(
                "read {i}: {} bytes, expected {}",
                body.len(),
                end - offset + 1
            ));
        }
        if let Some(exp) = &expected {
            if body[..] != exp[offset as usize..=end as usize] {
                return Err(format!(
                    "read {i} ({offset}-{end}): bytes differ from the file"
                ));
            }
        }
        let done = Instant::now();
        // The play position needs chunk i at t0 + i·per_chunk.
        let late = play_start.is_some_and(|t0| done > t0 + per_chunk * (i as u32));
        if play_start.is_none() {
            play_start = Some(done);
        }
        reads.push(Read {
            start: offset,
            ttfb,
            x_cache,
            late,
        });
        offset = end + 1;
        i += 1;
    }
    let judged: Vec<&Read> = reads
        .iter()
        .filter(|r| r.start >= args.first_window)
        .collect();
    let mut stalls = 0;
    let mut not_hit = 0;
    let mut slow = 0;
    for r in &judged {
        let miss = r.x_cache != "HIT";
        let is_slow = r.ttfb > args.stall_ttfb;
        not_hit += miss as u64;
        slow += is_slow as u64;
        // A read that joined a window already streaming in is not HIT but
        // did not wait: only waiting counts as a stall.
        if is_slow {
            stalls += 1;
            eprintln!(
                "stall: read at byte {} X-Cache {} ttfb {:.1} ms",
                r.start,
                r.x_cache,
                r.ttfb.as_secs_f64() * 1e3
            );
        }
    }
    let mut ttfbs: Vec<f64> = judged.iter().map(|r| r.ttfb.as_secs_f64() * 1e3).collect();
    ttfbs.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        if ttfbs.is_empty() {
            0.0
        } else {
            ttfbs[((ttfbs.len() - 1) as f64 * p).round() as usize]
        }
    };
    let late = reads.iter().filter(|r| r.late).count();
    println!(
        "{{\"reads\":{},\"judged\":{},\"stalls\":{stalls},\"not_hit\":{not_hit},\"slow_ttfb\":{slow},\"late\":{late},\
         \"first_ttfb_ms\":{:.1},\"ttfb_p50_ms\":{:.2},\"ttfb_max_ms\":{:.2},\"bytes\":{},\"seconds\":{:.2},\"verified\":{}}}",
        reads.len(),
        judged.len(),
        reads.first().map_or(0.0, |r| r.ttfb.as_secs_f64() * 1e3),
        pct(0.5),
        pct(1.0),
        offset,
        begun.elapsed().as_secs_f64(),
        expected.is_some()
    );
    Ok(())
}
