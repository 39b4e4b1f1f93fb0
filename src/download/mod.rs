//! `beam-edge get`: downloads a piece or an asset and checks every byte
//! against its PieceCID before the file is put in place.
//!
//! The target is a PieceCID, an asset id (the PieceCID of an asset manifest,
//! see [`crate::manifest`]) or an `http(s)` URL naming one
//! (`…/piece/<cid>`, `…/asset/<id>`, Beam's `…/<cid>`). Bytes come from an
//! edge (`--edge`), a storage provider (`--provider`, Curio's `/piece/<cid>`)
//! or Beam (`https://<payer>.<network domain>/<cid>`, from the config's
//! `upstream` section), in ranged requests of [`CHUNK`] bytes, `-j N` at once.
//! Chunks are written in file order into `FILE.part` while a streaming CommP
//! hashes them: each piece is compared with its CID as soon as its last byte
//! arrives. Only a file whose every piece matched is renamed to `FILE`.
//!
//! Resume: `FILE.part` always holds a prefix of the file (chunks are written
//! in order), so a new run hashes that prefix again and asks only for the
//! rest. A piece that does not match its CID is cut off the `.part` (the
//! verified pieces before it stay) and the run exits non-zero naming it.
//!
//! Memory stays flat: at most `2 × jobs` chunks are in flight or waiting for
//! their turn to be written. This is not a general HTTP downloader: a target
//! whose URL names no PieceCID is refused, since nothing could check it.
//!
//! Files: `plan` (what the target is made of), `transfer` (ranged fetches,
//! their checks and retries, chunk order), `verify` (hashing in file order);
//! this file holds the options, the errors and the run that ties them.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::progress::Progress;

mod plan;
mod transfer;
mod verify;

use plan::*;
use transfer::*;
use verify::*;

/// Bytes per ranged request. Large enough that a request's round trip is
/// small beside its transfer, small enough that `2 × jobs` of them in
/// memory stay modest (16 jobs: 128 MiB).
pub const CHUNK: u64 = 4 << 20;

/// Attempts per chunk for a transient failure (connection, timeout, 5xx,
/// 429, short body, a 200 that ignored the Range).
const ATTEMPTS: u32 = 4;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// A PieceCID, an asset id or an http(s) URL.
    pub target: String,
    /// Output file; `None`: the asset's file name, else the CID.
    pub output: Option<PathBuf>,
    /// An edge's base URL (`http://edge:8080`): `/piece/<cid>` there.
    pub edge: Option<String>,
    /// A storage provider's service URL: `/piece/<cid>` there.
    pub provider: Option<String>,
    /// Beam's base URL (`https://<payer>.filbeam.io`), from the config.
    pub beam: Option<String>,
    /// Ranged requests at once (1–64).
    pub jobs: usize,
    /// Treat a bare CID as a piece even when it is an asset manifest.
    pub piece_only: bool,
    /// Hashing threads.
    pub hash_threads: usize,
}

