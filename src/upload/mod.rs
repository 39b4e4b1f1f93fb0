//! Uploads: files of any size to a Filecoin storage provider, as assets.
//!
//! A file is split into pieces (at most 1,065,353,216 raw bytes each, or
//! `upload.piece_size`), each streamed to the provider while its CommP is
//! computed; then a small JSON [`crate::manifest`] listing the pieces is uploaded as
//! a piece of its own. The manifest's PieceCID is the asset id, served by
//! `GET /asset/<id>` as one resource.
//!
//! It builds on [`crate::chain`] (signing, fees, the wallet pre-flight) and
//! writes the [`crate::manifest`] format; neither knows about uploads.

pub mod cli;
pub mod pipeline;
pub mod publish;
pub mod sp;
