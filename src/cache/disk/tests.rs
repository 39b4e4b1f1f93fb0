//! Tests of the disk tier as a whole: round trips, eviction, torn and
//! corrupt entries, reopening, purges, hostile CIDs, concurrency and `meta`
//! files. The hand-over test lives in `handover`.
use super::entry::{entry_len_v1, HEADER_LEN, MAGIC, VERSION_1};
use super::index::INDEX_HEADER;
use super::piece_meta::META_FILE;
use super::scan::parse_index;
use super::*;
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const CID_A: &str = "baga6ea4seaqaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CID_B: &str = "bafkzcibbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn body(key: &WindowKey, len: usize) -> Vec<u8> {
    let seed = crc32fast::hash(format!("{}/{}", key.cid, key.index).as_bytes());
    (0..len)
        .map(|i| (seed as usize).wrapping_add(i * 31) as u8)
        .collect()
}

fn key(cid: &str, index: u64) -> WindowKey {
    WindowKey::new(cid, index)
}

/// Budget that holds exactly `n` windows of `len` bytes.
fn budget_for(n: u64, len: u64) -> u64 {
    n * entry_len(len)
}

fn put_body(tier: &DiskTier, k: &WindowKey, len: usize) -> Vec<u8> {
    let b = body(k, len);
    tier.put(k, &b).unwrap();
    b
}

/// Every window file currently under the store's `w/` directory.
fn files_on_disk(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for shard in fs::read_dir(dir.join("w")).unwrap() {
        for piece in fs::read_dir(shard.unwrap().path()).unwrap() {
            for f in fs::read_dir(piece.unwrap().path()).unwrap() {
                let f = f.unwrap();
                if parse_index(f.file_name().to_str().unwrap()).is_some() {
                    out.push((f.path(), f.metadata().unwrap().len()));
                }
            }
        }
    }
    out
}

#[test]
fn the_tier_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<DiskTier>();
    shareable::<Arc<DiskTier>>();
}

#[test]
fn a_cancelled_put_stores_nothing_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    let k = key(CID_A, 3);
    tier.put_unless(&k, &body(&k, 4000), || true).unwrap();
    assert!(!tier.contains(&k));
    assert_eq!(tier.stats().entries, 0);
    assert!(files_on_disk(dir.path()).is_empty());
    let tmp: Vec<_> = fs::read_dir(dir.path().join("tmp"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    tier.put_unless(&k, &body(&k, 4000), || false).unwrap();
    assert_eq!(tier.get(&k, 4000).unwrap(), body(&k, 4000));
}

#[test]
fn put_then_get_round_trips_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    let k = key(CID_A, 7);
    let b = put_body(&tier, &k, 5000);
    assert!(tier.contains(&k));
    assert_eq!(tier.get(&k, 5000).unwrap(), b);
    assert_eq!(tier.get(&key(CID_A, 8), 5000), None);
    assert_eq!(tier.windows_of(CID_A), vec![7]);
    assert_eq!(
        tier.stats(),
        DiskStats {
            bytes: entry_len(5000),
            entries: 1,
            evictions: 0,
            evicted_bytes: 0
        }
    );
    // The file is where the layout says, with header + body.
    let path = tier.window_path(&k);
    assert!(path.starts_with(dir.path().join("w")));
    assert_eq!(fs::metadata(path).unwrap().len(), entry_len(5000));
    // Overwriting replaces, it does not double-count.
    let b2 = vec![9u8; 100];
    tier.put(&k, &b2).unwrap();
    assert_eq!(tier.get(&k, 100).unwrap(), b2);
    assert_eq!(tier.stats().bytes, entry_len(100));
    assert_eq!(tier.stats().entries, 1);
    // An empty window (a zero-length tail never happens, but is legal).
    let e = key(CID_A, 9);
    tier.put(&e, b"").unwrap();
    assert_eq!(tier.get(&e, 0).unwrap(), Bytes::new());
}

