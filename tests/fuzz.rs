//! Hostile-input harness: every parser that takes bytes from outside the
//! process, fed arbitrary, token-built and mutated inputs, on stable Rust.
//!
//! What it is: one proptest target per parser (Range / If-Range headers,
//! PieceCID strings, asset manifests, the YAML config, upstream
//! `Content-Range`, Curio's JSON answers and `Location` headers, the disk
//! tier's entry files). Each target first replays its corpus
//! (`tests/fuzz/corpus/<target>/`, every run), then runs generated cases:
//! raw bytes, concatenations of the grammar's tokens, and corpus entries
//! with a few byte-level mutations. A case fails on a panic, on a broken
//! round trip or invariant, and on an allocation out of proportion to its
//! input: a counting global allocator in this test binary measures the peak
//! of live bytes each case adds on its thread, and a case may add at most
//! [`ALLOC_BASE`] + a per-target factor × its input length (64, or 512 for
//! YAML, whose parser keeps a stack frame per nesting level): a parser that
//! believed a length field would ask for far more.
//!
//! What it is not: coverage-guided (no nightly, no cargo-fuzz); the corpus
//! carries the inputs that reach deep paths instead.
//!
//! `make test` runs a bounded number of cases per target, seeded the same
//! way every run; `make fuzz` sets `BEAM_EDGE_FUZZ_CASES` (cases per target)
//! for a longer run with a fresh seed, and arms a watchdog that aborts the
//! run, printing the input, when one case takes over
//! `BEAM_EDGE_FUZZ_CASE_SECS` (default 10) seconds: a hang.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};

use beam_edge::cache::disk::{DiskTier, PieceMetaRecord, WindowKey};
use beam_edge::config::Config;
use beam_edge::http::conditional::{if_none_match, if_range_allows, piece_etag};
use beam_edge::http::range::{
    parse_range_header, plan_ranges, MultipartLayout, ParsedRange, RangeLimits, RangePlan,
};
use beam_edge::manifest::{decode_layer, Manifest};
use beam_edge::piece::PieceCid;
use beam_edge::upload::sp::{
    judge_data_set_created, judge_find_piece, judge_pieces_added, location_tx_hash,
    upload_session_id, PollVerdict,
};
use beam_edge::upstream::parse_content_range;

// ------------------------------------------------------------ allocation cap

/// Live bytes a case may add regardless of its input (formatting an error,
/// a parser's fixed tables).
const ALLOC_BASE: i64 = 1 << 20;
/// Live bytes a case may add per byte of input (a JSON array of one-digit
/// numbers becomes 32-byte values: 16 per input byte).
const ALLOC_PER_INPUT_BYTE: i64 = 64;
/// The same for YAML: libyaml keeps a parser state per nesting level, and
/// `a: [[[[…` measured 316 bytes per input byte.
const ALLOC_PER_YAML_BYTE: i64 = 512;