/// Why a download failed. Every variant says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The target is neither a CID nor a usable URL.
    #[error("{0}")]
    BadTarget(String),
    /// No source was given for a bare CID.
    #[error("no source for {0}: give --edge URL, --provider URL, or a payer (--payer 0x…, --network) to read from Beam")]
    NoSource(String),
    /// The server answered with a status that retrying will not change.
    #[error("{url}: HTTP {status}: {meaning}{detail}")]
    Status {
        /// The request's URL.
        url: String,
        /// Its status.
        status: u16,
        /// What the status means here.
        meaning: &'static str,
        /// The first line of the body, if any.
        detail: String,
    },
    /// Transport or protocol failure after every retry.
    #[error("{url}: {reason} (after {ATTEMPTS} attempts)")]
    Transfer {
        /// The request's URL.
        url: String,
        /// The last failure.
        reason: String,
    },
    /// A piece did not hash to its CID.
    #[error("piece {index} ({cid}) does not hash to its PieceCID (got {got}): the source sent wrong bytes; {part} keeps the {kept} bytes verified before it, run again to resume")]
    Mismatch {
        /// 1-based index of the piece in the file (1 for a lone piece).
        index: usize,
        /// Its CID.
        cid: String,
        /// What the bytes hash to.
        got: String,
        /// The partial file.
        part: String,
        /// Bytes left in it.
        kept: u64,
        /// Some of the piece's bytes came from an earlier run's `.part`
        /// (which may be what was wrong: worth one fresh try).
        from_resume: bool,
    },
    /// The asset manifest is not usable.
    #[error("asset {id}: {reason}")]
    Manifest {
        /// The asset id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else (runtime start-up, a client that cannot be built).
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GetError + '_ {
    move |source| GetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The `.part` file beside `out`.
pub fn part_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Runs `beam-edge get`; returns the final file's path.
pub fn get_command(o: &GetOptions) -> Result<PathBuf, GetError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| GetError::Other(format!("cannot start the async runtime: {e}")))?;
    match rt.block_on(get(o)) {
        // The bad piece was partly read back from the .part, which now ends
        // before it: fetch it fresh once before blaming the source.
        Err(GetError::Mismatch {
            index,
            from_resume: true,
            ..
        }) => {
            eprintln!("piece {index} did not match and was partly from the earlier run's .part: fetching it again");
            rt.block_on(get(o))
        }
        other => other,
    }
}

