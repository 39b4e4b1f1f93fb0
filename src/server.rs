//! Process start-up: turns a validated [`Config`] into a running Pingora
//! server with the public listener ([`crate::edge`]) and the metrics
//! listener ([`crate::metrics::MetricsApp`]).
//!
//! Every listen address is test-bound first, so that "address in use" is a
//! one-line error naming the config key instead of a panic deep in Pingora.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, Server};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::edge::{EdgeService, EdgeState};
use crate::metrics::{self, MetricsApp};

fn check_bind(key: &str, addr: SocketAddr) -> Result<(), String> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("{key}: cannot listen on {addr}: {e}"))
}

/// Runs the server until SIGTERM (graceful: in-flight requests get
/// `server.grace_period`) or SIGINT (immediate). Returns only on a start-up error.
pub fn run(config: Config) -> Result<(), String> {
    check_bind("server.listen", config.server.listen)?;
    check_bind("metrics.listen", config.metrics.listen)?;
    check_bind("admin.listen", config.admin.listen)?;
    for w in config.warnings() {
        log::warn!("{w}");
    }
    metrics::init();
    match crate::edge::limits::raise_open_files_limit() {
        Ok(n) => log::info!("open files limit: {n}"),
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }

    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.0.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let state = Arc::new(EdgeState::new(&config)?);
    let mut public = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        EdgeService::new(state.clone()),
        "beam-edge public",
    );
    public.add_tcp(&config.server.listen.to_string());
    server.add_service(public);

    let admin = AdminApp::new(state.clone(), config.admin.token.clone(), config.clone());
    let mut admin_service = Service::new("beam-edge admin".to_string(), HttpServer::new_app(admin));
    admin_service.add_tcp(&config.admin.listen.to_string());
    server.add_service(admin_service);

    let mut metrics_service = Service::new(
        "beam-edge metrics".to_string(),
        HttpServer::new_app(MetricsApp),
    );
    metrics_service.add_tcp(&config.metrics.listen.to_string());
    server.add_service(metrics_service);

    // The disk tier's LRU order is saved every 30 s and at shutdown.
    let saver = state.clone();
    std::thread::Builder::new()
        .name("beam-edge-index".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(30));
            saver.cache.save_index();
        })
        .map_err(|e| format!("cannot start the index saver: {e}"))?;

    // Readiness follows the server's execution phase.
    let mut phases = server.watch_execution_phase();
    std::thread::Builder::new()
        .name("beam-edge-phase".into())
        .spawn(move || {
            while let Ok(phase) = phases.blocking_recv() {
                match phase {
                    ExecutionPhase::Running => state.running.store(true, Ordering::Relaxed),
                    ExecutionPhase::GracefulTerminate
                    | ExecutionPhase::ShutdownStarted
                    | ExecutionPhase::ShutdownGracePeriod
                    | ExecutionPhase::ShutdownRuntimes
                    | ExecutionPhase::Terminated => {
                        state.shutting_down.store(true, Ordering::Relaxed)
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| format!("cannot start the phase watcher: {e}"))?;

    log::info!(
        "beam-edge {} listening on {} (admin on {}, metrics on {}), upstream {}",
        env!("CARGO_PKG_VERSION"),
        config.server.listen,
        config.admin.listen,
        config.metrics.listen,
        config
            .beam_base_url()
            .unwrap_or_else(|| "<no payer set>".into())
    );
    server.run_forever();
}