/// Counts live heap bytes per thread; the system allocator does the work.
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn record(delta: i64) {
    // `try_with`: the allocator also runs while a thread's locals are gone.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are
// const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as i64);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Runs `f` and returns the most live bytes it added on this thread at once.
fn peak_added_by(f: impl FnOnce()) -> i64 {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    PEAK.with(Cell::get) - start
}

// ------------------------------------------------------------------ settings

/// Cases per target from `BEAM_EDGE_FUZZ_CASES` (fuzz mode), else `default`.
fn fuzz_cases() -> Option<u32> {
    std::env::var("BEAM_EDGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
}

fn case_budget() -> Duration {
    Duration::from_secs(
        std::env::var("BEAM_EDGE_FUZZ_CASE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    )
}

/// The input as escaped text, cut to a readable length (the whole input is
/// in proptest's report of the minimal failing case).
fn escaped(input: &[u8]) -> String {
    let text = input.escape_ascii().to_string();
    match text.char_indices().nth(400) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

// ------------------------------------------------------------------ watchdog

/// The case each thread is running (fuzz mode only): target, start, input.
type Running = HashMap<std::thread::ThreadId, (&'static str, Instant, Vec<u8>)>;

fn running() -> &'static Mutex<Running> {
    static RUNNING: OnceLock<Mutex<Running>> = OnceLock::new();
    RUNNING.get_or_init(|| {
        let budget = case_budget();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let Ok(cases) = running().lock() else { return };
            for (target, started, input) in cases.values() {
                if started.elapsed() > budget {
                    eprintln!(
                        "fuzz target {target}: one case ran over {budget:?} (a hang); input: \"{}\"",
                        escaped(input)
                    );
                    std::process::abort();
                }
            }
        });
        Mutex::new(HashMap::new())
    })
}

/// Runs one case of `target`: under the watchdog in fuzz mode, and under the
/// allocation cap always. Panics (failing the case) on a breach.
fn run_case(
    target: &'static str,
    input: &[u8],
    cap_len: usize,
    per_byte: i64,
    check: &dyn Fn(&[u8]),
) {
    let watched = fuzz_cases().is_some();
    if watched {
        let copy = input.to_vec();
        if let Ok(mut r) = running().lock() {
            r.insert(std::thread::current().id(), (target, Instant::now(), copy));
        }
    }
    let added = peak_added_by(|| check(input));
    if watched {
        if let Ok(mut r) = running().lock() {
            r.remove(&std::thread::current().id());
        }
    }
    let cap = ALLOC_BASE + per_byte * cap_len as i64;
    assert!(
        added <= cap,
        "{target}: one case of {} input bytes allocated {added} bytes (cap {cap}); input: \"{}\"",
        input.len(),
        escaped(input)
    );
}

// -------------------------------------------------------------------- corpus

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Every file of a target's corpus, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "corpus {} is empty", dir.display());
    out
}

/// One byte-level edit of a corpus input.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = input.len();
        match e {
            Edit::Flip(at, bits) if n > 0 => input[at % n] ^= bits | 1,
            Edit::Insert(at, bytes) => {
                let at = at % (n + 1);
                input.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(at, len) if n > 0 => {
                let at = at % n;
                input.drain(at..(at + len % 16).min(n));
            }
            Edit::Duplicate(at, len) if n > 0 => {
                let at = at % n;
                let piece = input[at..(at + 1 + len % 64).min(n)].to_vec();
                input.splice(at..at, piece);
            }
            Edit::Truncate(at) => input.truncate(at % (n + 1)),
            _ => {}
        }
    }
    input
}

/// Numbers and bytes that sit on the edges parsers get wrong.
const EDGE_TOKENS: &[&str] = &[
    "0",
    "1",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "4294967296",
    "\u{0}",
    "\u{ff}",
    "\u{fffd}",
    " ",
    "\t",
    "\r\n",
    "\"",
    "\\",
];

fn edit_strategy(tokens: &'static [&'static str]) -> impl Strategy<Value = Edit> {
    let insert = prop_oneof![
        select(tokens).prop_map(|t| t.as_bytes().to_vec()),
        select(EDGE_TOKENS).prop_map(|t| t.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Flip(a, b)),
        (any::<usize>(), insert).prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Remove(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Duplicate(a, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Raw bytes, token sentences, and mutated corpus entries.
fn inputs(seeds: Vec<Vec<u8>>, tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let all_tokens: Vec<&'static str> = tokens.iter().chain(EDGE_TOKENS).copied().collect();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        2 => prop::collection::vec(select(all_tokens), 0..32)
            .prop_map(|ts| ts.concat().into_bytes()),
        4 => (select(seeds), prop::collection::vec(edit_strategy(tokens), 1..6))
            .prop_map(|(seed, edits)| apply(seed, &edits)),
    ]
}

/// Replays `target`'s corpus, then runs `default_cases` generated cases (or
/// `BEAM_EDGE_FUZZ_CASES`) through `check`.
fn fuzz(
    target: &'static str,
    default_cases: u32,
    tokens: &'static [&'static str],
    per_byte: i64,
    check: impl Fn(&[u8]),
) {
    let seeds = corpus(target);
    for (name, input) in &seeds {
        let replay = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(target, input, input.len(), per_byte, &check)
        }));
        assert!(replay.is_ok(), "{target}: corpus input {name} failed");
    }
    let cases = fuzz_cases().unwrap_or(default_cases);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    };
    let mut runner = if fuzz_cases().is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let strategy = inputs(seeds.into_iter().map(|(_, b)| b).collect(), tokens);
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        run_case(target, &input, input.len(), per_byte, &check);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    eprintln!("{target}: {cases} cases in {:?}", started.elapsed());
}

