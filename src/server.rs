//! Process start-up: turns a validated [`Config`] into a running Pingora
//! server with the public listener ([`crate::edge`]) and the metrics
//! listener ([`crate::metrics::MetricsApp`]).
//!
//! Every listen address is test-bound first, so that "address in use" is a
//! one-line error naming the config key instead of a panic deep in Pingora.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::Opt;
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

/// Sends `message` to systemd's notification socket (`$NOTIFY_SOCKET`, a
/// path or an `@`-prefixed abstract name; sd_notify(3)) when it is set.
/// Failures are logged: they must not stop a server that already serves.
pub fn notify_systemd(message: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let sent = UnixDatagram::unbound().and_then(|sock| match target.strip_prefix('@') {
        Some(name) => UnixAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(message.as_bytes(), &addr)),
        None => sock.send_to(message.as_bytes(), &target),
    });
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at {target}: {e}");
    }
}

/// How `serve` was asked to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Take the listening sockets from the running process over
    /// `server.upgrade_sock` (Pingora's graceful upgrade) instead of binding.
    pub upgrade: bool,
}

/// Runs the server until SIGTERM (graceful: in-flight requests get
/// `server.grace_period`) or SIGINT (immediate). Returns only on a start-up error.
pub fn run(config: Config) -> Result<(), String> {
    run_with(config, RunOptions::default())
}

/// [`run`], with [`RunOptions`]. SIGQUIT hands the listening sockets to a
/// process started with `upgrade` and then drains like SIGTERM.
pub fn run_with(config: Config, options: RunOptions) -> Result<(), String> {
    // The old process still holds every address during an upgrade.
    if !options.upgrade {
        check_bind("server.listen", config.server.listen)?;
        check_bind("metrics.listen", config.metrics.listen)?;
        check_bind("admin.listen", config.admin.listen)?;
        if config.cluster.enabled {
            check_bind("cluster.peer_listen", config.cluster.peer_listen)?;
        }
    }
    // Before anything is handed over: a bad pair is a start-up error that
    // names its key, never a panic in Pingora's listener set-up.
    let cert = match &config.server.tls {
        Some(tls) => Some(Arc::new(
            crate::tls::ReloadableCert::load(&tls.cert, &tls.key).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
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
        upgrade_sock: config.server.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    // Everything that can fail is set up before the sockets are taken: once
    // the old process has handed them over it drains and exits, so a start-up
    // error after that point would be an outage.
    let state = Arc::new(EdgeState::new(&config)?);
    if let Some(resolver) = state.providers.resolver() {
        // upstream.network against the RPC's chain id, before any socket is
        // taken: a mismatch would resolve providers of the wrong network.
        // An RPC that does not answer within the connect timeout (at least
        // 5 s) is checked again before the first chain read (resolution is
        // on by default: an unreachable RPC must not hold up a start).
        let timeout = config
            .upstream
            .connect_timeout
            .0
            .max(std::time::Duration::from_secs(5));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for the chain id check: {e}"))?
            .block_on(resolver.verify_network(timeout))?;
    }
    let pid_file = match &config.server.pid_file {
        Some(path) => Some((
            path,
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("server.pid_file: cannot write {}: {e}", path.display()))?,
        )),
        None => None,
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    // With `upgrade`, this waits for the old process's sockets (it sends
    // them on SIGQUIT) and exits the process if none arrive.
    server.bootstrap();
    if let Some((path, file)) = pid_file {
        // Written only now: until the sockets are here, the old process is
        // the one serving.
        let written = file
            .set_len(0)
            .and_then(|()| (&file).write_all(format!("{}\n", std::process::id()).as_bytes()));
        if let Err(e) = written {
            log::error!("server.pid_file: cannot write {}: {e}", path.display());
        }
    }
    let on_hangup = state.clone();
    crate::tls::reload_on_sighup(
        cert.clone(),
        Box::new(move || {
            let state = on_hangup.clone();
            Box::pin(async move { state.reload_denylist().await })
        }),
    )?;
    // Under systemd (Type=notify, NotifyAccess=all) this process becomes
    // the service's main process, also when it took over by `--upgrade`
    // from a process systemd started.
    notify_systemd(&format!("MAINPID={}\nREADY=1\n", std::process::id()));

    let mut public = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        EdgeService::new(state.clone()),
        "beam-edge public",
    );
    match cert {
        Some(cert) => {
            let mut tls =
                TlsSettings::intermediate("", "").map_err(|e| format!("server.tls: {e}"))?;
            tls.set_cert_resolver(cert);
            tls.enable_h2();
            public.add_tls_with_settings(&config.server.listen.to_string(), None, tls);
        }
        None => public.add_tcp(&config.server.listen.to_string()),
    }
    if config.server.h2c {
        if let Some(app) = public.app_logic_mut() {
            let mut options = HttpServerOptions::default();
            options.h2c = true;
            app.server_options = Some(options);
        }
    }
    server.add_service(public);

    if let Some(cluster) = &state.cluster {
        let mut peers = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            EdgeService::for_peers(state.clone()),
            "beam-edge peers",
        );
        peers.add_tcp(&config.cluster.peer_listen.to_string());
        server.add_service(peers);
        // Discovery and /readyz checks of the members every cluster.refresh.
        server.add_service(pingora::services::background::GenBackgroundService::new(
            "beam-edge cluster membership".to_string(),
            cluster.balancer(),
        ));
        log::info!(
            "cluster mode: this replica is {:?}, peer listener on {}",
            cluster.self_name(),
            config.cluster.peer_listen
        );
    }

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
        "beam-edge {} listening on {}{} (admin on {}, metrics on {}), upstream {}",
        env!("CARGO_PKG_VERSION"),
        config.server.listen,
        if config.server.tls.is_some() {
            " (TLS, h2 and http/1.1)"
        } else if config.server.h2c {
            " (plain, h2c and http/1.1)"
        } else {
            " (plain http/1.1)"
        },
        config.admin.listen,
        config.metrics.listen,
        config
            .beam_base_url()
            .unwrap_or_else(|| "<no payer set>".into())
    );
    server.run_forever();
}
