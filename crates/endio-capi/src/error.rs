//! Results across the boundary: a [`Failure`] is an errno and a message;
//! [`call`] runs an exported function's body, catches any panic, stores
//! the message of a failure in this thread's last error and returns the
//! negated errno.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Returned (negated) when endio panicked inside a call: a bug in endio,
/// not an I/O error. The call did nothing it reports; the message says
/// where.
pub const ENDIO_EPANIC: c_int = 10000;

/// Why a call failed: the errno it returns (positive here) and the
/// message, which names the problem and the fix.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) errno: c_int,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(errno: c_int, message: impl Into<String>) -> Failure {
        Failure {
            errno,
            message: message.into(),
        }
    }

    /// `-EINVAL` with `message`.
    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(libc::EINVAL, message)
    }
}

thread_local! {
    /// The message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// The text of this thread's last `endio_strerror`.
    static STRERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A C string of `text`, its NUL bytes (there should be none) replaced.
fn c_string(text: String) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

/// endio's fixes in the words of this API: each Rust option a message
/// names, and the flag that sets it here (longer names first: each is
/// replaced before any name it contains).
const C_NAMES: &[(&str, &str)] = &[
    ("OpenOptions::create(true)", "ENDIO_OPEN_CREATE"),
    ("OpenOptions::direct(true)", "ENDIO_OPEN_DIRECT"),
    ("OpenOptions::exclusive(true)", "ENDIO_OPEN_EXCLUSIVE"),
    ("OpenOptions::write(false)", "ENDIO_OPEN_READ alone"),
    ("OpenOptions::read(true)", "ENDIO_OPEN_READ"),
    ("OpenOptions::write(true)", "ENDIO_OPEN_WRITE"),
    ("write(true)", "ENDIO_OPEN_WRITE"),
    ("create(true)", "ENDIO_OPEN_CREATE"),
    ("exclusive(true)", "ENDIO_OPEN_EXCLUSIVE"),
    ("dontcache(true)", "ENDIO_OPEN_DONTCACHE"),
    ("direct(true)", "ENDIO_OPEN_DIRECT"),
    ("BioFlags::DONTCACHE", "ENDIO_IO_DONTCACHE"),
    ("Backend::Threads", "ENDIO_BACKEND_THREADS"),
];

/// `message` with the Rust names of its fix replaced by their C names.
fn in_c_terms(mut message: String) -> String {
    for (rust, c) in C_NAMES {
        if message.contains(rust) {
            message = message.replace(rust, c);
        }
    }
    message
}

fn set_last_error(message: String) {
    let message = in_c_terms(message);
    // `try_with`: during thread teardown the slot may be gone; the errno
    // is still returned.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = c_string(message));
}

/// Runs `body`, the body of the exported function `name`: its value, or
/// the negated errno of its failure (the message stored as this thread's
/// last error), or `-ENDIO_EPANIC` if it panicked.
pub(crate) fn call(name: &str, body: impl FnOnce() -> Result<i64, Failure>) -> i64 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            set_last_error(format!("{name}: {}", failure.message));
            -i64::from(failure.errno)
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            // Dropping a payload can itself panic: keep that inside too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(format!(
                "{name}: internal error in endio ({what}); nothing was reported as done; this is a bug in endio: please report it with this message"
            ));
            -i64::from(ENDIO_EPANIC)
        }
    }
}

/// [`call`] for functions that return an `int`: 0 or a negated errno.
pub(crate) fn call_int(name: &str, body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    let result = call(name, || body().map(|()| 0));
    c_int::try_from(result).unwrap_or(-libc::EIO)
}

/// The message of the calling thread's last failed endio call: what went
/// wrong, on which file, and what to do about it. Empty if no call of this
/// thread has failed. Like `errno`, a successful call leaves it as it
/// was. The string belongs to endio and stays valid until the next failed
/// endio call of this thread.
#[unsafe(no_mangle)]
pub extern "C" fn endio_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// A short description of an error code, negated or not (`-ENOENT` and
/// `ENOENT` alike; `ENDIO_EPANIC` included), as `strerror` gives it. The
/// string belongs to endio and stays valid until the next
/// `endio_strerror` of this thread.
#[unsafe(no_mangle)]
pub extern "C" fn endio_strerror(err: c_int) -> *const c_char {
    let text = catch_unwind(|| {
        let code = err.checked_abs().unwrap_or(0);
        if code == ENDIO_EPANIC {
            return "internal error in endio (a bug: see endio_last_error_message)".to_owned();
        }
        let text = std::io::Error::from_raw_os_error(code).to_string();
        match text.rfind(" (os error ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        }
    })
    .unwrap_or_else(|_| "unknown error".to_owned());
    STRERROR
        .try_with(|slot| {
            *slot.borrow_mut() = c_string(text);
            slot.borrow().as_ptr()
        })
        .unwrap_or(c"unknown error".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: endio_last_error_message returns a valid C string owned
        // by this thread's slot, read before any other call of this thread.
        unsafe { CStr::from_ptr(endio_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_failure_returns_its_negated_errno_and_names_the_call() {
        assert_eq!(
            call_int("endio_x", || Err(Failure::invalid("bad"))),
            -libc::EINVAL
        );
        assert_eq!(last(), "endio_x: bad");
    }

    #[test]
    fn a_panic_is_caught_and_returns_epanic() {
        let r = call("endio_y", || panic!("boom"));
        assert_eq!(r, -i64::from(ENDIO_EPANIC));
        assert!(last().starts_with("endio_y: internal error in endio (boom)"));
    }

    #[test]
    fn messages_name_the_c_flags() {
        assert_eq!(
            in_c_terms("use OpenOptions::create(true) to create it".into()),
            "use ENDIO_OPEN_CREATE to create it"
        );
        assert_eq!(
            in_c_terms("add OpenOptions::write(true)".into()),
            "add ENDIO_OPEN_WRITE"
        );
    }

    #[test]
    fn strerror_takes_negated_codes() {
        // SAFETY: as above, a valid C string of this thread's slot.
        let s = unsafe { CStr::from_ptr(endio_strerror(-libc::ENOENT)) };
        assert_eq!(s.to_str().unwrap(), "No such file or directory");
    }
}
