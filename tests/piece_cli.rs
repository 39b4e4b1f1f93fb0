//! The `piece-cid` command on real files: output lines, `--v1`, the layer
//! file, and its refusals; through the library function, and as the real
//! `beam-edge piece-cid` binary (flags, standard input, exit codes).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use beam_edge::piece::cli::{write_piece_cids, PieceCidCommandError};
use beam_edge::piece::commp::{verify_layer, DEFAULT_WINDOW_PADDED};
use beam_edge::piece::PieceCid;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("piece-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(
    files: &[PathBuf],
    v1: bool,
    layer: Option<&std::path::Path>,
) -> Result<String, PieceCidCommandError> {
    let mut out = Vec::new();
    write_piece_cids(files, v1, layer, DEFAULT_WINDOW_PADDED, &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

#[test]
fn prints_one_line_per_file_in_v2_or_v1() {
    let dir = TempDir::new("lines");
    let zeros = dir.0.join("zeros-1024");
    let quads = dir.0.join("quads");
    std::fs::write(&zeros, vec![0u8; 1024]).expect("write");
    let q: Vec<u8> = (0u8..4).flat_map(|b| std::iter::repeat_n(b, 127)).collect();
    std::fs::write(&quads, q).expect("write");
    let files = [zeros.clone(), quads.clone()];

    let v2 = run(&files, false, None).expect("runs");
    assert_eq!(
        v2,
        format!(
            "bafkzcibd6adqn7d6skbjnziw7kw6tbvsr6jnisspes4tkscsem3wu6mqe66br6bt  {}\n\
             bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi  {}\n",
            zeros.display(),
            quads.display()
        )
    );
    let v1 = run(&files, true, None).expect("runs");
    assert_eq!(
        v1,
        format!(
            "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy  {}\n\
             baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi  {}\n",
            zeros.display(),
            quads.display()
        )
    );
}

#[test]
fn writes_the_layer_as_raw_nodes() {
    let dir = TempDir::new("layer");
    let input = dir.0.join("two-and-a-bit-windows");
    let data: Vec<u8> = (0..2 * 1_040_384 + 10).map(|i| (i % 241) as u8).collect();
    std::fs::write(&input, &data).expect("write");
    let layer_path = dir.0.join("layer.bin");

    let line = run(std::slice::from_ref(&input), false, Some(&layer_path)).expect("runs");
    let cid: PieceCid = line
        .split_whitespace()
        .next()
        .expect("a CID")
        .parse()
        .expect("valid CID");
    let raw = std::fs::read(&layer_path).expect("layer written");
    assert_eq!(raw.len(), 3 * 32);
    let layer: Vec<[u8; 32]> = raw
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    assert_eq!(verify_layer(&cid, DEFAULT_WINDOW_PADDED, &layer), Ok(()));
    assert!(
        !dir.0.join("layer.bin.tmp").exists(),
        "temp file renamed away"
    );
}

#[test]
fn refuses_what_it_cannot_do() {
    let dir = TempDir::new("refuse");
    let small = dir.0.join("small");
    std::fs::write(&small, [1u8; 100]).expect("write");
    let layer_path = dir.0.join("layer.bin");

    let err =
        run(&[small.clone(), small.clone()], false, Some(&layer_path)).expect_err("two files");
    assert_eq!(
        err.to_string(),
        "--layer takes exactly one input file, got 2"
    );

    let err = run(std::slice::from_ref(&small), false, None).expect_err("too small");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: payload of 100 bytes is too small: a piece holds at least 127 bytes",
            small.display()
        )
    );

    let missing = dir.0.join("missing");
    let err = run(std::slice::from_ref(&missing), false, None).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("reading {}: ", missing.display())),
        "{err}"
    );

    let err = run(&[], false, None).expect_err("no input");
    assert_eq!(err.to_string(), "no input files (use - for standard input)");
}

