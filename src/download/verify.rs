//! Verification: the file's bytes hashed in order, piece by piece, each piece
//! compared with its PieceCID as soon as its last byte is in.

use crate::piece::commp::CommP;
use crate::piece::{CidVersion, PieceCid};

/// Hashes the file's bytes in order, piece by piece, and compares each
/// piece with its CID when its last byte went in.
pub(super) struct Verifier {
    pub(super) pieces: Vec<(PieceCid, u64)>,
    /// Index of the piece being hashed.
    pub(super) index: usize,
    /// Bytes of it hashed so far.
    pub(super) in_piece: u64,
    /// File offset where it starts.
    pub(super) piece_start: u64,
    pub(super) hasher: CommP,
    pub(super) threads: usize,
}

/// A piece that did not match: which, what it hashed to, where it starts.
pub(super) struct Mismatch {
    pub(super) index: usize,
    pub(super) cid: String,
    pub(super) got: String,
    pub(super) start: u64,
}

impl Verifier {
    pub(super) fn new(pieces: Vec<(PieceCid, u64)>, threads: usize) -> Verifier {
        Verifier {
            pieces,
            index: 0,
            in_piece: 0,
            piece_start: 0,
            hasher: CommP::with_threads(threads),
            threads,
        }
    }

    /// Restarts at the piece starting at `start`, after a mismatch there.
    pub(super) fn restart_piece(&mut self) {
        self.in_piece = 0;
        self.hasher = CommP::with_threads(self.threads);
    }

    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), Mismatch> {
        while !data.is_empty() {
            let Some(&(_, size)) = self.pieces.get(self.index) else {
                return Ok(()); // past the end: the writer never sends more
            };
            let take = (size - self.in_piece).min(data.len() as u64) as usize;
            self.hasher.update(&data[..take]);
            self.in_piece += take as u64;
            data = &data[take..];
            if self.in_piece == size {
                let hasher = std::mem::replace(&mut self.hasher, CommP::with_threads(self.threads));
                let cid = self.pieces[self.index].0.clone();
                let matched = match hasher.finish() {
                    Ok(got) if cid.version() == CidVersion::V1 => {
                        (got.to_v1() == cid, got.to_v1().to_string())
                    }
                    Ok(got) => (got == cid, got.to_string()),
                    Err(e) => (false, e.to_string()),
                };
                if !matched.0 {
                    self.restart_piece();
                    return Err(Mismatch {
                        index: self.index + 1,
                        cid: cid.to_string(),
                        got: matched.1,
                        start: self.piece_start,
                    });
                }
                self.index += 1;
                self.piece_start += size;
                self.in_piece = 0;
            }
        }
        Ok(())
    }
}
