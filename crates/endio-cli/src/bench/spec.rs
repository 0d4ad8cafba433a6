//! What a job is (its spec) and what it counts per direction: the data the
//! job runner fills and the report reads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use endio::Backend;
use hdrhistogram::Histogram;

use super::{Mode, Rw};

/// The longest latency recorded exactly (longer ones count as this).
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// What a job does.
#[derive(Debug, Clone)]
pub(crate) struct JobSpec {
    pub(crate) mode: Mode,
    pub(crate) rw: Rw,
    pub(crate) bs: u64,
    pub(crate) iodepth: u32,
    /// I/Os per submitting system call (`EngineBuilder::submit_batch`).
    pub(crate) submit_batch: u32,
    /// Whether the job's buffers come from a registered pool.
    pub(crate) registered_buffers: bool,
    pub(crate) runtime: Option<Duration>,
    pub(crate) time_based: bool,
    pub(crate) backend: Option<Backend>,
    pub(crate) end_fsync: bool,
    pub(crate) seed: u64,
    pub(crate) dontcache_emulated: bool,
    /// The dontcache backlog's bound in bytes (`None`: the library's).
    pub(crate) dontcache_backlog: Option<u64>,
    /// Percent of a mixed pattern's I/Os that read.
    pub(crate) rwmixread: u32,
    /// Clones of the workload run at the same time (fio's numjobs).
    pub(crate) numjobs: u32,
}

/// Latencies of one direction, one histogram per CPU so that the handlers
/// of different CPUs do not contend.
#[derive(Debug)]
pub(crate) struct Latencies {
    stripes: Box<[Mutex<Histogram<u64>>]>,
}

impl Latencies {
    pub(super) fn new() -> Latencies {
        let n = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .min(64);
        let hist = Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds");
        Latencies {
            stripes: (0..n).map(|_| Mutex::new(hist.clone())).collect(),
        }
    }

    pub(super) fn record(&self, ns: u64) {
        let i = endio::testing::current_cpu() % self.stripes.len();
        self.stripes[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(ns.max(1));
    }

    /// All stripes in one histogram.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds");
        for s in self.stripes.iter() {
            let h = s.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// Counters of one direction.
#[derive(Debug)]
pub(crate) struct Direction {
    pub(crate) ios: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) lat: Latencies,
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            ios: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lat: Latencies::new(),
        }
    }

    /// The sum of `parts`: counters added, latency histograms merged (the
    /// aggregate of a job's clones).
    pub(super) fn sum<'a>(parts: impl Iterator<Item = &'a Direction>) -> Direction {
        let mut lat = Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds");
        let (mut ios, mut bytes) = (0, 0);
        for d in parts {
            ios += d.ios.load(Ordering::Relaxed);
            bytes += d.bytes.load(Ordering::Relaxed);
            lat.add(d.lat.merged()).expect("same bounds");
        }
        Direction {
            ios: AtomicU64::new(ios),
            bytes: AtomicU64::new(bytes),
            lat: Latencies {
                stripes: Box::new([Mutex::new(lat)]),
            },
        }
    }
}
