//! The `piece-cid` command: print the PieceCID of files.
//!
//! What it is: for each file (`-` is standard input) one line
//! `<cid>  <file>` on standard output, the v2 CID unless `--v1` is asked for.
//! Files are read through one fixed 1 MiB buffer and hashed on all available
//! cores, so memory stays constant (about 1 MiB plus 8 MiB per core) whatever
//! the file size.
//!
//! The layer (`--layer OUT`, one input file only, since one output path
//! cannot name several layers): the window roots of [`crate::piece::commp`],
//! written to OUT as raw 32-byte nodes concatenated, node `i` at offset
//! `32 * i`, no header. Raw so a cache can read node `i` with one `pread`;
//! the window size is not stored, so the reader must know it. OUT is written
//! to `OUT.tmp` first and renamed, so a crash never leaves a torn layer.
//!
//! Progress: a one-line counter on standard error, only when standard error
//! is a terminal and the input is a regular file of at least 256 MiB, so
//! pipes and logs never see it.
//!
//! What it is not: argument parsing. The binary's own CLI maps its flags to
//! [`piece_cid_command`].

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::piece::commp::{CommP, CommpError, Node};
use crate::piece::PieceCid;

/// Size of the one read buffer.
const READ_BUF: usize = 1 << 20;

/// Inputs smaller than this hash in a couple of seconds: no progress line.
const PROGRESS_MIN_BYTES: u64 = 256 << 20;

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Why `piece-cid` failed.
#[derive(Debug, thiserror::Error)]
pub enum PieceCidCommandError {
    /// No input given.
    #[error("no input files (use - for standard input)")]
    NoInput,
    /// `--layer` with more than one input.
    #[error("--layer takes exactly one input file, got {count}")]
    LayerNeedsOneFile {
        /// Number of inputs given.
        count: usize,
    },
    /// An input could not be opened or read.
    #[error("reading {path}: {source}")]
    Read {
        /// The input as given.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The input cannot be hashed (too small, bad window size, ...).
    #[error("{path}: {source}")]
    Commp {
        /// The input as given.
        path: String,
        /// Why.
        source: CommpError,
    },
    /// The layer file could not be written.
    #[error("writing layer to {path}: {source}")]
    WriteLayer {
        /// The layer path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Standard output could not be written.
    #[error("writing output: {0}")]
    Output(io::Error),
}

/// Runs `piece-cid`: prints `<cid>  <file>` for each of `files` on standard
/// output (v1 form when `v1`), and writes the layer of `window_padded`
/// windows to `layer_out` when given (one file only).
pub fn piece_cid_command(
    files: &[PathBuf],
    v1: bool,
    layer_out: Option<&Path>,
    window_padded: u64,
) -> Result<(), PieceCidCommandError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    write_piece_cids(files, v1, layer_out, window_padded, &mut out)
}

/// [`piece_cid_command`] writing its lines to `out` instead of standard
/// output.
pub fn write_piece_cids(
    files: &[PathBuf],
    v1: bool,
    layer_out: Option<&Path>,
    window_padded: u64,
    out: &mut dyn Write,
) -> Result<(), PieceCidCommandError> {
    if files.is_empty() {
        return Err(PieceCidCommandError::NoInput);
    }
    if layer_out.is_some() && files.len() != 1 {
        return Err(PieceCidCommandError::LayerNeedsOneFile { count: files.len() });
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut buf = vec![0u8; READ_BUF];
    for file in files {
        let name = file.display().to_string();
        let mut hasher = CommP::with_threads(threads);
        if layer_out.is_some() {
            hasher = hasher
                .layer(window_padded)
                .map_err(|source| PieceCidCommandError::Commp {
                    path: name.clone(),
                    source,
                })?;
        }
        let (cid, layer) = hash_input(file, &name, hasher, &mut buf)?;
        let shown = if v1 { cid.to_v1() } else { cid };
        writeln!(out, "{shown}  {name}").map_err(PieceCidCommandError::Output)?;
        if let Some(path) = layer_out {
            write_layer(path, &layer)?;
        }
    }
    out.flush().map_err(PieceCidCommandError::Output)
}

fn hash_input(
    file: &Path,
    name: &str,
    hasher: CommP,
    buf: &mut [u8],
) -> Result<(PieceCid, Vec<Node>), PieceCidCommandError> {
    let read_err = |source| PieceCidCommandError::Read {
        path: name.to_owned(),
        source,
    };
    if file.as_os_str() == "-" {
        return hash_reader(io::stdin().lock(), name, hasher, buf, None).map_err(read_err)?;
    }
    let f = File::open(file).map_err(read_err)?;
    let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    let progress = size.filter(|&s| s >= PROGRESS_MIN_BYTES && io::stderr().is_terminal());
    hash_reader(f, name, hasher, buf, progress).map_err(read_err)?
}

/// Reads `reader` to the end into `hasher`. The outer `Result` is the I/O
/// error, the inner one the hashing outcome.
fn hash_reader(
    mut reader: impl Read,
    name: &str,
    mut hasher: CommP,
    buf: &mut [u8],
    progress_total: Option<u64>,
) -> io::Result<Result<(PieceCid, Vec<Node>), PieceCidCommandError>> {
    let mut last_draw = Instant::now();
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(total) = progress_total {
            if last_draw.elapsed() >= PROGRESS_EVERY {
                last_draw = Instant::now();
                let done = hasher.len();
                eprint!(
                    "\r{name}: {} / {} MiB ({}%)",
                    done >> 20,
                    total >> 20,
                    done * 100 / total.max(1)
                );
            }
        }
    }
    if progress_total.is_some() {
        // Erase the progress line so the result line starts clean.
        eprint!("\r\x1b[K");
    }
    Ok(hasher
        .finish_with_layer()
        .map_err(|source| PieceCidCommandError::Commp {
            path: name.to_owned(),
            source,
        }))
}

fn write_layer(path: &Path, layer: &[Node]) -> Result<(), PieceCidCommandError> {
    let write_err = |source| PieceCidCommandError::WriteLayer {
        path: path.display().to_string(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let bytes: Vec<u8> = layer.iter().flatten().copied().collect();
    std::fs::write(&tmp, &bytes).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}
