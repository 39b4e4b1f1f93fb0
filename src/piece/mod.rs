//! Filecoin pieces: the PieceCID and the CommP that produces it.
//!
//! What it is: [`cid`] parses and formats PieceCIDs in both forms the network
//! uses (v2 `bafkzcib…`, FRC-0069, which carries the payload size and is what
//! Beam and the SDK use; v1 `baga6ea4seaq…`, legacy CommP, root only), and
//! [`commp`] computes a piece's v2 CID from its bytes: streaming, constant
//! memory, parallel on request, and optionally emitting the roots of aligned
//! windows (the "piece layer") so a cache can verify one window at a time.
//! [`cli`] is the `piece-cid` command built on both; [`window::WindowKey`]
//! names one window of a piece for the cache and the cluster.
//!
//! What it is not: a general multiformats library. Only the two PieceCID
//! shapes are accepted, and only in canonical lowercase base32, because Beam
//! matches the CID string byte for byte.
//!
//! Use: `let cid: PieceCid = s.parse()?;` for a CID from a URL or the chain;
//! `let mut h = CommP::new(); h.update(bytes); let cid = h.finish()?;` to
//! compute one.

pub mod cid;
pub mod cli;
pub mod commp;
pub mod window;

pub use cid::{CidVersion, PieceCid, PieceCidError};
pub use commp::{CommP, CommpError};
pub use window::WindowKey;
