//! Every Prometheus metric beam-edge exports, defined in one place.
//!
//! Metrics live in the process-wide default registry of the `prometheus`
//! crate as re-exported by `pingora-prometheus`, so the metrics listener
//! ([`MetricsApp`]) serves them. All names start with `beam_edge_`; counters
//! only accumulate.

use async_trait::async_trait;
use once_cell::sync::Lazy;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::prometheus::{
    self, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};
use pingora_prometheus::PrometheusHttpApp;

// Registration only fails on a duplicate name or a malformed definition:
// both are programming errors caught by the first test that touches a metric.
#[allow(clippy::expect_used)]
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register_int_counter_vec!(name, help, labels).expect("metric registers")
}

#[allow(clippy::expect_used)]
fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    register_histogram_vec!(name, help, labels, buckets).expect("metric registers")
}

#[allow(clippy::expect_used)]
fn counter(name: &str, help: &str) -> IntCounter {
    register_int_counter!(name, help).expect("metric registers")
}

/// Latency buckets from 1 ms to 30 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

/// Requests answered, by route (`piece`, `health`, `ready`, `other`) and status code.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_requests_total",
        "Requests answered, by route and status code.",
        &["route", "status"],
    )
});

/// Response body bytes written to clients, by route.
pub static RESPONSE_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_response_bytes_total",
        "Response body bytes written to clients, by route.",
        &["route"],
    )
});

/// Upstream requests by upstream (`beam`, `provider`) and outcome (`ok`,
/// `ok_full_body`, `not_found`, `payment_required`, `forbidden`, `timeout`,
/// `connect_error`, `bad_response`, `short_body`, `error_status`, `not_configured`).
pub static UPSTREAM_REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_upstream_requests_total",
        "Upstream requests, by upstream and outcome.",
        &["upstream", "outcome"],
    )
});

/// Time from sending an upstream request to its response header.
pub static UPSTREAM_LATENCY: Lazy<HistogramVec> = Lazy::new(|| {
    histogram_vec(
        "beam_edge_upstream_latency_seconds",
        "Time from sending an upstream request to receiving its response header.",
        &["upstream"],
        latency_buckets(),
    )
});

/// Bytes read from upstreams (including bytes dropped before a range on a whole-piece 200).
pub static UPSTREAM_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_upstream_bytes_total",
        "Body bytes read from upstreams.",
        &["upstream"],
    )
});

/// Ranged upstream requests answered with the whole piece (200).
pub static UPSTREAM_FULL_BODY: Lazy<IntCounter> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "beam_edge_upstream_full_body_total",
        "Ranged upstream requests that were answered with a 200 and the whole piece."
    )
    .expect("metric registers")
});

/// Time from receiving a request to writing the response header, by route.
pub static TTFB: Lazy<HistogramVec> = Lazy::new(|| {
    histogram_vec(
        "beam_edge_ttfb_seconds",
        "Time from receiving a request to writing its response header.",
        &["route"],
        latency_buckets(),
    )
});

/// Responses cut off after their header was sent, by reason (`upstream`, `client`).
pub static ABORTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_client_aborts_total",
        "Responses ended early after the header was sent: the upstream failed mid-body, or the client went away.",
        &["reason"],
    )
});

/// Body bytes served to clients by where they came from (`memory`, `disk`,
/// `upstream`): the byte-weighted hit ratio is (memory + disk) / all.
pub static SERVED_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_served_bytes_total",
        "Piece bytes served to clients, by source (memory, disk, upstream, peer: the owning replica in cluster mode).",
        &["source"],
    )
});

/// Body bytes of pieces served to clients by how they were checked against
/// the PieceCID (`cid`: a one-window piece hashed whole; `layer`: every window
/// checked against the piece's layer; `unchecked`): the checked share is
/// (cid + layer) / all.
pub static SERVED_CHECK_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_served_check_bytes_total",
        "Piece bytes served to clients, by how they were checked against the PieceCID (cid, layer, unchecked).",
        &["check"],
    )
});

/// Layer jobs by `job` and `outcome` (`ok`, `failed`): builds (the piece
/// read whole and hashed), sweeps (cached windows hashed against a layer
/// that arrived) and, in cluster mode, `peer`: a layer asked of another
/// replica before building (`failed`: none held one that hashes to the
/// PieceCID).
pub static LAYER_JOBS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_layer_jobs_total",
        "Layer builds, sweeps and layers asked of cluster peers, by job (build, sweep, peer) and outcome (ok, failed).",
        &["job", "outcome"],
    )
});

