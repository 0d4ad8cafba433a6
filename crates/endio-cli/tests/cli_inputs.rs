//! No input crashes `endio bench`, and its refusals are messages a user can
//! act on.
//!
//! 1. A seeded randomized walk over the argument space (sizes, block sizes
//!    that do not divide 1 MiB or are not multiples of 512, depths, modes,
//!    patterns, `--verify`, backends, runtimes) on a new file, an existing
//!    file, and odd targets: a directory, `/dev/null`, a path whose
//!    directory is missing, a file on tmpfs, a file the user may not write.
//!    Every run exits 0, or 1 or 2 with an `error:` line that names an
//!    option or a path; none panics or dies of a signal; none leaves a
//!    temporary directory or a half-written file it created. The seed is
//!    printed first; `ENDIO_TEST_SEED=N` replays a run.
//! 2. Targeted tests, one per message.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// Runs of the randomized walk.
const CASES: u32 = 48;

/// The longest one run may take before the walk calls it hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The option every refusal may name instead of a path.
const FLAGS: [&str; 10] = [
    "--size",
    "--bs",
    "--iodepth",
    "--mode",
    "--rw",
    "--verify",
    "--backend",
    "--runtime",
    "--target",
    "--time-based",
];

/// Library API that a CLI message must not send the user to.
const LIBRARY_TERMS: [&str; 7] = [
    "OpenOptions",
    "EngineBuilder",
    "Bio::",
    "Buf::",
    "Device::",
    "try_submit",
    "write(true)",
];

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// splitmix64: the walk's random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Whether `dir` is on tmpfs.
fn on_tmpfs(dir: &Path) -> bool {
    // `f_type` is an `i64` on x86_64 and narrower on some targets.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type as i64 == 0x0102_1994)
}

