//! `server.*`: the public listener and the process (threads, timeouts, TLS,
//! graceful upgrade).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{addr, HumanDuration};
use super::Config;

/// Default of `server.keepalive_timeout`: how long a kept-alive connection
/// may sit idle between two requests (and
/// between two reads of the next request's header). Pingora's default for
/// HTTP/1.1 is no limit. 60 s is what nginx's `keepalive_timeout` ships with
/// (75 s) rounded down, and the timeout Pingora's own `HttpServer` apps (beam-edge's
/// admin and metrics listeners) use.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// Default of `server.send_timeout`: how long one response write may wait
/// for the client to take bytes
/// (nginx's `send_timeout` default). Pingora's default is no limit, so a
/// client that stops reading held its connection, its task and the window it
/// was reading forever. A player that pauses longer than this is cut and
/// asks again with a Range on resume, which is what players do.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// `server.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener address (`IP:port`).
    pub listen: SocketAddr,
    /// Worker threads of the public listener.
    pub threads: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub grace_period: HumanDuration,
    /// How long a kept-alive client connection may sit idle between requests.
    pub keepalive_timeout: HumanDuration,
    /// How long one response write may wait for a client that does not read.
    pub send_timeout: HumanDuration,
    /// TLS on the public listener (HTTP/2 and HTTP/1.1 by ALPN); null for plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Accept cleartext HTTP/2 (prior knowledge) on a plain listener.
    pub h2c: bool,
    /// Unix socket over which a new process (`serve --upgrade`) takes the listening sockets.
    pub upgrade_sock: PathBuf,
    /// File the serving process writes its pid to (for `kill -QUIT`); null for none.
    pub pid_file: Option<PathBuf>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the
    /// client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
}

/// `server.tls.*`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: addr("127.0.0.1:8080"),
            threads: 2,
            grace_period: HumanDuration(Duration::from_secs(10)),
            keepalive_timeout: HumanDuration(KEEPALIVE_IDLE),
            send_timeout: HumanDuration(SEND_TIMEOUT),
            tls: None,
            h2c: false,
            upgrade_sock: PathBuf::from("/tmp/beam-edge-upgrade.sock"),
            pid_file: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The checks of `server.*`, in order.
pub(super) const CHECKS: &[super::validate::Check] = &[
    check_tls,
    check_upgrade,
    check_threads,
    check_grace_period,
    check_connection_timeouts,
];

fn check_threads(c: &Config) -> Result<(), (&'static str, String)> {
    if !(1..=256).contains(&c.server.threads) {
        return Err((
            "server.threads",
            format!("must be 1 to 256, got {}", c.server.threads),
        ));
    }
    Ok(())
}

fn check_tls(c: &Config) -> Result<(), (&'static str, String)> {
    if let Some(tls) = &c.server.tls {
        crate::tls::load_certified_key(&tls.cert, &tls.key).map_err(|e| (e.key, e.reason))?;
    }
    Ok(())
}

fn check_upgrade(c: &Config) -> Result<(), (&'static str, String)> {
    if c.server.upgrade_sock.as_os_str().is_empty() {
        return Err(("server.upgrade_sock", "must not be empty".into()));
    }
    // sun_path holds 108 bytes on Linux, including the terminating NUL.
    if c.server.upgrade_sock.as_os_str().len() > 107 {
        return Err((
            "server.upgrade_sock",
            "must be at most 107 bytes (a Unix socket path)".into(),
        ));
    }
    if c.server
        .pid_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err((
            "server.pid_file",
            "must not be empty (null for none)".into(),
        ));
    }
    Ok(())
}

fn check_grace_period(c: &Config) -> Result<(), (&'static str, String)> {
    if c.server.grace_period.0 > Duration::from_secs(3600) {
        return Err(("server.grace_period", "must be at most 1h".into()));
    }
    Ok(())
}

/// Pingora keeps keep-alive timeouts in whole seconds (0 would mean "no
/// limit"), so both are 1 s to 1 h.
fn check_connection_timeouts(c: &Config) -> Result<(), (&'static str, String)> {
    for (key, value) in [
        ("server.keepalive_timeout", c.server.keepalive_timeout.0),
        ("server.send_timeout", c.server.send_timeout.0),
    ] {
        if value < Duration::from_secs(1) || value > Duration::from_secs(3600) {
            return Err((key, format!("must be 1s to 1h, got {value:?}")));
        }
    }
    Ok(())
}