/// Cached windows purged because they did not match the piece's layer.
pub static PURGED_WRONG_WINDOWS: Lazy<IntCounter> = Lazy::new(|| {
    counter(
        "beam_edge_wrong_windows_purged_total",
        "Cached windows purged because they did not hash to the piece's layer.",
    )
});

/// Holders (Beam, providers) backed off for sending wrong bytes.
pub static WRONG_BYTES_HOLDERS: Lazy<IntCounter> = Lazy::new(|| {
    counter(
        "beam_edge_wrong_bytes_backoffs_total",
        "Times a holder (Beam for one piece, or a storage provider) was backed off for sending bytes that do not hash to the PieceCID.",
    )
});

/// Window lookups by tier (`memory`, `disk`) and result (`hit`, `miss`).
pub static WINDOW_LOOKUPS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_window_lookups_total",
        "Window lookups, by tier (memory, disk) and result (hit, miss).",
        &["tier", "result"],
    )
});

/// Window fills from the upstream by kind (`demand`, `prefetch`) and outcome (`ok`, `cancelled`, `failed`).
pub static WINDOW_FILLS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_window_fills_total",
        "Windows filled from the upstream, by kind (demand, prefetch) and outcome (ok, cancelled, failed).",
        &["kind", "outcome"],
    )
});

/// Fetched windows checked against their PieceCID, by result (ok, mismatch).
pub static WINDOW_CHECKS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_window_checks_total",
        "Fetched windows hashed and compared with their PieceCID (or the piece's layer), by result (ok, mismatch); a mismatch is never cached or served whole.",
        &["result"],
    )
});

/// Readers that joined a fill already in flight instead of causing another upstream fetch.
pub static COALESCED: Lazy<IntCounter> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "beam_edge_coalesced_waiters_total",
        "Readers that joined a window fill already in flight (single-flight)."
    )
    .expect("metric registers")
});

/// Read-ahead: windows `issued`, later `used` by a reader, `wasted` (evicted
/// or cancelled unread), `skipped` (concurrency limit reached).
pub static PREFETCH: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_prefetch_total",
        "Read-ahead windows by result (issued, used, wasted, skipped).",
        &["result"],
    )
});

/// Container-index prefetches started: `tail` (a cold piece's last window,
/// fetched with its first) and `index` (an MP4 `moov` or WebM `Cues` the
/// head points at, outside the last window).
pub static INDEX_PREFETCH: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_index_prefetch_total",
        "Container-index prefetches started, by kind (tail, index).",
        &["kind"],
    )
});

/// Windows evicted, by tier.
pub static EVICTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_cache_evictions_total",
        "Windows evicted, by tier.",
        &["tier"],
    )
});

/// Bytes held, by tier.
pub static CACHE_BYTES: Lazy<IntGaugeVec> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_gauge_vec!(
        "beam_edge_cache_bytes",
        "Bytes held by each cache tier.",
        &["tier"]
    )
    .expect("metric registers")
});

/// Windows held, by tier.
pub static CACHE_ENTRIES: Lazy<IntGaugeVec> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_gauge_vec!(
        "beam_edge_cache_entries",
        "Windows held by each cache tier.",
        &["tier"]
    )
    .expect("metric registers")
});

/// Budget of each cache tier in bytes (set once at start), so that
/// `beam_edge_cache_bytes / beam_edge_cache_budget_bytes` says how full a
/// tier is (the disk-tier-full alert in `deploy/prometheus/rules.yml`).
pub static CACHE_BUDGET_BYTES: Lazy<IntGaugeVec> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_gauge_vec!(
        "beam_edge_cache_budget_bytes",
        "Budget of each cache tier in bytes (cache.memory, cache.disk.size).",
        &["tier"]
    )
    .expect("metric registers")
});

/// Window bytes reserved in the in-flight budget (`cache.inflight`): fills
/// being assembled, read-ahead, windows waiting for slow clients or for the
/// disk tier.
pub static INFLIGHT_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_gauge!(
        "beam_edge_inflight_bytes",
        "Window bytes held outside the memory tier's budget (fills, read-ahead, slow clients, disk writes)."
    )
    .expect("metric registers")
});

/// The in-flight budget in bytes (`cache.inflight`, set at start).
pub static INFLIGHT_BUDGET_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_gauge!(
        "beam_edge_inflight_budget_bytes",
        "The in-flight budget in bytes (cache.inflight)."
    )
    .expect("metric registers")
});

/// What the in-flight budget did: `readahead_skipped` (read-ahead windows
/// not fetched for want of room), `paused` (a run waited for its slow
/// reader), `queued` (a new request waited for room), `rejected` (a new
/// request answered 503: the queue was full or the wait too long).
pub static INFLIGHT_EVENTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_inflight_events_total",
        "In-flight budget events (readahead_skipped, paused, queued, rejected, idle_released).",
        &["event"],
    )
});