/// Runs `cmd`, killing it after [`RUN_TIMEOUT`].
fn run_bounded(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the endio binary runs");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what}: still running after {RUN_TIMEOUT:?}; stderr:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// The `endio` command, as uid 65534 when `unprivileged` (and root).
fn endio(unprivileged: bool) -> Command {
    let mut c = if unprivileged {
        common::endio_unprivileged().expect("setpriv (util-linux) drops root for this test")
    } else {
        Command::new(env!("CARGO_BIN_EXE_endio"))
    };
    c.env_remove("ENDIO_BACKEND").env_remove("RUST_LOG");
    c
}

/// Whether uid 65534 can run the test binary (setpriv present, the path
/// readable).
fn unprivileged_runs() -> bool {
    endio(true)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The files and directories below `dir`, as paths relative to it.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What a walk case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    /// No `--target`: a temporary file in `$TMPDIR`.
    Embedded,
    /// A path that does not exist yet.
    NewFile,
    /// A file of 2 MiB that exists.
    ExistingFile,
    /// The case directory itself.
    Directory,
    /// `/dev/null`.
    DevNull,
    /// A path in a directory that does not exist.
    MissingParent,
    /// A new file under `/dev/shm` (tmpfs).
    Tmpfs,
    /// A file of 2 MiB the user may not write.
    ReadOnly,
}

/// One run of the walk: its arguments and what to check afterwards.
struct Case {
    args: Vec<String>,
    kind: TargetKind,
    target: Option<PathBuf>,
    unprivileged: bool,
}

fn random_case(rng: &mut Rng, dir: &Path, shm: Option<&Path>, n: u32, unpriv: bool) -> Case {
    let kinds = [
        TargetKind::Embedded,
        TargetKind::NewFile,
        TargetKind::NewFile,
        TargetKind::NewFile,
        TargetKind::NewFile,
        TargetKind::ExistingFile,
        TargetKind::ExistingFile,
        TargetKind::Directory,
        TargetKind::DevNull,
        TargetKind::MissingParent,
        TargetKind::Tmpfs,
        TargetKind::ReadOnly,
    ];
    let mut kind = *rng.pick(&kinds);
    if (kind == TargetKind::Tmpfs && shm.is_none()) || (kind == TargetKind::ReadOnly && !unpriv) {
        kind = TargetKind::NewFile;
    }
    let mut args: Vec<String> = vec!["bench".into(), "--no-plot".into()];
    let target = match kind {
        TargetKind::Embedded => None,
        TargetKind::NewFile => Some(dir.join(format!("new-{n}"))),
        TargetKind::ExistingFile => {
            let p = dir.join(format!("existing-{n}"));
            fs::write(&p, vec![0x5a; 2 << 20]).unwrap();
            Some(p)
        }
        TargetKind::Directory => Some(dir.to_path_buf()),
        TargetKind::DevNull => Some("/dev/null".into()),
        TargetKind::MissingParent => Some(dir.join("no-such-dir").join("f")),
        TargetKind::Tmpfs => Some(shm.unwrap().join(format!("case-{n}"))),
        TargetKind::ReadOnly => {
            let p = dir.join(format!("read-only-{n}"));
            fs::write(&p, vec![0x5a; 2 << 20]).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
            Some(p)
        }
    };
    if let Some(t) = &target {
        args.extend(["--target".into(), t.display().to_string()]);
    }
    let sizes = ["1M", "2M", "3M", "4M", "8M", "1000000"];
    let tiny_sizes = ["5000", "4k", "0"];
    let small_bs = ["511", "1000", "1536", "3000", "4097", "6144", "8704"];
    let other_bs = ["512", "4k", "64k", "1M", "63", "0", "2M"];
    let size = if rng.chance(85) {
        *rng.pick(&sizes)
    } else {
        *rng.pick(&tiny_sizes)
    };
    // The embedded default and a new file are 1 GiB without --size.
    let new = matches!(
        kind,
        TargetKind::Embedded | TargetKind::NewFile | TargetKind::Tmpfs
    );
    if new || rng.chance(90) {
        args.extend(["--size".into(), size.into()]);
    }
    if rng.chance(85) {
        let bs = if rng.chance(65) {
            *rng.pick(&small_bs)
        } else {
            *rng.pick(&other_bs)
        };
        args.extend(["--bs".into(), bs.into()]);
    }
    if rng.chance(60) {
        let depth = if rng.chance(85) {
            *rng.pick(&["1", "2", "4", "16", "64"])
        } else {
            *rng.pick(&["0", "5000"])
        };
        args.extend(["--iodepth".into(), depth.into()]);
    }
    if rng.chance(80) {
        let modes = ["buffered", "dontcache", "direct"];
        let mut chosen: Vec<&str> = modes.iter().copied().filter(|_| rng.chance(50)).collect();
        if chosen.is_empty() {
            chosen.push(*rng.pick(&modes));
        }
        args.extend(["--mode".into(), chosen.join(",")]);
    }
    if rng.chance(80) {
        let rws = ["read", "write", "randread", "randwrite", "rw", "randrw"];
        let mut chosen = vec![*rng.pick(&rws)];
        if rng.chance(40) {
            chosen.push(*rng.pick(&rws));
        }
        args.extend(["--rw".into(), chosen.join(",")]);
    }
    if rng.chance(35) {
        args.push("--verify".into());
    }
    if rng.chance(70) {
        args.extend([
            "--backend".into(),
            rng.pick(&["threads", "uring"]).to_string(),
        ]);
    }
    if rng.chance(25) {
        let runtime = *rng.pick(&["1", "500ms", "0", "0.2", "300ms"]);
        args.extend(["--runtime".into(), runtime.into()]);
        if matches!(runtime, "0.2" | "300ms") && rng.chance(30) {
            args.push("--time-based".into());
        }
    }
    if rng.chance(15) {
        args.extend([
            "--json".into(),
            dir.join(format!("out-{n}.json")).display().to_string(),
        ]);
    }
    Case {
        args,
        kind,
        target,
        unprivileged: kind == TargetKind::ReadOnly,
    }
}

/// Checks one run; returns its `error:` line if it failed.
fn check_case(
    case: &Case,
    out: &Output,
    before: &[PathBuf],
    dir: &Path,
    what: &str,
) -> Option<String> {
    let stderr = text(&out.stderr);
    let show = || format!("{what}\nstatus: {}\nstderr:\n{stderr}", out.status);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("died of a signal: {}", show()));
    assert_ne!(code, 101, "panicked: {}", show());
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "a panic message: {}",
        show()
    );
    for term in LIBRARY_TERMS {
        assert!(
            !stderr.contains(term),
            "names the library's {term:?}: {}",
            show()
        );
    }
    let success = code == 0;
    let mut error = None;
    if !success {
        assert!(matches!(code, 1 | 2), "exit status {code}: {}", show());
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no `error:` line: {}", show()));
        let names_flag = FLAGS.iter().any(|f| line.contains(f));
        let names_path = case
            .target
            .as_ref()
            .is_some_and(|t| line.contains(&*t.display().to_string()))
            || line.contains(&*dir.display().to_string());
        assert!(
            names_flag || names_path,
            "the error names no option and no path: {}",
            show()
        );
        error = Some(line.to_owned());
    }
    // Leftovers: nothing new in the case directory (its TMPDIR and working
    // directory) but what a successful run keeps: the target it made and
    // the JSON it was asked for.
    let after = listing(dir);
    for p in after.iter().filter(|p| !before.contains(p)) {
        let name = p.display().to_string();
        let kept_target = success
            && case.kind == TargetKind::NewFile
            && case.target.as_deref() == Some(&*dir.join(p));
        let json = name.starts_with("out-") && name.ends_with(".json");
        assert!(kept_target || json, "left {name} behind: {}", show());
    }
    if let Some(t) = &case.target
        && matches!(case.kind, TargetKind::NewFile | TargetKind::Tmpfs)
    {
        assert_eq!(
            t.exists(),
            success,
            "the target it created {} after {}: {}",
            if t.exists() { "is left" } else { "is gone" },
            if success { "success" } else { "failure" },
            show()
        );
        if success {
            let len = fs::metadata(t).unwrap().len();
            assert!(len > 0, "an empty target: {}", show());
        }
    }
    error
}

