//! The `beam-edge` command line: `serve`, `check-config`, `sign`, `piece-cid`, `upload`, `wallet`, `get`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use beam_edge::config::{Config, Overrides};

// jemalloc returns freed window buffers to the OS far better than glibc's
// malloc, whose dynamic mmap threshold moves 1 MiB buffers onto fragmented
// heaps: measured peak RSS streaming a 1.6 GB piece with a 256 MiB memory
// tier, see docs/src/performance.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc's options, read before main: freed pages go back to the OS at
// once (dirty_decay_ms:0) and skip the "muzzy" (MADV_FREE) stage, whose
// pages still count as resident; a background thread does the purging.
// Without this, RSS stayed near a burst's peak long after a burst of cold
// readers (200 slow readers: 129 MiB 5 s after the burst with jemalloc's
// defaults, 82 MiB with a 1 s decay), and under a burst the pages of freed
// windows waiting to decay topped the in-flight budget (1,000 slow readers,
// benches/memory.sh, release: peak 282-303 MiB with a 1 s or 0.2 s decay,
// 259-263 MiB with none, under a bound of 288 MiB). `_RJEM_MALLOC_CONF` in
// the environment still overrides each option.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
#[allow(non_upper_case_globals)]
pub static malloc_conf: &[u8; 57] = b"background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0\0";
#[derive(Parser)]
#[command(
    name = "beam-edge",
    version,
    about = "Edge proxy that streams Filecoin pieces from the Beam CDN with exact Range semantics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the embedded default config when --config is not given).
    Serve {
        /// YAML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Public listen address (server.listen), e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<String>,
        /// Beam URL template (upstream.beam_url).
        #[arg(long)]
        upstream_url: Option<String>,
        /// Payer wallet address (upstream.payer).
        #[arg(long)]
        payer: Option<String>,
        /// mainnet or calibration (upstream.network).
        #[arg(long)]
        network: Option<String>,
        /// Graceful upgrade: take the listening sockets from the running
        /// process over server.upgrade_sock (then send it SIGQUIT).
        #[arg(long, short)]
        upgrade: bool,
    },
    /// Validate a config file: prints "ok" or the key and the reason, and exits non-zero on error.
    CheckConfig {
        /// YAML config file.
        file: PathBuf,
    },
    /// Upload a file to the configured storage provider as an asset, and add
    /// its pieces to a withCDN data set (needs upload.provider_id and the payer key).
    Upload {
        /// The file.
        file: PathBuf,
        /// YAML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Storage provider id (upload.provider_id).
        #[arg(long)]
        provider_id: Option<u64>,
        /// Storage provider service URL (upload.provider_url).
        #[arg(long)]
        provider: Option<String>,
        /// Data set id to add to (upload.data_set).
        #[arg(long)]
        data_set: Option<u64>,
        /// mainnet or calibration (upstream.network).
        #[arg(long)]
        network: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the payer wallet's balances, FilecoinPay deposit and FWSS approval, and what to do if it cannot pay.
    Wallet {
        /// YAML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// mainnet or calibration (upstream.network).
        #[arg(long)]
        network: Option<String>,
    },
    /// Download a piece or an asset (PieceCID, asset id or URL) through an
    /// edge, from a provider or from Beam, checked against its PieceCID
    /// before it is put in place; resumes FILE.part.
    Get {
        /// A PieceCID, an asset id, or an http(s) URL (…/piece/<cid>, …/asset/<id>, Beam's …/<cid>).
        target: String,
        /// Output file (default: the asset's file name, or the CID).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Download through this edge (e.g. http://edge:8080): its /piece/<cid>.
        #[arg(long, value_name = "URL")]
        edge: Option<String>,
        /// Download from this storage provider's service URL: its /piece/<cid>.
        #[arg(long, value_name = "URL")]
        provider: Option<String>,
        /// Payer wallet address, to download from Beam (upstream.payer).
        #[arg(long)]
        payer: Option<String>,
        /// mainnet or calibration (upstream.network).
        #[arg(long)]
        network: Option<String>,
        /// YAML config file (its upstream section names Beam).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Ranged requests at once (1-64).
        #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Download a bare CID as a piece even when it is an asset manifest.
        #[arg(long)]
        piece: bool,
    },
    /// Print a signed link to a media path (access.signed_urls), signed with
    /// the first key of the config, e.g. `beam-edge sign /piece/<cid> --ttl 1h`.
    Sign {
        /// The path to sign: /piece/<cid>[/<name>], /asset/<id>[/<name>] or /beam/….
        path: String,
        /// How long the link is valid (at most access.signed_urls.max_ttl).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        /// Bind the link to this client address.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// Print a whole URL on this edge, e.g. https://edge.example.com.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// YAML config file (its access.signed_urls.keys sign).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the PieceCID of files ("<cid>  <file>" per line; "-" reads standard input).
    PieceCid {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the legacy v1 form (baga6ea4seaq...) instead of v2 (bafkzcib...).
        #[arg(long)]
        v1: bool,
        /// Write the window layer (32-byte roots of each window, concatenated) to this file.
        #[arg(long, value_name = "OUT")]
        layer: Option<PathBuf>,
        /// Window size of the layer, in padded bytes (like cache.window).
        #[arg(long, default_value = "1MiB", value_parser = parse_size)]
        window: u64,
    },
}

/// Loads, overrides and validates a config; on error prints it and returns the exit code.
fn load_validated(
    path: Option<&std::path::Path>,
    overrides: &Overrides,
) -> Result<Config, ExitCode> {
    let source = path.map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    Config::load(path)
        .and_then(|mut c| c.apply_overrides(overrides).map(|_| c))
        .and_then(|c| c.validate(&source).map(|_| c))
        .map_err(|e| {
            eprintln!("beam-edge: bad configuration: {e}");
            ExitCode::from(2)
        })
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (use e.g. 30m, 1h, 7d)"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    beam_edge::config::ByteSize::parse(s).map(|b| b.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            upstream_url,
            payer,
            network,
            upgrade,
        } => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .init();
            let overrides = Overrides {
                listen,
                upstream_url,
                payer,
                network,
            };
            let source = config.as_ref().map_or_else(
                || "embedded default".to_string(),
                |p| p.display().to_string(),
            );
            let cfg = Config::load(config.as_deref())
                .and_then(|mut c| c.apply_overrides(&overrides).map(|_| c))
                .and_then(|c| c.validate(&source).map(|_| c));
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("beam-edge: bad configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            match beam_edge::server::run_with(cfg, beam_edge::server::RunOptions { upgrade }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("beam-edge: cannot start: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Sign {
            path,
            ttl,
            ip,
            base_url,
            config,
        } => {
            let cfg = match load_validated(config.as_deref(), &Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let signer =
                match beam_edge::access::signed::UrlSigner::from_config(&cfg.access.signed_urls) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("beam-edge sign: {e}");
                        return ExitCode::from(2);
                    }
                };
            match beam_edge::access::mint(signer.as_ref(), &path, ttl, ip) {
                Ok(link) => {
                    let base = base_url.as_deref().unwrap_or("").trim_end_matches('/');
                    println!("{base}{}", link.path_and_query);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("beam-edge sign: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::PieceCid {
            files,
            v1,
            layer,
            window,
        } => match beam_edge::piece::cli::piece_cid_command(&files, v1, layer.as_deref(), window) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("beam-edge piece-cid: {e}");
                ExitCode::from(1)
            }
        },
        Command::Upload {
            file,
            config,
            provider_id,
            provider,
            data_set,
            network,
            json,
        } => {
            let overrides = Overrides {
                network,
                ..Overrides::default()
            };
            let mut cfg = match load_validated(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(code) => return code,
            };
            cfg.upload.provider_id = provider_id.or(cfg.upload.provider_id);
            cfg.upload.provider_url = provider.or(cfg.upload.provider_url);
            cfg.upload.data_set = data_set.or(cfg.upload.data_set);
            match beam_edge::upload::cli::upload_command(&cfg, &file, json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("beam-edge upload: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Get {
            target,
            output,
            edge,
            provider,
            payer,
            network,
            config,
            jobs,
            piece,
        } => {
            let overrides = Overrides {
                payer,
                network,
                ..Overrides::default()
            };
            let cfg = match load_validated(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let options = beam_edge::download::GetOptions {
                target,
                output,
                edge,
                provider,
                beam: cfg.beam_base_url(),
                jobs: usize::from(jobs),
                piece_only: piece,
                hash_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            match beam_edge::download::get_command(&options) {
                Ok(path) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("beam-edge get: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Wallet { config, network } => {
            let overrides = Overrides {
                network,
                ..Overrides::default()
            };
            let cfg = match load_validated(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match beam_edge::upload::cli::wallet_command(&cfg) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("beam-edge wallet: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { file } => {
            let name = file.display().to_string();
            // No flags here, but the environment applies as it does to `serve`
            // (BEAM_EDGE_ADMIN_TOKEN), so a file is judged as it would run.
            let result = Config::load(Some(&file))
                .and_then(|mut c| c.apply_overrides(&Overrides::default()).map(|_| c))
                .and_then(|c| c.validate(&name).map(|_| c));
            match result {
                Ok(c) => {
                    for w in c.warnings() {
                        println!("{name}: warning: {w}");
                    }
                    println!("{name}: ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