#[test]
fn eviction_is_lru_by_bytes_and_get_refreshes_recency() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), budget_for(3, 1000)).unwrap();
    let (a, b, c, d) = (key(CID_A, 0), key(CID_A, 1), key(CID_B, 0), key(CID_B, 1));
    for k in [&a, &b, &c] {
        put_body(&tier, k, 1000);
    }
    assert!(tier.get(&a, 1000).is_some()); // a is now newest: order b, c, a
    put_body(&tier, &d, 1000);
    assert!(!tier.contains(&b));
    assert!(!tier.window_path(&b).exists());
    for k in [&a, &c, &d] {
        assert_eq!(tier.get(k, 1000).unwrap(), body(k, 1000));
    }
    let s = tier.stats();
    assert_eq!(
        (s.entries, s.bytes, s.evictions, s.evicted_bytes),
        (3, budget_for(3, 1000), 1, entry_len(1000))
    );
    // contains() does not refresh recency: c is oldest and goes next.
    assert!(tier.contains(&c));
    // A bigger window evicts as many as needed.
    let big = key(CID_B, 2);
    put_body(&tier, &big, 2000);
    assert!(!tier.contains(&c) && !tier.contains(&a) && tier.contains(&d) && tier.contains(&big));
    assert_eq!(tier.stats().evictions, 3);
    assert!(tier.stats().bytes <= budget_for(3, 1000));
}

#[test]
fn last_window_evicted_takes_the_meta_and_directory_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), budget_for(1, 1000)).unwrap();
    put_body(&tier, &key(CID_A, 0), 1000);
    tier.put_meta(
        CID_A,
        &PieceMetaRecord {
            size: 1000,
            content_type: "video/mp4".into(),
        },
    )
    .unwrap();
    put_body(&tier, &key(CID_B, 0), 1000);
    assert_eq!(tier.get_meta(CID_A), None);
    assert!(!tier.piece_dir(CID_A).exists());
    assert!(tier.windows_of(CID_A).is_empty());
}

#[test]
fn torn_or_corrupt_entries_are_misses_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    let len = 4096usize;
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 5] = [
        ("truncated", |p| {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(2000).unwrap();
        }),
        ("body byte flipped", |p| flip(p, 3000)),
        ("header length flipped", |p| flip(p, 9)),
        ("magic flipped", |p| flip(p, 0)),
        ("extended", |p| {
            let mut f = OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(b"x").unwrap();
        }),
    ];
    fn flip(p: &Path, at: usize) {
        let mut bytes = fs::read(p).unwrap();
        bytes[at] ^= 0x40;
        fs::write(p, bytes).unwrap();
    }
    for (i, (what, damage)) in cases.iter().enumerate() {
        let k = key(CID_A, i as u64);
        put_body(&tier, &k, len);
        let path = tier.window_path(&k);
        damage(&path);
        assert_eq!(tier.get(&k, len as u64), None, "{what}");
        assert!(!path.exists(), "{what}: file must be deleted");
        assert!(!tier.contains(&k), "{what}");
    }
    // A caller expecting another length: miss, deleted.
    let k = key(CID_B, 0);
    put_body(&tier, &k, len);
    assert_eq!(tier.get(&k, len as u64 - 1), None);
    assert!(!tier.window_path(&k).exists());
    // A file deleted behind our back: miss, dropped from the index.
    let k = key(CID_B, 1);
    put_body(&tier, &k, len);
    fs::remove_file(tier.window_path(&k)).unwrap();
    assert_eq!(tier.get(&k, len as u64), None);
    assert_eq!(tier.stats(), DiskStats::default());
}

#[test]
fn ranges_read_only_their_blocks_and_check_them() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), 8 << 20).unwrap();
    let len = 3 * BLOCK_LEN as usize + 1000; // a short last block
    let k = key(CID_A, 0);
    let b = put_body(&tier, &k, len);
    let l = len as u64;
    let bl = BLOCK_LEN;
    for r in [
        0..l,
        0..1,
        l - 1..l,
        5..bl,
        bl - 1..bl + 1,
        bl..2 * bl,
        100..3 * bl + 10,
        3 * bl..l,
        7..7,
    ] {
        let got = tier.get_range(&k, l, r.clone()).unwrap();
        assert_eq!(got, b[r.start as usize..r.end as usize], "{r:?}");
    }
    assert_eq!(tier.get_range(&k, l, 0..l + 1), None, "past the end");
    assert!(tier.contains(&k));
    // A flipped byte in block 2: ranges that avoid the block read fine
    // (every byte they return was checked); one that touches it is a
    // miss, and the entry is deleted.
    let path = tier.window_path(&k);
    let mut bytes = fs::read(&path).unwrap();
    let at = (entry_len(l) - l + 2 * bl + 17) as usize;
    bytes[at] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert_eq!(
        tier.get_range(&k, l, 0..2 * bl).unwrap(),
        b[..2 * bl as usize]
    );
    assert_eq!(tier.get_range(&k, l, 2 * bl + 17..2 * bl + 18), None);
    assert!(!path.exists());
    assert!(!tier.contains(&k));
    // A damaged block table is caught before any body byte is used.
    let k = key(CID_A, 1);
    put_body(&tier, &k, len);
    let path = tier.window_path(&k);
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_LEN + 5] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert_eq!(tier.get_range(&k, l, 0..10), None);
    assert!(!path.exists());
}

