//! Disk tier layouts, measured: put and get of 1 MiB windows for
//! file-per-window (the shipped `DiskTier`) against a minimal prototype of
//! file-per-piece (one sparse file per piece, `pwrite` at the window's offset,
//! a sidecar of per-window records `[present u8, pad, crc32 u32]`, eviction by
//! punching a hole). Both keep 64 windows resident, so every put in steady
//! state also evicts one window, and both verify a CRC-32 on get. Also: the
//! cost of the checksum alone, and file-per-window with fsync per put.
//!
//! `cargo bench --bench disk_tier`. Writes under the system temp directory;
//! gets are served from the page cache (both layouts equally).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use beam_edge::cache::disk::{DiskTier, DiskTierOptions, WindowKey};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WINDOW: usize = 1 << 20;
const RESIDENT: u64 = 64;
const WINDOWS_PER_PIECE: u64 = 256;

fn cid_of(piece: u64) -> String {
    format!("baga6ea4seaqbench{piece:08}")
}

fn key_of(n: u64) -> WindowKey {
    WindowKey::new(cid_of(n / WINDOWS_PER_PIECE), n % WINDOWS_PER_PIECE)
}

fn window_bytes() -> Vec<u8> {
    (0..WINDOW).map(|i| (i * 131 + 7) as u8).collect()
}

/// The layout the tier did not choose, reduced to what a put and a get cost.
struct FilePerPiece {
    root: PathBuf,
    state: Mutex<PieceState>,
}

#[derive(Default)]
struct PieceState {
    pieces: HashMap<u64, (File, File)>,
    resident: VecDeque<(u64, u64)>,
}

const RECORD: u64 = 8;
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;

extern "C" {
    fn fallocate(fd: i32, mode: i32, offset: i64, len: i64) -> i32;
}

fn punch_hole(f: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor with in-range arguments.
    let rc = unsafe {
        fallocate(
            f.as_raw_fd(),
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            offset as i64,
            len as i64,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl FilePerPiece {
    fn new(root: &Path) -> FilePerPiece {
        FilePerPiece {
            root: root.to_path_buf(),
            state: Mutex::new(PieceState::default()),
        }
    }

    fn files<'a>(&self, st: &'a mut PieceState, piece: u64) -> io::Result<&'a (File, File)> {
        let open = |ext: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.root.join(format!("{}.{ext}", cid_of(piece))))
        };
        Ok(match st.pieces.entry(piece) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert((open("data")?, open("map")?)),
        })
    }

    fn put(&self, n: u64, data: &[u8]) -> io::Result<()> {
        let (piece, index) = (n / WINDOWS_PER_PIECE, n % WINDOWS_PER_PIECE);
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        let (data_file, map_file) = self.files(&mut st, piece)?;
        data_file.write_all_at(data, index * WINDOW as u64)?;
        // The record is written after the body: a crash between the two leaves
        // a body without a record (a miss), never a record without a body.
        let mut rec = [0u8; RECORD as usize];
        rec[0] = 1;
        rec[4..8].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        map_file.write_all_at(&rec, index * RECORD)?;
        st.resident.push_back((piece, index));
        while st.resident.len() as u64 > RESIDENT {
            let Some((p, i)) = st.resident.pop_front() else {
                break;
            };
            let (data_file, map_file) = self.files(&mut st, p)?;
            map_file.write_all_at(&[0u8; RECORD as usize], i * RECORD)?;
            punch_hole(data_file, i * WINDOW as u64, WINDOW as u64)?;
        }
        Ok(())
    }

    fn get(&self, n: u64) -> io::Result<Option<Vec<u8>>> {
        let (piece, index) = (n / WINDOWS_PER_PIECE, n % WINDOWS_PER_PIECE);
        let (data_file, map_file) = {
            let mut st = self
                .state
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            let (d, m) = self.files(&mut st, piece)?;
            (d.try_clone()?, m.try_clone()?)
        };
        let mut rec = [0u8; RECORD as usize];
        map_file.read_exact_at(&mut rec, index * RECORD)?;
        if rec[0] != 1 {
            return Ok(None);
        }
        let mut body = vec![0u8; WINDOW];
        data_file.read_exact_at(&mut body, index * WINDOW as u64)?;
        let ok = crc32fast::hash(&body).to_le_bytes() == rec[4..8];
        Ok(ok.then_some(body))
    }
}

fn layouts(c: &mut Criterion) {
    let data = window_bytes();
    let tmp = tempfile::tempdir().expect("temp dir");
    let budget = RESIDENT * beam_edge::cache::disk::entry_len(WINDOW as u64);

    let mut g = c.benchmark_group("disk_layout_1MiB");
    g.throughput(Throughput::Bytes(WINDOW as u64));
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let tier = DiskTier::open(&tmp.path().join("fpw"), budget).expect("open");
    let mut n = 0u64;
    g.bench_function("put/file_per_window", |b| {
        b.iter(|| {
            tier.put(&key_of(n), &data).expect("put");
            n += 1;
        })
    });
    // The last RESIDENT windows are resident: read them round robin.
    let first = n - RESIDENT;
    let mut i = 0u64;
    g.bench_function("get/file_per_window", |b| {
        b.iter(|| {
            let body = tier
                .get(&key_of(first + i % RESIDENT), WINDOW as u64)
                .expect("resident");
            i += 1;
            black_box(body)
        })
    });
    drop(tier);

    let fpp_dir = tmp.path().join("fpp");
    std::fs::create_dir_all(&fpp_dir).expect("mkdir");
    let fpp = FilePerPiece::new(&fpp_dir);
    let mut n = 0u64;
    g.bench_function("put/file_per_piece", |b| {
        b.iter(|| {
            fpp.put(n, &data).expect("put");
            n += 1;
        })
    });
    let first = n - RESIDENT;
    let mut i = 0u64;
    g.bench_function("get/file_per_piece", |b| {
        b.iter(|| {
            let body = fpp
                .get(first + i % RESIDENT)
                .expect("get")
                .expect("resident");
            i += 1;
            black_box(body)
        })
    });
    drop(fpp);

    g.bench_function("crc32_only", |b| {
        b.iter(|| crc32fast::hash(black_box(&data)))
    });

    let synced = DiskTier::open_with(
        &tmp.path().join("fpw-fsync"),
        DiskTierOptions {
            budget_bytes: budget,
            fsync: true,
        },
    )
    .expect("open");
    let mut n = 0u64;
    g.sample_size(10);
    g.bench_function("put_fsync/file_per_window", |b| {
        b.iter(|| {
            synced.put(&key_of(n), &data).expect("put");
            n += 1;
        })
    });
    g.finish();
}

criterion_group!(benches, layouts);
criterion_main!(benches);