/// Publishes the tiers' budgets (`disk`: `None` when the tier is off, and
/// then no series, so a "disk full" ratio has nothing to divide).
pub fn publish_cache_budgets(memory: u64, disk: Option<u64>) {
    let set = |tier: &str, bytes: u64| {
        CACHE_BUDGET_BYTES
            .with_label_values(&[tier])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    };
    set("memory", memory);
    if let Some(d) = disk {
        set("disk", d);
    }
}

/// Upstream fallbacks: `reason` (`full_body`: Beam sent the whole piece for
/// a deep range; `warming`: Beam's warm-up of the piece runs; `error`: Beam
/// failed; `wrong_bytes`: Beam sent wrong bytes of the piece lately;
/// `hedge`: Beam is late, see [`HEDGES`]) and `target` (`provider`,
/// `beam_retry`).
pub static FALLBACKS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_upstream_fallbacks_total",
        "Fallbacks away from a Beam answer, by reason (full_body, warming, error, wrong_bytes, hedge) and target (provider, beam_retry).",
        &["reason", "target"],
    )
});

/// Hedged window fetches (`upstream.hedge_after`): a Beam request still
/// unanswered past its delay, by `outcome`: `won` (a storage provider's
/// answer came first and was used; Beam's request was dropped), `lost`
/// (Beam answered first; the provider's request was dropped), `failed` (no
/// provider served the range; Beam's answer was awaited) or `over_budget`
/// (late, but `upstream.hedge_budget` was spent).
pub static HEDGES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_hedges_total",
        "Beam window requests unanswered past upstream.hedge_after, by outcome (won, lost, failed, over_budget).",
        &["outcome"],
    )
});

/// Beam warm-ups (one whole-body response read to the end per cold piece):
/// `outcome` is `started`, `completed` or `failed`.
pub static BEAM_WARMUPS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_beam_warmups_total",
        "Beam warm-ups of cold pieces, by outcome (started, completed, failed).",
        &["outcome"],
    )
});

/// Windows a reader wanted ahead of a running Beam warm-up and handed to it,
/// or that its stream took from a request that had no bytes for them yet,
/// filled as the stream passes instead of asking anyone again.
pub static BEAM_WARMUP_ADOPTED: Lazy<IntCounter> = Lazy::new(|| {
    counter(
        "beam_edge_beam_warmup_adopted_windows_total",
        "Windows readers handed to a running Beam warm-up (or that its stream took before their request had bytes), filled as it passes.",
    )
});

/// Every `reason` of [`REFUSALS`] (`crate::upstream::Refusal::label`; a
/// unit test there keeps the two equal).
pub const REFUSAL_REASONS: [&str; 5] = [
    "bad_bits",
    "sanctioned",
    "no_cdn",
    "quota_exhausted",
    "denylist",
];

/// Piece requests refused, by `reason`: Beam's refusals (`bad_bits`,
/// `sanctioned`, `no_cdn`, `quota_exhausted`) and `access.denylist` (`denylist`).
pub static REFUSALS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_refusals_total",
        "Piece requests refused, by reason (bad_bits, sanctioned, no_cdn, quota_exhausted, denylist).",
        &["reason"],
    )
});

/// Time to first byte of piece requests whose range starts past byte 0 (seeks).
pub static SEEK_TTFB: Lazy<HistogramVec> = Lazy::new(|| {
    histogram_vec(
        "beam_edge_seek_ttfb_seconds",
        "Time to the response header of piece requests whose range starts past byte 0 (seeks), by cache result.",
        &["cache"],
        latency_buckets(),
    )
});

/// Chain resolutions of which storage providers hold a piece
/// (`upstream::resolve`), by outcome: `found` (at least one provider answered
/// 2xx to `HEAD /piece/<cid>`), `none` (no provider did), `stale` (the RPC
/// failed and the last known provider list was probed instead), `failed`
/// (the RPC failed and no list was ever read).
pub static PROVIDER_RESOLUTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_provider_resolutions_total",
        "Chain resolutions of the storage providers holding a piece, by outcome (found, none, stale, failed).",
        &["outcome"],
    )
});

/// Storage providers put in backoff for `upstream.provider_backoff`: a 429
/// (Curio past 256 concurrent retrievals), a failed GET (5xx, a timeout, a
/// broken connection, a response that is not the range asked for) or
/// wrong bytes.
pub static PROVIDER_BACKOFFS: Lazy<IntCounter> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "beam_edge_provider_backoffs_total",
        "Storage providers skipped for upstream.provider_backoff after a 429, a failed GET or wrong bytes."
    )
    .expect("metric registers")
});