/// Exit code, standard output and standard error of `beam-edge ARGS`, with
/// `stdin` on its standard input.
fn beam_edge(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_beam-edge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beam-edge");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("beam-edge runs");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

#[test]
fn the_binary_prints_cids_of_files_and_standard_input() {
    let dir = TempDir::new("bin-lines");
    let zeros = dir.0.join("zeros-1024");
    let quads = dir.0.join("quads");
    std::fs::write(&zeros, vec![0u8; 1024]).expect("write");
    let q: Vec<u8> = (0u8..4).flat_map(|b| std::iter::repeat_n(b, 127)).collect();
    std::fs::write(&quads, q).expect("write");
    let (z, qd) = (
        zeros.to_str().expect("utf-8"),
        quads.to_str().expect("utf-8"),
    );

    let v2 = format!(
        "bafkzcibd6adqn7d6skbjnziw7kw6tbvsr6jnisspes4tkscsem3wu6mqe66br6bt  {z}\n\
         bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi  {qd}\n"
    );
    assert_eq!(
        beam_edge(&["piece-cid", z, qd], b""),
        (Some(0), v2, String::new())
    );
    let v1 = format!(
        "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy  {z}\n\
         baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi  {qd}\n"
    );
    assert_eq!(
        beam_edge(&["piece-cid", "--v1", z, qd], b""),
        (Some(0), v1, String::new())
    );
    // `-` reads standard input.
    assert_eq!(
        beam_edge(&["piece-cid", "-"], &[0u8; 1024]),
        (
            Some(0),
            "bafkzcibd6adqn7d6skbjnziw7kw6tbvsr6jnisspes4tkscsem3wu6mqe66br6bt  -\n".to_string(),
            String::new()
        )
    );
}

#[test]
fn the_binary_writes_the_layer_at_the_window_asked_for() {
    let dir = TempDir::new("bin-layer");
    let input = dir.0.join("two-and-a-bit-windows");
    let data: Vec<u8> = (0..2 * 1_040_384 + 10).map(|i| (i % 241) as u8).collect();
    std::fs::write(&input, &data).expect("write");
    let layer_path = dir.0.join("layer.bin");
    let (code, out, err) = beam_edge(
        &[
            "piece-cid",
            "--layer",
            layer_path.to_str().expect("utf-8"),
            "--window",
            "512KiB",
            input.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    let cid: PieceCid = out
        .split_whitespace()
        .next()
        .expect("a CID")
        .parse()
        .expect("valid CID");
    // 512 KiB padded windows hold 520,192 raw bytes: 2,080,778 bytes are 5 of them.
    let raw = std::fs::read(&layer_path).expect("layer written");
    assert_eq!(raw.len(), 5 * 32);
    let layer: Vec<[u8; 32]> = raw
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    assert_eq!(verify_layer(&cid, 512 << 10, &layer), Ok(()));
    assert_eq!(
        cid,
        beam_edge::piece::commp::commp_of(&data).expect("valid")
    );
}

#[test]
fn the_binary_refuses_with_exit_code_1_and_a_message() {
    let dir = TempDir::new("bin-refuse");
    let small = dir.0.join("small");
    std::fs::write(&small, [1u8; 100]).expect("write");
    let small = small.to_str().expect("utf-8");
    assert_eq!(
        beam_edge(&["piece-cid", small], b""),
        (
            Some(1),
            String::new(),
            format!("beam-edge piece-cid: {small}: payload of 100 bytes is too small: a piece holds at least 127 bytes\n")
        )
    );
    let missing = dir.0.join("missing");
    let missing = missing.to_str().expect("utf-8");
    let (code, out, err) = beam_edge(&["piece-cid", missing], b"");
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.starts_with(&format!("beam-edge piece-cid: reading {missing}: ")),
        "{err}"
    );
    let (code, out, err) = beam_edge(&["piece-cid", "--layer", "x", small, small], b"");
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        "beam-edge piece-cid: --layer takes exactly one input file, got 2\n"
    );
    // No file at all is a usage error (clap: exit 2).
    let (code, _, err) = beam_edge(&["piece-cid"], b"");
    assert_eq!(code, Some(2), "{err}");
}
