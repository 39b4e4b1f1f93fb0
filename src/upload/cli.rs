//! The `upload` and `wallet` commands.
//!
//! `beam-edge upload FILE` publishes a file (see [`super::publish`]) with a
//! progress line on standard error (bytes, MB/s, ETA; plain lines every few
//! seconds when standard error is not a terminal) and prints the result, as
//! JSON with `--json`. `beam-edge wallet` prints the payer's FIL and USDFC
//! balances, its FilecoinPay funds, whether FWSS is an approved operator and
//! FWSS's one-time fees, with what to do when something is missing.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::publish::{CopyStatus, PublishSettings, Publisher};
use crate::chain::{load_signer, ChainReader, FeeSource};
use crate::config::Config;
use crate::progress::Progress;

fn rpc_url(cfg: &Config) -> String {
    cfg.upload
        .rpc_url
        .clone()
        .unwrap_or_else(|| cfg.upstream.network.default_rpc_url().to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// A guess at a file's media type from its name (the bytes are sniffed when
/// this says nothing).
fn type_from_name(name: &str) -> Option<String> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    let t = match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "ts" => "video/mp2t",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "ogg" | "ogv" | "oga" => "application/ogg",
        "m3u8" => "application/vnd.apple.mpegurl",
        "car" => "application/vnd.ipld.car",
        _ => return None,
    };
    Some(t.to_string())
}

/// Writes the layer of each uploaded piece (computed as it streamed) into
/// the disk tier of the config's edge (`cache.disk.path`), where that edge
/// finds it when the piece is next read: `/piece/<cid>` of an uploaded
/// piece is checked from the first byte. Returns what was done, for the
/// report; a failure is a warning, never a failed upload.
fn keep_layers(cfg: &Config, report: &crate::upload::publish::PublishReport) -> Option<String> {
    use crate::cache::layers::{LayerSource, Layers};
    // Only into a disk tier an edge has made: an upload from a laptop with
    // the default config creates no cache directory.
    if cfg.cache.disk.size.0 == 0 || !cfg.cache.disk.path.is_dir() {
        return None;
    }
    let dir = cfg.cache.disk.path.join("layers");
    let layers = match Layers::writer(cfg.cache.window.0, &dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "warning: the pieces' layers were not kept in {}: {e}",
                dir.display()
            );
            return None;
        }
    };
    let mut kept = 0;
    for p in &report.manifest.pieces {
        let added = p.layer_nodes().and_then(|layer| match layer {
            Some((cid, nodes)) => layers
                .add(&cid, report.manifest.window, &nodes, LayerSource::Upload)
                .map(|_| true)
                .map_err(|e| e.to_string()),
            None => Ok(false),
        });
        match added {
            Ok(true) => kept += 1,
            Ok(false) => {}
            Err(e) => eprintln!("warning: the layer of piece {} was not kept: {e}", p.cid),
        }
    }
    (kept > 0).then(|| format!("{kept} in {}", dir.display()))
}