/// Window fetches from the owning peer in cluster mode, by outcome (`ok`,
/// `failed`: refused, timed out, or a bad answer).
pub static PEER_FETCHES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_peer_fetches_total",
        "Window fetches from the owning replica in cluster mode, by outcome (ok, failed).",
        &["outcome"],
    )
});

/// Where a fetch went after a peer failed (`next_peer`: the next replica in
/// hash order; `beam`: no replica left, Beam directly).
pub static PEER_FALLBACKS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_peer_fallbacks_total",
        "Fetches that left a failed owner, by where they went (next_peer, beam).",
        &["to"],
    )
});

/// Membership look-ups (DNS SRV), by result (`ok`, `error`: the last known
/// members are kept).
pub static CLUSTER_DISCOVERY: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_cluster_discovery_total",
        "Cluster membership look-ups (DNS SRV), by result (ok, error: the last members are kept).",
        &["result"],
    )
});

/// Windows owned by another replica that were read often enough here to be
/// kept in this replica's memory tier.
pub static HOT_WINDOWS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_hot_windows_total",
        "Windows of other replicas kept in this replica's memory because they are hot, by event (admitted, dropped: over cluster.hot_share).",
        &["event"],
    )
});

/// Requests refused by the access checks, by reason (`signature_*`,
/// `client_request_rate`, `egress_budget_hour`, `egress_budget_day`).
pub static ACCESS_REFUSALS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter_vec(
        "beam_edge_access_refusals_total",
        "Requests refused by access control, by reason (signature_missing, signature_malformed, signature_unknown_key, signature_mismatch, signature_expired, signature_wrong_client, client_request_rate, egress_budget_hour, egress_budget_day).",
        &["reason"],
    )
});

/// Every `reason` of [`ACCESS_REFUSALS`].
pub const ACCESS_REFUSAL_REASONS: [&str; 9] = [
    "signature_missing",
    "signature_malformed",
    "signature_unknown_key",
    "signature_mismatch",
    "signature_expired",
    "signature_wrong_client",
    "client_request_rate",
    "egress_budget_hour",
    "egress_budget_day",
];

/// Response writes that waited for a client's `access.limits.bytes_per_second`.
pub static PACED_WRITES: Lazy<IntCounter> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "beam_edge_paced_writes_total",
        "Response writes that waited because their client was over access.limits.bytes_per_second."
    )
    .expect("metric registers")
});

/// The routes of `beam_edge_requests_total` and the TTFB histogram.
const ROUTES: [&str; 6] = ["piece", "asset", "player", "health", "ready", "other"];
/// The upstream kinds (`beam_edge_upstream_*{upstream}`).
const UPSTREAMS: [&str; 3] = ["beam", "provider", "peer"];
/// Outcomes of `beam_edge_upstream_requests_total`.
const UPSTREAM_OUTCOMES: [&str; 11] = [
    "ok",
    "ok_full_body",
    "not_found",
    "payment_required",
    "forbidden",
    "timeout",
    "connect_error",
    "bad_response",
    "short_body",
    "error_status",
    "not_configured",
];