#[test]
fn entries_of_the_first_format_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(CID_B, 4);
    let b = body(&k, 5000);
    let path;
    {
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        put_body(&tier, &k, 10); // creates the piece's directory
        path = tier.window_path(&k);
    }
    // Format 1: header (CRC-32 of the whole body), then the body.
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION_1.to_le_bytes());
    h[8..16].copy_from_slice(&5000u64.to_le_bytes());
    h[16..20].copy_from_slice(&crc32fast::hash(&b).to_le_bytes());
    let c = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&c.to_le_bytes());
    fs::write(&path, [&h[..], &b[..]].concat()).unwrap();
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(tier.stats().bytes, entry_len_v1(5000));
    assert_eq!(tier.get_range(&k, 5000, 100..200).unwrap(), b[100..200]);
    assert_eq!(tier.get(&k, 5000).unwrap(), b);
    // Its body checksum is still checked.
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_LEN + 4000] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert_eq!(tier.get_range(&k, 5000, 0..10), None);
    assert!(!path.exists());
}

#[test]
fn open_deletes_temp_files_and_runt_entries() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(CID_A, 1);
    {
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        put_body(&tier, &k, 100);
        put_body(&tier, &key(CID_A, 2), 100);
        fs::write(tier.temp_path(), b"half a window").unwrap();
        fs::create_dir_all(dir.path().join("tmp/1-9.tmp")).unwrap(); // an interrupted purge
        fs::write(dir.path().join("tmp/1-9.tmp/0"), b"x").unwrap();
        // A crash that left an empty (never written back) entry.
        fs::write(tier.window_path(&key(CID_A, 2)), b"").unwrap();
    }
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert!(!tier.window_path(&key(CID_A, 2)).exists());
    assert_eq!(tier.windows_of(CID_A), vec![1]);
    assert_eq!(tier.get(&k, 100).unwrap(), body(&k, 100));
}

#[test]
fn reopen_serves_every_entry_and_keeps_saved_lru_order() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<WindowKey> = (0..4)
        .map(|i| key(if i % 2 == 0 { CID_A } else { CID_B }, i))
        .collect();
    {
        let tier = DiskTier::open(dir.path(), budget_for(4, 500)).unwrap();
        for k in &keys {
            put_body(&tier, k, 500);
        }
        // Recency order now: 1, 2, 3, 0 (oldest first), against mtime order 0..3.
        assert!(tier.get(&keys[0], 500).is_some());
        tier.save_index().unwrap();
    } // dropped: a restart
    let tier = DiskTier::open(dir.path(), budget_for(4, 500)).unwrap();
    assert_eq!(tier.stats().entries, 4);
    for k in &keys {
        assert_eq!(tier.get(k, 500).unwrap(), body(k, 500));
    }
    // The gets above refreshed in order 0..3, so the order is now 0..3.
    tier.save_index().unwrap();
    drop(tier);
    let tier = DiskTier::open(dir.path(), budget_for(4, 500)).unwrap();
    assert!(tier.get(&keys[0], 500).is_some()); // order 1, 2, 3, 0
    put_body(&tier, &key(CID_B, 9), 500);
    assert!(
        !tier.contains(&keys[1]),
        "the least recently used goes first"
    );
    assert!(tier.contains(&keys[0]) && tier.contains(&keys[2]) && tier.contains(&keys[3]));
}

