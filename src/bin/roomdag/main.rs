//! `roomdag`: replay conformance fixtures and export room graphs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use roomdag::conformance;

mod file_pages;
use roomdag::export;
use roomdag::fixture;

const USAGE: &str = "\
roomdag — a Matrix room-DAG engine

USAGE:
    roomdag replay FIXTURE --queries QUERIES [-o ANSWERS] [--parallel] [--cache-mib N [--image]]
        Replay a room fixture (matrix-dag-oracle/1, .json or .json.gz) through
        the full PDU receipt pipeline, answer every query of QUERIES
        (roomdag-queries/1) and write roomdag-answers/1 JSON to ANSWERS
        (default: stdout). --parallel verifies signatures on other threads
        (faster, a little more memory; same answers). The room holds every
        PDU, compressed; --cache-mib N keeps the PDU texts in a scratch file
        in $TMPDIR (removed at exit) instead, with at most N MiB of them in
        memory, and at most about N MiB of built states (same answers).
        --image then writes the replayed room's image into that file, reads
        the room back from it, and answers from the room read back (same
        answers); its size and times go to stderr.

    roomdag export FIXTURE [--format json|dot] [--auth-edges] [-o OUT]
        Replay a fixture and write its graph: JSON for the visualizer
        (default) or Graphviz DOT.

    roomdag demo-room [--events N] [-o OUT]
        Write a small synthetic room (matrix-dag-oracle/1, room v12, three
        servers with their keys): forks, a merge, a redaction, a rejection.

    roomdag help
        Show this text.

EXIT STATUS:
    0 success, 1 bad input or I/O failure, 2 usage error
";

enum CliError {
    Usage(String),
    Failed(String),
}

/// glibc's malloc serves requests under its mmap threshold (128 KiB, rising
/// as large blocks are freed) from the heap. A replay's big short-lived
/// buffers (the parsed PDUs of a batch) then leave holes that the room's
/// small long-lived allocations land in, and the pages stay resident; a
/// fixed threshold keeps larger buffers in their own mappings, returned to
/// the system when freed. It is 128 KiB rather than lower: the tables of a
/// batch signature verification (about 80 KiB, grown by doubling) stay on
/// the heap instead of being mapped, faulted in and unmapped at every batch
/// (half the system time of a 150,000-event replay, same peak RSS).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    // SAFETY: `mallopt` only sets a glibc malloc parameter; it is called
    // first thing in `main`, before any other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(msg)) => {
            eprintln!("roomdag: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(msg)) => {
            eprintln!("roomdag: {msg}");
            ExitCode::from(1)
        }
    }
}

struct Opts {
    positional: Vec<String>,
    queries: Option<String>,
    output: Option<String>,
    format: Option<String>,
    auth_edges: bool,
    parallel: bool,
    events: Option<String>,
    cache_mib: Option<String>,
    image: bool,
}

fn parse(args: &[String]) -> Result<Opts, CliError> {
    let mut o = Opts {
        positional: Vec::new(),
        queries: None,
        output: None,
        format: None,
        auth_edges: false,
        parallel: false,
        events: None,
        cache_mib: None,
        image: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| CliError::Usage(format!("{name} needs a value")));
        match a.as_str() {
            "--queries" | "-q" => o.queries = Some(value(a)?),
            "-o" | "--output" => o.output = Some(value(a)?),
            "--format" | "-f" => o.format = Some(value(a)?),
            "--auth-edges" => o.auth_edges = true,
            "--parallel" => o.parallel = true,
            "--events" => o.events = Some(value(a)?),
            "--cache-mib" => o.cache_mib = Some(value(a)?),
            "--image" => o.image = true,
            s if s.starts_with('-') && s.len() > 1 => return Err(CliError::Usage(format!("unknown option {s}"))),
            _ => o.positional.push(a.clone()),
        }
    }
    Ok(o)
}

/// `--cache-mib N`: the PDU texts in a scratch file, N MiB of them cached.
fn paged(n: &str) -> Result<conformance::Pages, CliError> {
    let mib: f64 = n
        .parse()
        .ok()
        .filter(|m: &f64| m.is_finite() && *m >= 0.0 && *m <= 1e6)
        .ok_or_else(|| CliError::Usage(format!("--cache-mib takes a number of MiB, not {n:?}")))?;
    let dir = std::env::temp_dir();
    let store = file_pages::FilePages::create_in(&dir)
        .map_err(|e| CliError::Failed(format!("a scratch file for --cache-mib in {}: {e}", dir.display())))?;
    Ok(conformance::Pages { store: Box::new(store), cache_bytes: (mib * 1024.0 * 1024.0) as usize })
}