/// The seeded walk over the argument space.
#[test]
fn no_argument_combination_crashes_or_leaves_files_behind() {
    let seed = std::env::var("ENDIO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!(
        "cli_inputs seed {seed}; rerun with ENDIO_TEST_SEED={seed} cargo test -p endio-cli --test cli_inputs no_argument_combination"
    );
    let rerun = format!("(seed {seed}; rerun with ENDIO_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = common::disk_dir("endio-cli-inputs-");
    // The read-only case runs as uid 65534, which must reach the files.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let unpriv = !is_root() || unprivileged_runs();
    let shm_dir = Path::new("/dev/shm")
        .is_dir()
        .then(|| {
            tempfile::Builder::new()
                .prefix("endio-cli-inputs-")
                .tempdir_in("/dev/shm")
        })
        .and_then(Result::ok)
        .filter(|d| on_tmpfs(d.path()));
    let (mut ok, mut refused) = (0, 0);
    let mut kinds_seen = Vec::new();
    for n in 0..CASES {
        let case = random_case(
            &mut rng,
            dir.path(),
            shm_dir.as_ref().map(|d| d.path()),
            n,
            unpriv,
        );
        let before = listing(dir.path());
        let mut cmd = endio(case.unprivileged);
        cmd.args(&case.args[..])
            .current_dir(dir.path())
            .env("TMPDIR", dir.path());
        let what = format!("case {n} {rerun}: endio {}", case.args.join(" "));
        let t = Instant::now();
        let out = run_bounded(cmd, &what);
        let error = check_case(&case, &out, &before, dir.path(), &what);
        let success = error.is_none();
        eprintln!(
            "case {n}: {} in {:.1}s: endio {}{}",
            if success { "ok" } else { "refused" },
            t.elapsed().as_secs_f64(),
            case.args.join(" "),
            error.map_or_else(String::new, |e| format!("\n    {e}"))
        );
        if success {
            ok += 1;
        } else {
            refused += 1;
        }
        if !kinds_seen.contains(&case.kind) {
            kinds_seen.push(case.kind);
        }
        if let Some(t) = &case.target
            && matches!(case.kind, TargetKind::NewFile | TargetKind::Tmpfs)
        {
            let _ = fs::remove_file(t);
        }
    }
    eprintln!("{ok} runs succeeded, {refused} were refused; target kinds {kinds_seen:?}");
    // Not vacuous: both outcomes occur, on several kinds of target.
    assert!(
        ok >= CASES / 8,
        "only {ok} of {CASES} runs succeeded {rerun}"
    );
    assert!(
        refused >= CASES / 8,
        "only {refused} of {CASES} runs were refused {rerun}"
    );
    assert!(kinds_seen.len() >= 4, "target kinds {kinds_seen:?} {rerun}");
}

fn bench(args: &[&str]) -> Output {
    let mut cmd = endio(false);
    cmd.arg("bench").arg("--no-plot").args(args);
    run_bounded(cmd, &format!("endio bench --no-plot {}", args.join(" ")))
}

/// Asserts failure with an `error:` line that names every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error: line in\n{stderr}"))
        .to_owned();
    for n in needles {
        assert!(line.contains(n), "the error lacks {n:?}: {line}");
    }
    for term in LIBRARY_TERMS {
        assert!(!stderr.contains(term), "names {term:?}:\n{stderr}");
    }
    line
}