fn lossy(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

// ------------------------------------------------------------------- targets

const RANGE_TOKENS: &[&str] = &[
    "bytes", "BYTES", "=", "-", ",", ", ", "0", "1", "5", "99", "500", "1023", "items", "W/",
    "\"bafk\"", "*",
];

/// `Range` and `If-Range` / `If-None-Match`: the parser never panics, a
/// parsed set respects the spec cap, and every plan stays inside the
/// representation with sorted, disjoint, capped parts and an exact length.
#[test]
fn fuzz_range_headers() {
    let limits = RangeLimits::default();
    fuzz(
        "range",
        3_000,
        RANGE_TOKENS,
        ALLOC_PER_INPUT_BYTE,
        |input| {
            let etag = piece_etag("baga6ea4seaq");
            let text = lossy(input);
            let _ = if_range_allows(&text, &etag);
            let _ = if_none_match(&text, &etag);
            let specs = match parse_range_header(input, &limits) {
                ParsedRange::Specs(specs) => specs,
                ParsedRange::TooMany(n) => {
                    assert!(n > limits.max_specs);
                    return;
                }
                ParsedRange::Invalid => return,
            };
            assert!(!specs.is_empty() && specs.len() <= limits.max_specs);
            for size in [0, 1, 1_000, 1 << 40, u64::MAX - 1, u64::MAX] {
                match plan_ranges(&specs, size, &limits) {
                    RangePlan::Single(r) => assert!(r.start <= r.end && r.end < size),
                    RangePlan::Multi(parts) => {
                        assert!(parts.len() >= 2 && parts.len() <= limits.max_parts);
                        for w in parts.windows(2) {
                            assert!(w[0].end < w[1].start, "parts overlap or are unsorted");
                        }
                        assert!(parts.iter().all(|r| r.start <= r.end && r.end < size));
                        let layout = MultipartLayout::new(&parts, size, "video/mp4", "b0undary");
                        let heads: u64 = layout.parts.iter().map(|(h, _)| h.len() as u64).sum();
                        let bodies: u128 = parts.iter().map(|r| u128::from(r.len())).sum();
                        assert_eq!(
                            u128::from(layout.content_length),
                            u128::from(heads) + bodies + layout.closing.len() as u128,
                            "multipart length is not exact for size {size}"
                        );
                    }
                    RangePlan::Full | RangePlan::Unsatisfiable | RangePlan::Rejected(_) => {}
                }
            }
        },
    );
}

const CID_TOKENS: &[&str] = &[
    "b",
    "baga6ea4seaq",
    "bafkzcib",
    "bafy",
    "z",
    "f",
    "m",
    "u",
    "a",
    "q",
    "7",
    "2",
    "aaaaaaaa",
    "zzzz",
    "===",
    "0x",
];

/// PieceCID strings and bytes: a parsed CID formats back to a string that
/// parses to the same CID, and its bytes round-trip too.
#[test]
fn fuzz_piece_cid() {
    fuzz("cid", 3_000, CID_TOKENS, ALLOC_PER_INPUT_BYTE, |input| {
        if let Ok(cid) = PieceCid::from_bytes(input) {
            assert_eq!(PieceCid::from_bytes(&cid.to_bytes()).ok(), Some(cid));
        }
        let Ok(cid) = PieceCid::parse(&lossy(input)) else {
            return;
        };
        let text = cid.to_string();
        assert_eq!(PieceCid::parse(&text).as_ref(), Ok(&cid), "{text}");
        let _ = (cid.padded_size(), cid.height(), cid.padding(), cid.to_v1());
        if let Some(size) = cid.payload_size() {
            assert_eq!(cid.to_v1().to_v2(size).ok(), Some(cid));
        }
    });
}

const MANIFEST_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"format\"",
    "\"version\"",
    "\"size\"",
    "\"pieces\"",
    "\"cid\"",
    "\"layer\"",
    "\"window\"",
    "\"content_type\"",
    "\"file_name\"",
    "\"beam-edge-asset\"",
    "1048576",
    "128",
    "null",
    "true",
    "1e400",
    "-0",
];

/// Asset manifests: a parsed manifest's pieces add up, its segments of any
/// range lie inside the pieces, its layers decode, and it round-trips.
#[test]
fn fuzz_manifest() {
    fuzz(
        "manifest",
        2_000,
        MANIFEST_TOKENS,
        ALLOC_PER_INPUT_BYTE,
        |input| {
            let Ok(m) = Manifest::parse(input) else {
                return;
            };
            assert_eq!(Manifest::parse(&m.to_bytes()).as_ref(), Ok(&m));
            for p in &m.pieces {
                if !p.layer.is_empty() {
                    assert!(decode_layer(&p.layer).is_some());
                }
            }
            if m.size > 0 {
                let last = m.size - 1;
                for range in [(0, last), (last / 2, last), (0, 0), (last, last)] {
                    let r = beam_edge::http::range::ByteRange::new(range.0, range.1);
                    let segments = m.segments(r);
                    let total: u64 = segments.iter().map(|(_, s)| s.len()).sum();
                    assert_eq!(total, r.len(), "segments of {r:?} do not add up");
                    for (i, s) in segments {
                        assert!(s.end < m.pieces[i].size);
                    }
                }
            }
        },
    );
}

