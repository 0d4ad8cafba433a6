//! The library's refusals in the terms of the command line: its messages
//! name its API (`OpenOptions::direct(true)`), a user of `endio bench` needs
//! the option to change.

use endio::{Device, EngineError, OpenError, SubmitError, SubmitErrorKind};

/// A refused open in the terms of the command line: the library's messages
/// name its API (`OpenOptions::direct(true)`), a user of `endio bench`
/// needs the option to change.
pub(crate) fn open_error_in_cli_terms(e: OpenError) -> anyhow::Error {
    let message = match &e {
        OpenError::DirectUnsupported { path } => format!(
            "--target {}: its filesystem does not support direct I/O (O_DIRECT); leave direct out of --mode (e.g. --mode buffered,dontcache) or put --target on a disk filesystem such as ext4 or xfs",
            path.display()
        ),
        OpenError::PermissionDenied { path, access } => format!(
            "--target {}: permission denied for {access}; run as a user who may write it (root, or the `disk` group for block devices), or give another --target",
            path.display()
        ),
        OpenError::ReadOnly { path } => format!(
            "--target {}: it is read-only (a read-only mount or block device), and the layout or a --rw with writes needs to write it; give a writable --target",
            path.display()
        ),
        OpenError::NotFound { path } => format!(
            "--target {}: no such file or directory; check the path",
            path.display()
        ),
        OpenError::IsDirectory { path } => format!(
            "--target {} is a directory; give a file (it is created if missing) or a block device",
            path.display()
        ),
        OpenError::Unsupported { path, what } => format!(
            "--target {} is a {what}; give a regular file or a block device",
            path.display()
        ),
        OpenError::Io { path, source } => format!(
            "cannot open {}: {}",
            path.display(),
            describe_os_error(source)
        ),
        // The source, if any, is in the message already.
        _ => e.to_string(),
    };
    anyhow::anyhow!(message)
}

/// An engine that cannot start, in the terms of the command line (see
/// [`open_error_in_cli_terms`]).
pub(crate) fn engine_error_in_cli_terms(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Uring { source } => anyhow::anyhow!(
            "--backend uring: {}; use --backend threads (or ENDIO_BACKEND=threads) to run without io_uring",
            source
                .to_string()
                .replace("EngineBuilder::queue_depth", "--iodepth")
        ),
        e => anyhow::anyhow!("cannot start the I/O engine: {e}"),
    }
}

/// A refused submit in the terms of the command line (see
/// [`open_error_in_cli_terms`]).
pub(crate) fn submit_error_in_cli_terms(e: SubmitError, dev: &Device) -> anyhow::Error {
    let kind = e.kind();
    let bio = e.into_bio();
    let (offset, len) = (bio.offset(), bio.buf().len() as u64);
    let path = dev.path().display();
    let lbs = u64::from(dev.logical_block_size());
    match kind {
        SubmitErrorKind::UnalignedOffset | SubmitErrorKind::UnalignedLength => anyhow::anyhow!(
            "direct I/O on {path} moves whole logical blocks of {lbs} bytes, and an I/O of {len} bytes at offset {offset} is not made of them; use a --bs that is a multiple of {lbs}, or --mode buffered or dontcache"
        ),
        SubmitErrorKind::TooLarge => anyhow::anyhow!(
            "an I/O of {len} bytes on {path} is larger than one I/O can be ({} bytes); give a smaller --bs",
            endio::MAX_IO_BYTES
        ),
        SubmitErrorKind::PastEnd => anyhow::anyhow!(
            "an I/O of {len} bytes at offset {offset} on {path} ends past its end ({} bytes); give at most --size {}",
            dev.size(),
            dev.size()
        ),
        _ => anyhow::anyhow!(
            "endio refused an I/O of {len} bytes at offset {offset} on {path} ({kind:?}); try a smaller --iodepth or another --backend"
        ),
    }
}

/// An OS error with its errno name, e.g. `No space left on device (ENOSPC,
/// errno 28)`.
pub(crate) fn describe_os_error(e: &std::io::Error) -> String {
    use rustix::io::Errno;
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let names = [
        (Errno::NOSPC, "ENOSPC"),
        (Errno::DQUOT, "EDQUOT"),
        (Errno::IO, "EIO"),
        (Errno::FBIG, "EFBIG"),
        (Errno::ROFS, "EROFS"),
        (Errno::ACCESS, "EACCES"),
        (Errno::PERM, "EPERM"),
        (Errno::INVAL, "EINVAL"),
        (Errno::NXIO, "ENXIO"),
    ];
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    match names.iter().find(|(errno, _)| errno.raw_os_error() == code) {
        Some((_, name)) => format!("{text} ({name}, errno {code})"),
        None => format!("{text} (errno {code})"),
    }
}