#[test]
fn entries_written_after_the_last_save_are_found_and_count_as_newer() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new1, new2) = (key(CID_A, 0), key(CID_A, 1), key(CID_B, 0));
    {
        let tier = DiskTier::open(dir.path(), budget_for(3, 300)).unwrap();
        put_body(&tier, &old, 300);
        tier.save_index().unwrap();
        put_body(&tier, &new1, 300);
        put_body(&tier, &new2, 300);
        // No save_index: as after kill -9. Make the mtime order explicit.
        let t0 = SystemTime::now() - Duration::from_secs(100);
        File::options()
            .write(true)
            .open(tier.window_path(&new2))
            .unwrap()
            .set_modified(t0)
            .unwrap();
        File::options()
            .write(true)
            .open(tier.window_path(&new1))
            .unwrap()
            .set_modified(t0 + Duration::from_secs(1))
            .unwrap();
    }
    let tier = DiskTier::open(dir.path(), budget_for(3, 300)).unwrap();
    for k in [&old, &new1, &new2] {
        assert_eq!(tier.get(k, 300).unwrap(), body(k, 300));
    }
    drop(tier);
    // Saved order first (old, despite a newer mtime), then new2, new1 by mtime.
    let tier = DiskTier::open(dir.path(), budget_for(3, 300)).unwrap();
    put_body(&tier, &key(CID_B, 5), 300);
    assert!(!tier.contains(&old));
    put_body(&tier, &key(CID_B, 6), 300);
    assert!(!tier.contains(&new2));
    assert!(tier.contains(&new1));
}

#[test]
fn without_a_saved_index_order_is_by_mtime_and_a_smaller_budget_evicts_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<WindowKey> = (0..4).map(|i| key(CID_A, i)).collect();
    {
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        let now = SystemTime::now();
        for (age, k) in [3u64, 0, 2, 1].iter().zip(&keys) {
            put_body(&tier, k, 200);
            let f = File::options()
                .write(true)
                .open(tier.window_path(k))
                .unwrap();
            f.set_modified(now - Duration::from_secs(10 * age)).unwrap();
        }
    }
    let tier = DiskTier::open(dir.path(), budget_for(2, 200)).unwrap();
    // Oldest by mtime were keys[0] (30 s) and keys[2] (20 s).
    assert_eq!(tier.windows_of(CID_A), vec![1, 3]);
    assert!(!tier.window_path(&keys[0]).exists() && !tier.window_path(&keys[2]).exists());
    assert_eq!(tier.stats().evictions, 2);
}

#[test]
fn remove_piece_purges_windows_and_meta_of_that_piece_only() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    for i in 0..3 {
        put_body(&tier, &key(CID_A, i), 100);
    }
    put_body(&tier, &key(CID_B, 0), 100);
    tier.put_meta(
        CID_A,
        &PieceMetaRecord {
            size: 300,
            content_type: "video/mp4".into(),
        },
    )
    .unwrap();
    assert_eq!(tier.remove_piece(CID_A), (3, 3 * (entry_len(100))));
    assert!(tier.windows_of(CID_A).is_empty());
    assert_eq!(tier.get(&key(CID_A, 0), 100), None);
    assert_eq!(tier.get_meta(CID_A), None);
    assert!(!tier.piece_dir(CID_A).exists());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(tier.windows_of(CID_B), vec![0]);
    assert_eq!(tier.stats().entries, 1);
    assert_eq!(tier.stats().evictions, 0, "a purge is not an eviction");
    assert_eq!(tier.remove_piece(CID_A), (0, 0));
    drop(tier);
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    assert!(tier.windows_of(CID_A).is_empty());
    assert_eq!(tier.get_meta(CID_A), None);
}