fn json_of(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("the JSON is written")).expect("valid JSON")
}

#[test]
fn verify_works_with_block_sizes_that_do_not_divide_1mib() {
    let dir = common::disk_dir("endio-cli-inputs-");
    for bs in ["3000", "1000", "1536", "6144", "8704", "4097", "511"] {
        let target = dir.path().join(format!("v{bs}"));
        let json = dir.path().join(format!("v{bs}.json"));
        let out = bench(&[
            "--target",
            target.to_str().unwrap(),
            "--size",
            "2M",
            "--bs",
            bs,
            "--mode",
            "buffered,dontcache",
            "--rw",
            "write,randread",
            "--verify",
            "--json",
            json.to_str().unwrap(),
        ]);
        common::assert_success(&out, &format!("--verify --bs {bs}"));
        let bs: u64 = bs.parse().unwrap();
        let jobs = json_of(&json)["jobs"].as_array().unwrap().clone();
        assert_eq!(jobs.len(), 4, "bs {bs}");
        for job in &jobs {
            let checked = job["verify"]["checked_bytes"].as_u64().unwrap();
            assert!(
                checked >= (2 << 20) / bs * bs / 2,
                "bs {bs}: checked {checked}: {job}"
            );
            assert_eq!(job["verify"]["errors"].as_u64(), Some(0), "bs {bs}: {job}");
        }
    }
}

#[test]
fn a_bs_that_is_not_a_multiple_of_512_lays_out_the_whole_file_when_buffered() {
    let dir = common::disk_dir("endio-cli-inputs-");
    let target = dir.path().join("odd");
    let out = bench(&[
        "--target",
        target.to_str().unwrap(),
        "--size",
        "3M",
        "--bs",
        "3000",
        "--mode",
        "buffered,dontcache",
        "--rw",
        "read",
    ]);
    common::assert_success(&out, "--bs 3000 buffered and dontcache reads");
    // The range used is whole blocks of 3000 bytes, all of it written.
    let want = (3 << 20) / 3000 * 3000;
    assert_eq!(fs::metadata(&target).unwrap().len(), want);
}

#[test]
fn direct_with_a_bs_that_is_not_a_multiple_of_512_is_refused_before_any_write() {
    let dir = common::disk_dir("endio-cli-inputs-");
    let target = dir.path().join("never");
    let out = bench(&[
        "--target",
        target.to_str().unwrap(),
        "--size",
        "2M",
        "--bs",
        "3000",
    ]);
    let line = assert_refused(&out, &["--bs 3000", "--mode", "3072"]);
    assert!(!text(&out.stderr).contains("laying out"), "{line}");
    assert!(!target.exists(), "created {}", target.display());
}

#[test]
fn a_layout_failure_gives_the_errno_and_removes_the_file_it_created() {
    let dir = common::disk_dir("endio-cli-inputs-");
    let target = dir.path().join("limited");
    // A 2 MiB file size limit, SIGXFSZ ignored: writes past 2 MiB fail with
    // EFBIG, as writes to a full disk fail with ENOSPC.
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 2048; exec "$@""#)
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_endio"))
        .args([
            "bench",
            "--no-plot",
            "--mode",
            "buffered",
            "--size",
            "4M",
            "--target",
        ])
        .arg(&target)
        .env_remove("ENDIO_BACKEND");
    let out = run_bounded(cmd, "a layout past the file size limit");
    let line = assert_refused(&out, &["laying out", "EFBIG", "errno 27", "--size"]);
    assert!(
        !target.exists(),
        "left the half-written {}: {line}",
        target.display()
    );
}

