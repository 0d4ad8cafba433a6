//! The dontcache mode's calls into the library, in one place: how a device
//! is opened for it and what it reports.

use endio::{Device, OpenOptions};
use serde::Serialize;

use super::Mode;

/// The dontcache part of a job's report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DontcacheReport {
    /// `native` (the kernel's `RWF_DONTCACHE`) or `emulated` (writeback and
    /// drop-behind by endio).
    pub(crate) mode: &'static str,
    /// The device's dontcache counters ([`endio::DontcacheStats`]: drops,
    /// drop calls, coalesced ranges, bytes dropped, writeback waits,
    /// in-flight bytes, back-pressure waits, ...).
    pub(crate) stats: Option<serde_json::Value>,
}

impl DontcacheReport {
    /// Bytes dropped by endio's drop-behind, if counted.
    pub(crate) fn bytes_dropped(&self) -> Option<u64> {
        self.stats.as_ref()?.get("bytes_dropped")?.as_u64()
    }
}

/// Open options for `mode`; `emulated` forces endio's emulation where the
/// kernel has the native flag.
pub(crate) fn open_options(o: OpenOptions, mode: Mode, emulated: bool) -> OpenOptions {
    let on = mode == Mode::Dontcache;
    o.dontcache(on).dontcache_emulated(on && emulated)
}

/// The report of a device opened for `mode` (None unless dontcache).
pub(crate) fn report(dev: &Device) -> Option<DontcacheReport> {
    let mode = dev.dontcache_mode()?;
    Some(DontcacheReport {
        mode: mode.name(),
        stats: serde_json::to_value(dev.dontcache_stats()).ok(),
    })
}
