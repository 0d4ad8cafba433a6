//! Backend choice: the builder, `ENDIO_BACKEND`, and the automatic fallback
//! to the thread pool when io_uring is unavailable. One test in this binary,
//! since it changes the process environment.

use std::time::Duration;

use endio::{Backend, Bio, Completer, Engine, EngineError, OpenOptions};

fn set_backend_env(value: Option<&str>) {
    // SAFETY: this binary has one test, and no other thread reads or
    // writes the environment while it runs (the completer's threads do not
    // touch it).
    unsafe {
        match value {
            Some(v) => std::env::set_var("ENDIO_BACKEND", v),
            None => std::env::remove_var("ENDIO_BACKEND"),
        }
    }
}

/// The engine does I/O: a nop completes.
fn works(engine: &Engine) {
    let dir = tempfile::tempdir().unwrap();
    let dev = engine
        .open(
            dir.path().join("f"),
            OpenOptions::new().write(true).create(true).size(4096),
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    dev.submit(Bio::nop(move |e| tx.send(e.result().ok()).unwrap()))
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(0));
}

#[test]
fn builder_env_and_fallback_choose_the_backend() {
    let completer = Completer::builder().build().unwrap();
    let uring_ok = endio::testing::probe_io_uring(std::path::Path::new("/proc")).is_ok();

    // ENDIO_BACKEND picks the backend when the builder does not.
    for (value, want) in [
        ("threads", Backend::Threads),
        ("null", Backend::Null),
        ("uring", Backend::Uring),
    ] {
        if want == Backend::Uring && !uring_ok {
            continue;
        }
        set_backend_env(Some(value));
        let engine = Engine::builder(completer.clone()).build().unwrap();
        assert_eq!(engine.backend(), want, "ENDIO_BACKEND={value}");
        works(&engine);
    }

    // The builder wins over the environment.
    set_backend_env(Some("null"));
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Threads)
        .build()
        .unwrap();
    assert_eq!(engine.backend(), Backend::Threads);

    // A bad value names the choices.
    set_backend_env(Some("spdk"));
    let e = Engine::builder(completer.clone()).build().unwrap_err();
    assert!(matches!(e, EngineError::UnknownBackend { .. }), "{e}");
    assert!(e.to_string().contains("uring, threads or null"), "{e}");
    set_backend_env(None);

    // Automatic: io_uring where the kernel allows it.
    let engine = Engine::builder(completer.clone()).build().unwrap();
    if uring_ok {
        assert_eq!(engine.backend(), Backend::Uring);
        assert!(engine.ring_flags().is_some());
        eprintln!("io_uring ring flags: {}", engine.ring_flags().unwrap());
    }

    // io_uring disabled by the sysctl (a fake procfs says so): automatic
    // choice falls back to the pool and says why; asking for io_uring fails
    // with the cause and the fix.
    let proc = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(proc.path().join("sys/kernel")).unwrap();
    std::fs::write(proc.path().join("sys/kernel/io_uring_disabled"), "2\n").unwrap();
    let engine = Engine::builder(completer.clone())
        .proc_root(proc.path())
        .build()
        .unwrap();
    assert_eq!(engine.backend(), Backend::Threads);
    let why = engine
        .fallback_reason()
        .expect("a fallback names its cause")
        .to_string();
    assert!(
        why.contains("io_uring_disabled") && why.contains("sysctl -w"),
        "{why}"
    );
    works(&engine);
    let e = Engine::builder(completer.clone())
        .backend(Backend::Uring)
        .proc_root(proc.path())
        .build()
        .unwrap_err();
    assert!(matches!(e, EngineError::Uring { .. }), "{e}");
    assert!(e.to_string().contains("ENDIO_BACKEND=threads"), "{e}");
}
