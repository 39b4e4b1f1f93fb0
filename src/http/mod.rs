//! HTTP semantics that do not depend on Pingora: Range requests, conditional
//! requests and content-type sniffing. `edge` applies them to sessions.

pub mod conditional;
pub mod disposition;
pub mod range;
pub mod sniff;