#[test]
fn a_size_larger_than_the_free_space_is_refused_before_the_layout() {
    let dir = common::disk_dir("endio-cli-inputs-");
    let target = dir.path().join("huge");
    let out = bench(&[
        "--target",
        target.to_str().unwrap(),
        "--size",
        "1000T",
        "--mode",
        "buffered",
    ]);
    let line = assert_refused(&out, &["--size", "free", "1000.0 TiB"]);
    assert!(!text(&out.stderr).contains("laying out"), "{line}");
    assert!(!target.exists(), "created {}", target.display());
    // The embedded default too, and its temporary directory goes.
    let mut cmd = endio(false);
    cmd.args(["bench", "--no-plot", "--size", "1000T"])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path());
    let out = run_bounded(cmd, "embedded 1000T");
    assert_refused(&out, &["--size", "free"]);
    assert_eq!(listing(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_runtime_of_zero_says_it_must_be_positive() {
    let out = bench(&["--size", "1M", "--runtime", "0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--runtime") && stderr.contains("must be > 0"),
        "{stderr}"
    );
}

#[test]
fn a_target_the_user_may_not_write_is_named_with_the_fix() {
    if is_root() && !unprivileged_runs() {
        eprintln!(
            "skipped: running as root and uid 65534 cannot run the test binary (setpriv missing, or the path is not readable)"
        );
        return;
    }
    let dir = common::disk_dir("endio-cli-inputs-");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.path().join("theirs");
    fs::write(&target, vec![1u8; 1 << 20]).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o444)).unwrap();
    let mut cmd = endio(true);
    cmd.args([
        "bench",
        "--no-plot",
        "--mode",
        "buffered",
        "--rw",
        "write",
        "--target",
    ])
    .arg(&target);
    let out = run_bounded(cmd, "write to a read-only file");
    assert_refused(
        &out,
        &[
            "--target",
            "permission denied",
            &target.display().to_string(),
        ],
    );
    assert_eq!(
        fs::read(&target).unwrap(),
        vec![1u8; 1 << 20],
        "the file was changed"
    );
    // Reading it is fine.
    let mut cmd = endio(true);
    cmd.args([
        "bench",
        "--no-plot",
        "--mode",
        "buffered",
        "--rw",
        "read",
        "--target",
    ])
    .arg(&target);
    common::assert_success(&run_bounded(cmd, "read a read-only file"), "read-only read");
}

