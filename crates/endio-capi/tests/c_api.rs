//! The C API from C: `tests/c/test.c` linked with `libendio.a` and
//! `examples/c/example.c` linked with `libendio.so`, each compiled with the
//! system's `cc` (skipped, saying so, when there is none) and run. On a
//! block device that fails writes (root; skipped otherwise, with the
//! reason) the test program checks that a write-back error surfaces.

#[path = "../../endio/tests/common/failing.rs"]
mod failing;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use failing::FailingDevice;

/// What a Rust static library needs from the system at link time.
const STATIC_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-lgcc_s"];

/// `target/<profile>`, where cargo puts `libendio.a` and `libendio.so` of
/// this package (the library this test binary was built with).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    for lib in ["libendio.a", "libendio.so"] {
        assert!(
            dir.join(lib).exists(),
            "{} is missing: build the C libraries first with `cargo build --release -p endio-capi` (ci/test.sh does)",
            dir.join(lib).display()
        );
    }
    dir.to_path_buf()
}

/// Whether `cc` runs; says why the test skips when it does not.
fn have_cc(test: &str) -> bool {
    let ok = Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping {test}: no C compiler (`cc`) on the PATH; install gcc or clang");
    }
    ok
}

/// Compiles `source` (relative to this crate) into `name` in the test's
/// temporary directory, with `link` after it.
fn compile(source: &str, name: &str, link: &[String]) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let o = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
        .arg(here.join("include"))
        .arg(here.join(source))
        .args(link)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("cc runs");
    assert!(o.status.success(), "cc {source} failed:\n{}", text(&o));
    out
}

fn static_link() -> Vec<String> {
    let mut link = vec![lib_dir().join("libendio.a").display().to_string()];
    link.extend(STATIC_LIBS.iter().map(|s| (*s).to_owned()));
    link
}

fn text(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `statfs` magic of tmpfs, which is all page cache and has no `O_DIRECT`.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A fresh directory on a disk filesystem, where the page cache means
/// something.
fn disk_dir(prefix: &str) -> tempfile::TempDir {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(t) = std::env::var_os("TMPDIR") {
        candidates.push(t.into());
    }
    candidates.extend(["/var/tmp".into(), "/tmp".into()]);
    candidates.push(env!("CARGO_TARGET_TMPDIR").into());
    for dir in candidates {
        // `f_type`'s width differs between targets.
        #[allow(clippy::unnecessary_cast)]
        let on_disk = rustix::fs::statfs(&dir).is_ok_and(|s| s.f_type as i64 != TMPFS_MAGIC);
        if on_disk && let Ok(t) = tempfile::Builder::new().prefix(prefix).tempdir_in(&dir) {
            return t;
        }
    }
    panic!("no directory on a disk filesystem: set TMPDIR to one");
}

#[test]
fn the_c_test_passes_against_the_static_library() {
    if !have_cc("the C test") {
        return;
    }
    let bin = compile("tests/c/test.c", "endio-c-test", &static_link());
    let dir = disk_dir("endio-capi-");
    let o = Command::new(&bin)
        .arg(dir.path())
        .output()
        .expect("the C test runs");
    println!("{}", String::from_utf8_lossy(&o.stdout));
    assert!(o.status.success(), "the C test failed: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(" passed, 0 failed"));
}

#[test]
fn the_c_example_runs_against_the_shared_library() {
    if !have_cc("the C example") {
        return;
    }
    let lib = lib_dir();
    let link = vec![
        format!("-L{}", lib.display()),
        "-lendio".to_owned(),
        format!("-Wl,-rpath,{}", lib.display()),
    ];
    let bin = compile("examples/c/example.c", "endio-c-example", &link);
    let dir = disk_dir("endio-capi-example-");
    let o = Command::new(&bin)
        .arg(dir.path().join("data"))
        .arg("16")
        .output()
        .expect("the example runs");
    let out = String::from_utf8_lossy(&o.stdout);
    println!("{out}");
    assert!(o.status.success(), "the C example failed: {}", text(&o));
    assert!(
        out.contains("wrote 16 MiB in 16 callbacks, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains("open of a missing file: -2 (No such file or directory)"),
        "{out}"
    );
}

#[test]
fn the_c_test_sees_a_writeback_error_on_a_failing_device() {
    if !have_cc("the C write-back error test") {
        return;
    }
    let dev = match FailingDevice::new(true, disk_dir("endio-capi-faults-")) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping the C write-back error test: {why}");
            return;
        }
    };
    let bin = compile("tests/c/test.c", "endio-c-test-faults", &static_link());
    let o = Command::new(&bin)
        .arg("--failing")
        .arg(dev.path())
        .output()
        .expect("the C test runs");
    println!("{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        o.status.success(),
        "the C write-back error test failed: {}",
        text(&o)
    );
}