/// Touches every metric so that all of them appear in `/metrics` from the
/// start, and every labelled series whose label values are known in
/// advance is exported at 0 (Prometheus' instrumentation guidance), so no
/// dashboard panel reads "No data" on a fresh, healthy edge.
pub fn init() {
    for route in ROUTES {
        TTFB.with_label_values(&[route]);
        RESPONSE_BYTES.with_label_values(&[route]);
        REQUESTS.with_label_values(&[route, "200"]);
    }
    for upstream in UPSTREAMS {
        UPSTREAM_LATENCY.with_label_values(&[upstream]);
        UPSTREAM_BYTES.with_label_values(&[upstream]);
        for outcome in UPSTREAM_OUTCOMES {
            UPSTREAM_REQUESTS.with_label_values(&[upstream, outcome]);
        }
    }
    for tier in ["memory", "disk"] {
        EVICTIONS.with_label_values(&[tier]);
        CACHE_BYTES.with_label_values(&[tier]);
        CACHE_ENTRIES.with_label_values(&[tier]);
        for result in ["hit", "miss"] {
            WINDOW_LOOKUPS.with_label_values(&[tier, result]);
        }
    }
    for kind in ["demand", "prefetch"] {
        for outcome in ["ok", "cancelled", "failed"] {
            WINDOW_FILLS.with_label_values(&[kind, outcome]);
        }
    }
    for cache in ["HIT", "MISS", "PARTIAL"] {
        SEEK_TTFB.with_label_values(&[cache]);
    }
    for reason in ACCESS_REFUSAL_REASONS {
        ACCESS_REFUSALS.with_label_values(&[reason]);
    }
    Lazy::force(&PACED_WRITES);
    Lazy::force(&BEAM_WARMUP_ADOPTED);
    for outcome in ["ok", "failed"] {
        PEER_FETCHES.with_label_values(&[outcome]);
    }
    for to in ["next_peer", "beam"] {
        PEER_FALLBACKS.with_label_values(&[to]);
    }
    for result in ["ok", "error"] {
        CLUSTER_DISCOVERY.with_label_values(&[result]);
    }
    for event in ["admitted", "dropped"] {
        HOT_WINDOWS.with_label_values(&[event]);
    }
    Lazy::force(&REQUESTS);
    Lazy::force(&RESPONSE_BYTES);
    Lazy::force(&UPSTREAM_REQUESTS);
    Lazy::force(&UPSTREAM_LATENCY);
    Lazy::force(&UPSTREAM_BYTES);
    Lazy::force(&UPSTREAM_FULL_BODY);
    Lazy::force(&TTFB);
    Lazy::force(&ABORTS);
    Lazy::force(&SERVED_BYTES);
    Lazy::force(&WINDOW_LOOKUPS);
    Lazy::force(&WINDOW_FILLS);
    Lazy::force(&COALESCED);
    Lazy::force(&PREFETCH);
    Lazy::force(&EVICTIONS);
    Lazy::force(&CACHE_BYTES);
    Lazy::force(&CACHE_ENTRIES);
    Lazy::force(&FALLBACKS);
    Lazy::force(&SEEK_TTFB);
    for result in ["ok", "mismatch"] {
        WINDOW_CHECKS.with_label_values(&[result]);
    }
    for outcome in ["found", "none", "stale", "failed"] {
        PROVIDER_RESOLUTIONS.with_label_values(&[outcome]);
    }
    Lazy::force(&PROVIDER_BACKOFFS);
    Lazy::force(&CACHE_BUDGET_BYTES);
    // Series that ratios and sums divide or add up start at 0, so that a
    // panel or rule has a series (and a first sample to take a rate from)
    // before the first event: a byte hit ratio over an idle tier is 0, not
    // missing, and an abort counter with no abort yet reads 0.
    for source in ["memory", "disk", "upstream", "peer"] {
        SERVED_BYTES.with_label_values(&[source]);
    }
    for check in ["cid", "layer", "unchecked"] {
        SERVED_CHECK_BYTES.with_label_values(&[check]);
    }
    for job in ["build", "sweep", "peer"] {
        for outcome in ["ok", "failed"] {
            LAYER_JOBS.with_label_values(&[job, outcome]);
        }
    }
    Lazy::force(&PURGED_WRONG_WINDOWS);
    Lazy::force(&WRONG_BYTES_HOLDERS);
    for reason in ["upstream", "client"] {
        ABORTS.with_label_values(&[reason]);
    }
    for result in ["issued", "used", "wasted", "skipped"] {
        PREFETCH.with_label_values(&[result]);
    }
    for reason in ["full_body", "warming", "error"] {
        FALLBACKS.with_label_values(&[reason, "provider"]);
    }
    FALLBACKS.with_label_values(&["full_body", "beam_retry"]);
    for outcome in ["won", "lost", "failed", "over_budget"] {
        HEDGES.with_label_values(&[outcome]);
    }
    for outcome in ["started", "completed", "failed"] {
        BEAM_WARMUPS.with_label_values(&[outcome]);
    }
    for reason in REFUSAL_REASONS {
        REFUSALS.with_label_values(&[reason]);
    }
    Lazy::force(&INFLIGHT_BYTES);
    Lazy::force(&INFLIGHT_BUDGET_BYTES);
    for event in [
        "readahead_skipped",
        "paused",
        "queued",
        "rejected",
        "idle_released",
    ] {
        INFLIGHT_EVENTS.with_label_values(&[event]);
    }
    for kind in ["tail", "index"] {
        INDEX_PREFETCH.with_label_values(&[kind]);
    }
}

/// The metrics listener's app: `GET /metrics` in the Prometheus text format
/// (gathered by `pingora-prometheus`), 404 elsewhere.
pub struct MetricsApp;

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        if session.req_header().uri.path() == "/metrics" {
            return PrometheusHttpApp.response(session).await;
        }
        let body = b"not found: metrics are served at /metrics\n".to_vec();
        http::Response::builder()
            .status(404)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// Text of every metric, as `/metrics` would serve it (for tests and the CLI).
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
