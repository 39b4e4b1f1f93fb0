//! beam-edge: an edge proxy on Pingora that streams Filecoin pieces from the
//! Beam CDN with exact HTTP Range semantics. See DESIGN.md for the map.

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod cache;
pub mod chain;
pub mod cluster;
pub mod config;
pub mod download;
pub mod edge;
pub mod http;
pub mod manifest;
pub mod media;
pub mod metrics;
pub mod piece;
pub mod progress;
pub mod server;
pub mod tls;
pub mod upload;
pub mod upstream;