#[test]
fn cids_that_could_escape_the_directory_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let tier = DiskTier::open(&root, 1 << 20).unwrap();
    let long = "b".repeat(MAX_CID_LEN + 1);
    for bad in [
        "",
        "..",
        "../x",
        "a/b",
        "/etc",
        "Bafk",
        "baf-k",
        "baf k",
        "baf\0k",
        long.as_str(),
    ] {
        let k = key(bad, 0);
        let err = tier.put(&k, b"data").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        assert_eq!(tier.get(&k, 4), None);
        assert!(!tier.contains(&k));
        let meta = PieceMetaRecord {
            size: 4,
            content_type: "x/y".into(),
        };
        assert_eq!(
            tier.put_meta(bad, &meta).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(tier.remove_piece(bad), (0, 0));
    }
    assert!(is_valid_cid(&"b".repeat(MAX_CID_LEN)));
    assert_eq!(tier.stats(), DiskStats::default());
    // Nothing was created beside the store.
    let siblings: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, vec![std::ffi::OsString::from("cache")]);
    // A bad content type cannot inject lines into the meta file.
    let meta = PieceMetaRecord {
        size: 4,
        content_type: "text/plain\nsize 9".into(),
    };
    assert_eq!(
        tier.put_meta(CID_A, &meta).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn a_window_larger_than_the_budget_is_not_stored_and_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path(), budget_for(2, 1000)).unwrap();
    put_body(&tier, &key(CID_A, 0), 1000);
    let big = key(CID_A, 1);
    tier.put(&big, &body(&big, 3000)).unwrap();
    assert!(!tier.contains(&big));
    assert!(!tier.window_path(&big).exists());
    assert!(tier.contains(&key(CID_A, 0)));
    assert_eq!(tier.stats().evictions, 0);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    let huge = vec![0u8; (MAX_WINDOW_LEN + 1) as usize];
    assert_eq!(
        tier.put(&big, &huge).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn concurrent_puts_and_gets_keep_index_and_disk_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let len = 2048usize;
    let tier = Arc::new(DiskTier::open(dir.path(), budget_for(12, len as u64)).unwrap());
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (tier, barrier) = (tier.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut hits = 0;
                for i in 0..300u64 {
                    let k = key(
                        [CID_A, CID_B][(i % 2) as usize],
                        (i * 7 + t as u64 * 13) % 20,
                    );
                    match i % 5 {
                        0 if t == 0 && i % 50 == 0 => {
                            tier.remove_piece(&k.cid);
                        }
                        0 | 1 => tier.put(&k, &body(&k, len)).unwrap(),
                        _ => {
                            if let Some(b) = tier.get(&k, len as u64) {
                                assert_eq!(b, body(&k, len), "never wrong bytes");
                                hits += 1;
                            }
                        }
                    }
                }
                hits
            })
        })
        .collect();
    let hits: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(hits > 0);
    let s = tier.stats();
    let files = files_on_disk(dir.path());
    assert!(s.bytes <= budget_for(12, len as u64));
    assert_eq!(s.entries, files.len() as u64);
    assert_eq!(s.bytes, files.iter().map(|(_, l)| l).sum::<u64>());
    assert_eq!(s.bytes, s.entries * entry_len(len as u64));
    assert!(s.evictions > 0);
    let mut listed: Vec<(String, u64)> = Vec::new();
    for cid in [CID_A, CID_B] {
        listed.extend(
            tier.windows_of(cid)
                .into_iter()
                .map(|i| (cid.to_string(), i)),
        );
    }
    assert_eq!(listed.len() as u64, s.entries);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn meta_round_trips_across_reopen_and_a_torn_meta_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let meta_a = PieceMetaRecord {
        size: 34_359_738_368,
        content_type: "video/mp4".into(),
    };
    let meta_b = PieceMetaRecord {
        size: 127,
        content_type: "application/octet-stream".into(),
    };
    {
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        put_body(&tier, &key(CID_A, 0), 10);
        tier.put_meta(CID_A, &meta_a).unwrap();
        tier.put_meta(CID_B, &meta_b).unwrap(); // no windows yet: kept too
        assert_eq!(tier.get_meta(CID_A), Some(meta_a.clone()));
    }
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(tier.get_meta(CID_A), Some(meta_a.clone()));
    assert_eq!(tier.get_meta(CID_B), Some(meta_b.clone()));
    let mut all = tier.all_meta();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        all,
        vec![(CID_B.to_string(), meta_b), (CID_A.to_string(), meta_a)]
    ); // "bafk" < "baga"
       // Tear B's meta file: dropped (and deleted) at the next open.
    let path = tier.piece_dir(CID_B).join(META_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, &text[..text.len() - 5]).unwrap();
    drop(tier);
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(tier.get_meta(CID_B), None);
    assert!(!path.exists());
    assert!(tier.get_meta(CID_A).is_some());
}

#[test]
fn a_damaged_saved_index_only_loses_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
        put_body(&tier, &key(CID_A, 0), 10);
        put_body(&tier, &key(CID_A, 1), 10);
        tier.save_index().unwrap();
    }
    let text = fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
    assert!(text.starts_with(INDEX_HEADER) && text.ends_with("end 2\n"));
    fs::write(dir.path().join(INDEX_FILE), "garbage\n../../etc 1\n").unwrap();
    let tier = DiskTier::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(tier.windows_of(CID_A), vec![0, 1]);
}
