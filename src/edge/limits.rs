//! Per-connection limits of the public listener: what bounds the time and
//! memory one client connection can hold, and where each bound is set.
//!
//! What it is: the few bounds Pingora 0.9 leaves open for a proxy service
//! (an HTTP/1.1 keep-alive connection idles forever between requests; a
//! response write waits forever on a client that stops reading), set on each
//! session in `request_filter` from `server.keepalive_timeout` and
//! `server.send_timeout`, plus the open-files limit raised at start-up.
//! What it is not: a rate limiter or a connection cap; those belong in front
//! of the edge (a load balancer), not in it.
//!
//! The bounds Pingora itself sets, read from pingora-core 0.9.1
//! (`protocols/http/v1/common.rs` and `server.rs`), which no config can
//! change:
//! - a request header is at most 1,048,575 bytes (`MAX_HEADER_SIZE`) and 256
//!   header lines (`MAX_HEADERS`); either over is an error and the connection
//!   is closed (no response);
//! - the header buffer starts at 4 KiB (`INIT_HEADER_BUF_SIZE`) and grows
//!   only as header bytes arrive, so a connection holds what its client sent;
//! - the first request header of a connection is read with a 60 s timeout per
//!   read (`HttpSession::read_timeout`): an idle new connection is closed
//!   after 60 s. A client that trickles a byte every < 60 s keeps its
//!   connection (there is no total header deadline) but holds only the bytes
//!   it sent, at most the header cap;
//! - pipelining is off: bytes of a second request that arrive with the first
//!   make the connection non-reusable, so the first is answered and the
//!   connection is closed (RFC 9112 §9.3.2 lets clients retry the rest).

use std::time::Duration;

use pingora::proxy::Session;

pub use crate::config::server::{KEEPALIVE_IDLE, SEND_TIMEOUT};

/// The timeouts in force (`server.keepalive_timeout`, `server.send_timeout`;
/// defaults [`KEEPALIVE_IDLE`] and [`SEND_TIMEOUT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Idle time allowed between two requests of a kept-alive connection.
    pub keepalive_idle: Duration,
    /// Time one response write may wait for the client.
    pub send_timeout: Duration,
}

impl ConnectionLimits {
    /// Applies the bounds to one downstream session. Pingora carries the
    /// keep-alive setting across the requests of a connection.
    pub fn apply(&self, session: &mut Session) {
        // `set_keepalive` keeps a client's `Connection: close` (it only sets
        // the timeout of connections that stay open); whole seconds, and 0
        // would mean no limit.
        session.set_keepalive(Some(self.keepalive_idle.as_secs().max(1)));
        session.set_write_timeout(Some(self.send_timeout));
    }
}

/// Raises the soft open-files limit to the hard one. Each client connection
/// is a file descriptor; the usual soft limit of 1,024 would refuse
/// connections long before memory or CPU run out (the abuse test holds
/// 2,000 idle ones). Returns the limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}