#[test]
fn cachestat_refused_for_one_file_falls_back_for_that_file_only() {
    if !is_root() {
        eprintln!("skipped: needs root to make a file that uid 65534 may read but not write");
        return;
    }
    if !unprivileged_runs() {
        eprintln!(
            "skipped: uid 65534 cannot run the test binary (setpriv missing, or the path is not readable)"
        );
        return;
    }
    let dir = common::disk_dir("endio-cli-inputs-");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let theirs = dir.path().join("theirs");
    let shared = dir.path().join("shared");
    for (p, mode) in [(&theirs, 0o644), (&shared, 0o666)] {
        fs::write(p, vec![2u8; 1 << 20]).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut cmd = endio(true);
    cmd.args(["stat", "--json"]).arg(&theirs).arg(&shared);
    let out = run_bounded(cmd, "stat as uid 65534");
    let stdout = common::assert_success(&out, "stat as uid 65534");
    let stderr = text(&out.stderr);
    let stats: Value = serde_json::from_str(&stdout).expect("JSON");
    let source = |i: usize| stats[i]["source"].as_str().unwrap().to_owned();
    if source(1) != "cachestat" && !stderr.contains("EPERM") {
        eprintln!("skipped: this kernel has no cachestat(2) ({stderr})");
        return;
    }
    assert_eq!(source(0), "mincore", "{stats}\n{stderr}");
    assert_eq!(
        source(1),
        "cachestat",
        "the other file keeps cachestat: {stats}\n{stderr}"
    );
    assert!(
        stderr.contains("EPERM") && stderr.contains(&*theirs.display().to_string()),
        "the refusal is diagnosed: {stderr}"
    );
    assert!(stderr.contains("may write"), "{stderr}");
    // A warning on a pipe carries no colour codes.
    assert!(
        !stderr.contains('\x1b'),
        "colour codes on a pipe: {stderr:?}"
    );
}

#[test]
fn on_tmpfs_dontcache_and_direct_say_once_that_the_cache_is_the_storage() {
    let Some(shm) = tempfile::Builder::new()
        .prefix("endio-cli-inputs-")
        .tempdir_in("/dev/shm")
        .ok()
        .filter(|d| on_tmpfs(d.path()))
    else {
        eprintln!("skipped: no tmpfs at /dev/shm");
        return;
    };
    let target = shm.path().join("f");
    let t = target.to_str().unwrap();
    let out = bench(&[
        "--target",
        t,
        "--size",
        "1M",
        "--bs",
        "64k",
        "--rw",
        "write,read",
    ]);
    let stderr = text(&out.stderr);
    // Direct I/O on tmpfs is refused by older kernels; the note comes first.
    let note = "the page cache is the file's storage";
    assert_eq!(stderr.matches(note).count(), 1, "{stderr}");
    assert!(
        stderr.contains("tmpfs") && stderr.contains("--target"),
        "{stderr}"
    );
    if out.status.success() {
        assert!(target.exists());
    }
    let _ = fs::remove_file(&target);
    let out = bench(&["--target", t, "--size", "1M", "--mode", "buffered"]);
    common::assert_success(&out, "buffered on tmpfs");
    assert!(!text(&out.stderr).contains(note), "{}", text(&out.stderr));
}

#[test]
fn the_json_backend_is_the_backend_the_jobs_used() {
    let dir = common::disk_dir("endio-cli-inputs-");
    let target = dir.path().join("b");
    let t = target.to_str().unwrap();
    let base = [
        "--target", t, "--size", "1M", "--mode", "buffered", "--rw", "read", "--json", "-",
    ];
    let backend_of = |out: &Output| {
        let stdout = common::assert_success(out, "a JSON run");
        let v: Value = serde_json::from_str(&stdout).expect("JSON");
        v["backend"].as_str().unwrap().to_owned()
    };
    let mut args = base.to_vec();
    args.extend(["--backend", "threads"]);
    assert_eq!(backend_of(&bench(&args)), "threads");
    let mut cmd = endio(false);
    cmd.arg("bench")
        .arg("--no-plot")
        .args(base)
        .env("ENDIO_BACKEND", "threads");
    assert_eq!(
        backend_of(&run_bounded(cmd, "ENDIO_BACKEND=threads")),
        "threads"
    );
    let mut args = base.to_vec();
    args.extend(["--backend", "uring"]);
    let out = bench(&args);
    if out.status.success() {
        assert_eq!(backend_of(&out), "uring");
    } else {
        eprintln!("io_uring unavailable here: {}", text(&out.stderr));
    }
}

#[test]
fn verify_with_a_block_smaller_than_its_header_names_the_bs() {
    let out = bench(&[
        "--size", "1M", "--bs", "63", "--verify", "--mode", "buffered",
    ]);
    assert_refused(&out, &["--verify", "--bs", "64"]);
}

#[test]
fn verify_after_random_writes_on_an_existing_file_checks_only_patterned_blocks() {
    // Random writes reach some blocks only; the read-back checks them all,
    // so the file (full size, no layout needed otherwise) is laid out with
    // the pattern first.
    let dir = common::disk_dir("endio-cli-inputs-");
    let target = dir.path().join("existing");
    fs::write(&target, vec![0x5a; 2 << 20]).unwrap();
    let json = dir.path().join("out.json");
    let out = bench(&[
        "--target",
        target.to_str().unwrap(),
        "--size",
        "2M",
        "--mode",
        "buffered",
        "--rw",
        "randwrite",
        "--verify",
        "--json",
        json.to_str().unwrap(),
    ]);
    common::assert_success(&out, "--verify --rw randwrite on an existing file");
    let job = &json_of(&json)["jobs"][0];
    assert_eq!(
        job["verify"]["checked_bytes"].as_u64(),
        Some(2 << 20),
        "{job}"
    );
    assert_eq!(job["verify"]["errors"].as_u64(), Some(0), "{job}");
}