const CONFIG_TOKENS: &[&str] = &[
    "server:\n",
    "upstream:\n",
    "cache:\n",
    "admin:\n",
    "metrics:\n",
    "upload:\n",
    "  ",
    "listen: ",
    "\"127.0.0.1:8080\"",
    "threads: ",
    "memory: ",
    "512MiB",
    "30s",
    "disk:\n",
    "path: ",
    "window: ",
    "payer: ",
    "beam_url: ",
    "&a ",
    "*a",
    "[",
    "]",
    "{",
    "}",
    "- ",
    "!!binary ",
    "~",
    "<<: ",
    "---\n",
    "...\n",
    "\n",
    "#",
];

/// The YAML config: any text is a config or an error naming where it broke;
/// alias bombs and deep nesting stay within the allocation cap.
#[test]
fn fuzz_config() {
    fuzz("config", 500, CONFIG_TOKENS, ALLOC_PER_YAML_BYTE, |input| {
        if let Err(e) = Config::from_yaml(&lossy(input), "fuzz.yaml") {
            assert!(!e.to_string().is_empty());
        }
    });
}

const CONTENT_RANGE_TOKENS: &[&str] = &["bytes ", "bytes", "*", "/", "-", "0", "1", "9", " "];

/// Upstream `Content-Range`: an accepted value is a range inside its total,
/// and it formats back to itself.
#[test]
fn fuzz_content_range() {
    fuzz(
        "content_range",
        3_000,
        CONTENT_RANGE_TOKENS,
        ALLOC_PER_INPUT_BYTE,
        |input| {
            let Some((range, total)) = parse_content_range(&lossy(input)) else {
                return;
            };
            assert!(range.start <= range.end && range.end < total);
            assert_eq!(
                parse_content_range(&range.content_range(total)),
                Some((range, total))
            );
        },
    );
}

const CURIO_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"txStatus\"",
    "\"confirmed\"",
    "\"pending\"",
    "\"rejected\"",
    "\"dataSetCreated\"",
    "\"dataSetId\"",
    "\"piecesAdded\"",
    "\"confirmedPieceIds\"",
    "\"pieceCid\"",
    "true",
    "false",
    "null",
    "7",
    "\"7\"",
    "/pdp/piece/uploads/",
    "/pdp/data-sets/created/",
    "0x",
    "deadbeef",
    "-",
    "\u{0}\u{c8}",
];

const CURIO_TX: &str = "0x1234";
const CURIO_PIECE: &str = "bafkzcibcaapao7s3n7ipaqlkthmyevwnjqmjrpdrjemkoqcv3ie5lqwzwm2bgmy";