/// `--image`: the room written as an image into its page store and read
/// back from it (what a host does instead of replaying its log).
fn through_image(mut room: roomdag::Room, cache_bytes: usize) -> Result<roomdag::Room, CliError> {
    let failed = |e: roomdag::image::ImageError| CliError::Failed(format!("image: {e}"));
    let t0 = std::time::Instant::now();
    let info = room.save_image(0).map_err(failed)?;
    let written = t0.elapsed();
    let store = room.into_page_store().expect("--image runs with --cache-mib");
    let t1 = std::time::Instant::now();
    let (again, _) = roomdag::Room::open_image(store, cache_bytes).map_err(failed)?.expect("just written");
    eprintln!(
        "image: {} events, {} bytes in {} parts; written in {:.0} ms, read back in {:.0} ms",
        info.events,
        info.bytes,
        info.parts,
        written.as_secs_f64() * 1e3,
        t1.elapsed().as_secs_f64() * 1e3
    );
    Ok(again)
}

fn write_out(output: Option<&str>, bytes: &[u8]) -> Result<(), CliError> {
    match output {
        Some(path) => std::fs::write(path, bytes).map_err(|e| CliError::Failed(format!("{path}: {e}"))),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| CliError::Failed(format!("stdout: {e}")))
        }
    }
}

fn open(path: &str) -> Result<Box<dyn std::io::Read + Send>, CliError> {
    fixture::open(&PathBuf::from(path)).map_err(|e| CliError::Failed(e.to_string()))
}

fn run(args: &[String]) -> Result<(), CliError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(CliError::Usage("no command given".into()));
    };
    match cmd.as_str() {
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        "replay" => {
            let o = parse(rest)?;
            let [fixture_path] = o.positional.as_slice() else {
                return Err(CliError::Usage("replay takes exactly one FIXTURE".into()));
            };
            let Some(queries) = o.queries.as_deref() else {
                return Err(CliError::Usage("replay needs --queries QUERIES".into()));
            };
            let queries = open(queries)?;
            let fx = open(fixture_path)?;
            // Create the output only after the inputs opened, and write it streaming.
            let out: Box<dyn Write> = match o.output.as_deref() {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).map_err(|e| CliError::Failed(format!("{path}: {e}")))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let failed = |e: fixture::FixtureError| CliError::Failed(format!("{fixture_path}: {e}"));
            let queries = fixture::read_queries(queries).map_err(failed)?;
            let pages = match o.cache_mib.as_deref() {
                None if o.image => {
                    return Err(CliError::Usage(
                        "--image needs --cache-mib N (the image goes beside the paged PDUs)".into(),
                    ))
                }
                None => None,
                Some(n) => Some(paged(n)?),
            };
            let cache_bytes = pages.as_ref().map_or(0, |p| p.cache_bytes);
            let mut replay = match (o.parallel, pages) {
                (false, None) => conformance::replay(fx),
                (true, None) => conformance::replay_pipelined(fx),
                (false, Some(p)) => conformance::replay_paged(fx, p),
                (true, Some(p)) => conformance::replay_pipelined_paged(fx, p),
            }
            .map_err(failed)?;
            if o.image {
                replay.room = through_image(replay.room, cache_bytes)?;
            }
            let written = replay.write_answers(&queries.queries, out).map_err(|e| failed(e.into()));
            // The process ends here: freeing the room piece by piece would
            // only cost time (about 1% of a replay).
            std::mem::forget(replay);
            written
        }
        "export" => {
            let o = parse(rest)?;
            let [fixture_path] = o.positional.as_slice() else {
                return Err(CliError::Usage("export takes exactly one FIXTURE".into()));
            };
            let replay = conformance::replay(open(fixture_path)?)
                .map_err(|e| CliError::Failed(format!("{fixture_path}: {e}")))?;
            let bytes = match o.format.as_deref().unwrap_or("json") {
                "json" => {
                    let graph = export::graph_json(&replay.room).map_err(|e| CliError::Failed(e.to_string()))?;
                    let mut b = serde_json::to_vec(&graph).map_err(|e| CliError::Failed(e.to_string()))?;
                    b.push(b'\n');
                    b
                }
                "dot" => export::graph_dot(&replay.room, o.auth_edges)
                    .map_err(|e| CliError::Failed(e.to_string()))?
                    .into_bytes(),
                other => return Err(CliError::Usage(format!("unknown format {other:?} (json or dot)"))),
            };
            write_out(o.output.as_deref(), &bytes)
        }
        "demo-room" => {
            let o = parse(rest)?;
            let n = match o.events.as_deref() {
                None => 200,
                Some(n) => n.parse().map_err(|_| CliError::Usage(format!("--events takes a number, not {n:?}")))?,
            };
            let mut bytes =
                serde_json::to_vec(&roomdag::demo::demo_room(n)).map_err(|e| CliError::Failed(e.to_string()))?;
            bytes.push(b'\n');
            write_out(o.output.as_deref(), &bytes)
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}"))),
    }
}