/// Runs `beam-edge upload`.
pub fn upload_command(cfg: &Config, file: &Path, json: bool) -> Result<(), String> {
    let provider_id = cfg.upload.provider_id.ok_or(
        "upload.provider_id is not set: name the storage provider (its id in the ServiceProviderRegistry) \
         in the config or with --provider-id",
    )?;
    let key = load_signer(cfg.upload.key_file.as_deref()).map_err(|e| e.to_string())?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut settings = PublishSettings::from_config(
        cfg,
        provider_id,
        name.clone(),
        type_from_name(&name),
        threads,
    );
    let links_cfg = cfg.clone();
    let rt = runtime()?;
    rt.block_on(async move {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let total = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        if total > settings.asset.max_size {
            return Err(format!(
                "{}: {total} bytes is over upload.max_size ({} bytes)",
                file.display(),
                settings.asset.max_size
            ));
        }
        settings.expected_size = Some(total);
        let publisher = Publisher::connect(key, settings)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "uploading {} ({total} bytes) to {}",
            file.display(),
            publisher.provider_url()
        );
        let body = Box::pin(futures_util::stream::unfold(f, |mut f| async move {
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        }));
        let progress = Progress::new(total);
        let p = progress.clone();
        let report = publisher
            .publish(body, Arc::new(move |n| p.update(n)))
            .await;
        progress.finish();
        let report = report
            .map_err(|e| e.to_string())?
            .with_beam_links(&links_cfg);
        let kept = keep_layers(cfg, &report);
        // A missing extra copy is a warning, not a failure: the primary
        // provider holds the file, the exit code stays 0.
        if !report.complete {
            let done = report
                .copies
                .iter()
                .filter(|c| c.status == CopyStatus::Complete)
                .count();
            eprintln!(
                "warning: {done} of {} copies stored; the upload is safe at the primary provider (see the copies)",
                report.requested_copies
            );
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            println!("asset      {}", report.asset_id);
            println!("play       {}", report.asset_path);
            println!(
                "or         {}  (any edge, billed to the payer)",
                report.beam_path
            );
            println!("size       {} bytes, {}", report.size, report.content_type);
            for (i, p) in report.pieces.iter().enumerate() {
                println!("piece {i:<4} {}  {} bytes", p.cid, p.size);
            }
            if let Some(kept) = &kept {
                println!("layers     {kept} (each piece checked from its first byte)");
            }
            println!(
                "data set   {}{}",
                report.data_set_id,
                if report.created_data_set {
                    " (created)"
                } else {
                    ""
                }
            );
            for tx in &report.transactions {
                println!("tx         {tx}");
            }
            for (i, c) in report.copies.iter().enumerate() {
                let provider = c
                    .provider_id
                    .map_or("none".to_string(), |id| format!("provider {id}"));
                let url = c.provider_url.as_deref().unwrap_or("-");
                let set = c.data_set_id.map_or("-".to_string(), |id| {
                    format!("{id}{}", if c.created_data_set { " (created)" } else { "" })
                });
                let status = match c.status {
                    CopyStatus::Complete => "complete".to_string(),
                    CopyStatus::Failed => {
                        format!("FAILED: {}", c.error.as_deref().unwrap_or("unknown"))
                    }
                };
                println!(
                    "copy {i:<5} {} {provider} {url} data set {set} tx {} {status}",
                    c.role,
                    if c.transactions.is_empty() {
                        "-".to_string()
                    } else {
                        c.transactions.join(",")
                    }
                );
            }
            if let Some(url) = report.beam_urls.first() {
                println!("beam       {url}  (once Beam has indexed it)");
            }
        }
        Ok(())
    })
}

/// Runs `beam-edge wallet`; `Ok(false)` when the wallet cannot pay yet.
pub fn wallet_command(cfg: &Config) -> Result<bool, String> {
    let key = load_signer(cfg.upload.key_file.as_deref()).map_err(|e| e.to_string())?;
    let rt = runtime()?;
    rt.block_on(async move {
        let reader =
            ChainReader::new(&rpc_url(cfg), cfg.upstream.network).map_err(|e| e.to_string())?;
        reader.verify_chain().await.map_err(|e| e.to_string())?;
        let r = reader
            .wallet_report(key.address())
            .await
            .map_err(|e| e.to_string())?;
        let unit = |v: alloy::primitives::U256| {
            alloy::primitives::utils::format_units(v, 18).unwrap_or_default()
        };
        println!("payer        {}", r.payer);
        println!("network      {:?}", r.network);
        println!("FIL          {}", unit(r.fil_balance));
        println!("USDFC        {}", unit(r.usdfc_balance));
        println!(
            "FilecoinPay  {} USDFC deposited, {} available",
            unit(r.account.funds),
            unit(r.account.available)
        );
        println!(
            "FWSS         {}",
            if r.approval.is_approved {
                "approved as operator"
            } else {
                "NOT approved as operator"
            }
        );
        // FWSS's one-time fees (FWSS v1.3.0, June 2026): what each upload
        // adds to the lockup it needs (see `chain::fees`).
        match reader.fee_schedule().await {
            Ok(f) => println!(
                "FWSS fees    create data set {}, add pieces {} + {} per piece, reserve {} per data set{}",
                unit(f.create_data_set_fee),
                unit(f.add_pieces_base_fee),
                unit(f.add_pieces_per_piece_fee),
                unit(f.lifecycle_reserve_target),
                match f.source {
                    FeeSource::Chain => " (from the chain)",
                    FeeSource::Documented => " (documented v1.3.0 list; the view has no getPriceList)",
                }
            ),
            Err(e) => println!("FWSS fees    unknown: {e}"),
        }
        let problems = r.problems();
        for p in &problems {
            println!("to do        {p}");
        }
        Ok(problems.is_empty())
    })
}