async fn get(o: &GetOptions) -> Result<PathBuf, GetError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(o.jobs.max(1))
        .build()
        .map_err(|e| GetError::Other(format!("cannot build the HTTP client: {e}")))?;
    let plan = plan(&client, o).await?;
    let out = o
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.name));
    let part = part_path(&out);
    let total: u64 = plan.pieces.iter().map(|p| p.size).sum();
    let mut verifier = Verifier::new(
        plan.pieces
            .iter()
            .map(|p| (p.cid.clone(), p.size))
            .collect(),
        o.hash_threads.max(1),
    );

    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part)
        .map_err(io_err(&part))?;
    let mut have = file.metadata().map_err(io_err(&part))?.len();
    if have > total {
        return Err(GetError::BadTarget(format!(
            "{} holds {have} bytes, more than the {total} of {}: it is not a partial download of this target; remove it",
            part.display(),
            plan.what
        )));
    }
    // Hash the prefix an earlier run left; a piece in it that does not match
    // is cut off and fetched again.
    if have > 0 {
        eprintln!(
            "resuming {}: {have} of {total} bytes already there, checking them",
            part.display()
        );
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < have {
            let n = (have - pos).min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..n]).map_err(io_err(&part))?;
            if let Err(m) = verifier.feed(&buf[..n]) {
                eprintln!(
                    "piece {} ({}) in {} does not match its CID: fetching it again",
                    m.index,
                    m.cid,
                    part.display()
                );
                have = m.start;
                file.set_len(have).map_err(io_err(&part))?;
                break;
            }
            pos += n as u64;
        }
        file.seek(SeekFrom::Start(have)).map_err(io_err(&part))?;
    }

    eprintln!(
        "getting {} ({total} bytes) into {}, {} request(s) at once",
        plan.what,
        out.display(),
        o.jobs
    );
    let progress = Progress::resumed(total, have);
    let jobs = o.jobs.clamp(1, 64);
    let window = Arc::new(Semaphore::new(2 * jobs));
    let cursor = Arc::new(Mutex::new(Cursor::new(
        plan.pieces.iter().map(|p| p.size).collect(),
        have,
    )));
    let pieces = Arc::new(plan.pieces);
    let (tx, rx) = mpsc::unbounded_channel::<(u64, Bytes, OwnedSemaphorePermit)>();
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<GetError>();

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (client, window, cursor, pieces, tx, fail_tx, progress) = (
            client.clone(),
            window.clone(),
            cursor.clone(),
            pieces.clone(),
            tx.clone(),
            fail_tx.clone(),
            progress.clone(),
        );
        workers.spawn(async move {
            loop {
                // The permit comes first, so the lowest chunk not yet written
                // is always being fetched: the window cannot deadlock.
                let Ok(permit) = window.clone().acquire_owned().await else {
                    return;
                };
                let next = cursor
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_chunk();
                let Some(c) = next else { return };
                let p = &pieces[c.piece];
                match fetch_range(
                    &client,
                    &p.url,
                    c.start,
                    c.end,
                    Some(p.size),
                    Some(&progress),
                )
                .await
                {
                    Ok(bytes) => {
                        if tx.send((c.seq, bytes, permit)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = fail_tx.send(e);
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    drop(fail_tx);

    // The writer: chunks into the file in order, through the verifier.
    let writer_part = part.clone();
    let resumed_from = have;
    let writer = tokio::task::spawn_blocking(move || -> Result<(), GetError> {
        let mut rx = rx;
        let mut pending: BTreeMap<u64, (Bytes, OwnedSemaphorePermit)> = BTreeMap::new();
        let mut next = 0u64;
        let mut written = have;
        while let Some((seq, bytes, permit)) = rx.blocking_recv() {
            pending.insert(seq, (bytes, permit));
            while let Some((bytes, permit)) = pending.remove(&next) {
                if let Err(m) = verifier.feed(&bytes) {
                    // Keep only what was verified before the bad piece.
                    file.set_len(m.start).map_err(io_err(&writer_part))?;
                    return Err(GetError::Mismatch {
                        index: m.index,
                        cid: m.cid,
                        got: m.got,
                        part: writer_part.display().to_string(),
                        kept: m.start,
                        from_resume: m.start < resumed_from,
                    });
                }
                file.write_all(&bytes).map_err(io_err(&writer_part))?;
                written += bytes.len() as u64;
                next += 1;
                drop(permit);
            }
        }
        if written != total || verifier.index != verifier.pieces.len() {
            // The workers stopped early; their error says why.
            return Err(GetError::Other(format!(
                "stopped after {written} of {total} bytes"
            )));
        }
        file.sync_all().map_err(io_err(&writer_part))?;
        Ok(())
    });

    let written = writer
        .await
        .map_err(|e| GetError::Other(format!("the writer failed: {e}")))?;
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    progress.finish();
    if let Ok(e) = fail_rx.try_recv() {
        if !matches!(written, Err(GetError::Mismatch { .. })) {
            return Err(e);
        }
    }
    written?;
    std::fs::rename(&part, &out).map_err(io_err(&out))?;
    eprintln!(
        "verified {} piece(s) against their PieceCID: {} ({total} bytes)",
        pieces.len(),
        out.display()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_targets_name_their_cid_and_where_pieces_live() {
        let cid = "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";
        let (u, c, asset) = parse_url_target(&format!("http://e:8080/piece/{cid}")).unwrap();
        assert_eq!(c.to_string(), cid);
        assert!(!asset);
        assert_eq!(u.of(&c), format!("http://e:8080/piece/{cid}"));
        let (u, c, asset) =
            parse_url_target(&format!("https://0xab.filbeam.io/{cid}/a.mp4")).unwrap();
        assert!(!asset);
        assert_eq!(u.of(&c), format!("https://0xab.filbeam.io/{cid}/a.mp4"));
        let (u, c, asset) = parse_url_target(&format!("http://e/x/asset/{cid}")).unwrap();
        assert!(asset);
        assert_eq!(u.of(&c), format!("http://e/x/piece/{cid}"));
        for bad in ["http://e/piece/nope", "ftp://e/x", "http:///x"] {
            assert!(parse_url_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunks_follow_the_file_and_never_cross_a_piece() {
        let mut c = Cursor::new(vec![10 << 20, 3], (4 << 20) + 7);
        let spans: Vec<(usize, u64, u64)> = std::iter::from_fn(|| c.next_chunk())
            .map(|c| (c.piece, c.start, c.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, (4 << 20) + 7, (8 << 20) + 6),
                (0, (8 << 20) + 7, (10 << 20) - 1),
                (1, 0, 2)
            ]
        );
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-6/*"), Some((5, 6, None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