/// Curio's answers: the first two bytes pick the status, the rest is the
/// body (and, as text, a `Location`). Every judge gives a verdict or a
/// clear error, and a "ready" verdict carries what was asked about.
#[test]
fn fuzz_curio_answers() {
    fuzz(
        "curio",
        3_000,
        CURIO_TOKENS,
        ALLOC_PER_INPUT_BYTE,
        |input| {
            let (status, body) = match input {
                [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
                _ => (200, input),
            };
            let status = http::StatusCode::from_u16(status).unwrap();
            for s in [status, http::StatusCode::OK] {
                if let Err(e) = judge_find_piece(s, body, CURIO_PIECE) {
                    assert!(!e.to_string().is_empty());
                }
                if let Err(e) = judge_data_set_created(s, body, CURIO_TX) {
                    assert!(!e.to_string().is_empty());
                }
                match judge_pieces_added(s, body, CURIO_TX, 7) {
                    Ok(PollVerdict::Ready(added)) => assert_eq!(added.data_set_id, 7),
                    Ok(PollVerdict::Pending(why)) => assert!(!why.is_empty()),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
            let location = lossy(input);
            if let Some(id) = upload_session_id(&location) {
                assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
            }
            if let Some(hash) = location_tx_hash(&location) {
                assert!(hash.starts_with("0x") && hash[2..].bytes().all(|b| b.is_ascii_hexdigit()));
            }
        },
    );
}

// ----------------------------------------------------------------- disk tier

const DISK_CID: &str = "baga6ea4seaqdisktierfuzz";
/// Three and a half 64 KiB blocks: a block table, a short last block.
const DISK_BODY_LEN: usize = 3 * 65_536 + 30_000;

fn disk_body() -> Vec<u8> {
    (0..DISK_BODY_LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Every file of a directory tree, by path relative to it, largest first.
fn tree_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    out
}

const DISK_TOKENS: &[&str] = &[
    "BEWD",
    "\u{2}\u{0}",
    "\u{1}\u{0}",
    "\u{ff}\u{ff}\u{ff}\u{ff}",
];

/// The disk tier's files (window entries, piece metadata, the saved index):
/// a store written through the public API, one of its files replaced by
/// mutated or arbitrary bytes, then reopened and read. A torn or garbage
/// file is a miss, never a panic, never wrong bytes and never an allocation
/// beyond the asked window. The first input byte picks the file (largest
/// first: the window entry); corpus files replace the window entry.
#[test]
fn fuzz_disk_entries() {
    let template = tempfile::tempdir().unwrap();
    let body = disk_body();
    let key = WindowKey::new(DISK_CID, 0);
    let meta = PieceMetaRecord {
        size: 5 * DISK_BODY_LEN as u64,
        content_type: "video/mp4".into(),
    };
    {
        let tier = DiskTier::open(template.path(), 1 << 30).unwrap();
        tier.put(&key, &body).unwrap();
        tier.put_meta(DISK_CID, &meta).unwrap();
        tier.save_index().unwrap();
    }
    let files = tree_files(template.path());
    assert!(
        files.len() >= 3,
        "expected an entry, a meta and an index file"
    );
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let work = tempfile::tempdir().unwrap();
    let body_len = body.len() as u64;

    let check = |input: &[u8]| {
        let (which, replacement) = match input.split_first() {
            Some((w, rest)) => (usize::from(*w) % files.len(), rest),
            None => (0, input),
        };
        let root = work.path().join("cache");
        let _ = std::fs::remove_dir_all(&root);
        for (i, (rel, bytes)) in files.iter().enumerate() {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, if i == which { replacement } else { bytes }).unwrap();
        }
        let tier = DiskTier::open(&root, 1 << 30).unwrap();
        if let Some(m) = tier.get_meta(DISK_CID) {
            assert_eq!(m, meta, "a mutated meta file was believed");
        }
        for range in [0..10, 65_530..65_540, body_len - 5..body_len] {
            if let Some(got) = tier.get_range(&key, body_len, range.clone()) {
                assert_eq!(&got[..], &body[range.start as usize..range.end as usize]);
            }
        }
        if let Some(got) = tier.get(&key, body_len) {
            assert_eq!(got, body, "a mutated entry was served");
        }
        // A wrong expected length is a miss, never a read of that length.
        assert!(tier.get(&key, 1 << 40).is_none());
        let _ = (tier.stats(), tier.windows_of(DISK_CID), tier.all_meta());
    };

    let mut seeds: Vec<Vec<u8>> = (0..files.len())
        .map(|i| {
            let mut v = vec![i as u8];
            v.extend_from_slice(&files[i].1);
            v
        })
        .collect();
    for (name, bytes) in corpus("disk") {
        let mut v = vec![0u8];
        v.extend_from_slice(&bytes);
        let replay = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case("disk", &v, total + v.len(), ALLOC_PER_INPUT_BYTE, &check)
        }));
        assert!(replay.is_ok(), "disk: corpus input {name} failed");
        seeds.push(v);
    }
    // The window body itself is read: allow the whole store on top.
    let cap_len = total;
    let cases = fuzz_cases().map_or(150, |n| (n / 20).max(1));
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    };
    let mut runner = if fuzz_cases().is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let edits = prop::collection::vec(edit_strategy(DISK_TOKENS), 1..6);
    let strategy = (select(seeds), edits).prop_map(|(seed, edits)| {
        // Keep the selector byte: mutate the file, not the choice of file.
        let (w, rest) = seed.split_first().map_or((0, &[][..]), |(w, r)| (*w, r));
        let mut v = vec![w];
        v.extend(apply(rest.to_vec(), &edits));
        v
    });
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        run_case(
            "disk",
            &input,
            cap_len + input.len(),
            ALLOC_PER_INPUT_BYTE,
            &check,
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("disk: {e}");
    }
    eprintln!("disk: {cases} cases in {:?}", started.elapsed());
}
