//! What a benchmark reports: the JSON document (per job, endio's fields:
//! mode, pattern, throughput, latency, CPU, page cache, deferral, verify and
//! dontcache counters; plus the keys fio's JSON output has, so scripts
//! written for fio read it) and the human table.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use endio::{BufferStats, DriveStats, Stats, VerifyStats};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::dontcache::DontcacheReport;
use super::memcg::MemcgReport;
use super::spec::{Direction, JobSpec};
use super::target::{Kind, Target};
use super::units::{fmt_bytes, mib};
use super::{BenchArgs, Mode, Rw};
use crate::rusage::Usage;

/// The percentiles fio reports in `clat_ns.percentile`.
const FIO_PERCENTILES: [f64; 17] = [
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95,
    99.99,
];

/// One page-cache sample of a job.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Sample {
    /// Seconds since the job started.
    pub(crate) t_s: f64,
    /// Bytes transferred so far.
    pub(crate) bytes: u64,
    /// Bytes of the target in the page cache (None if the kernel does not
    /// tell, e.g. the null backend's target).
    pub(crate) resident_bytes: Option<u64>,
    /// Of those, dirty or under writeback.
    pub(crate) dirty_bytes: Option<u64>,
}

/// One second of a job.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct SeriesPoint {
    /// Seconds since the job started, at the end of the interval.
    pub(crate) t_s: f64,
    /// Throughput over the interval.
    pub(crate) mib_per_s: f64,
    /// Page cache of the target at the end of the interval.
    pub(crate) resident_bytes: Option<u64>,
}

/// Latency in microseconds: least, mean, percentiles, most.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LatUs {
    pub(crate) min: f64,
    pub(crate) avg: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// CPU time of the process during the job.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Cpu {
    pub(crate) user_s: f64,
    pub(crate) sys_s: f64,
}

/// The target's page cache during the job.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Cache {
    pub(crate) resident_start_bytes: u64,
    pub(crate) resident_max_bytes: u64,
    pub(crate) resident_end_bytes: u64,
    /// The most dirty or writeback bytes seen.
    pub(crate) dirty_max_bytes: u64,
    /// What stayed cached after the invalidation before the job.
    pub(crate) left_after_invalidate_bytes: u64,
    /// Whether the kernel told (cachestat or mincore) at all.
    pub(crate) measured: bool,
}

/// The completer's counters over the job.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Deferral {
    pub(crate) deferred: u64,
    pub(crate) inline: u64,
    pub(crate) batches: u64,
    pub(crate) max_batch: u64,
    pub(crate) requeues: u64,
    pub(crate) rescued: u64,
    pub(crate) wakeups: u64,
    pub(crate) panics: u64,
    /// I/Os reaped by the worker of their CPU, which drove the ring.
    pub(crate) reaped_by_worker: u64,
    /// I/Os reaped by a ring's own reaper thread.
    pub(crate) reaped_by_reaper: u64,
    /// Times a reaper took a ring over from its worker.
    pub(crate) lane_takeovers: u64,
    /// I/Os issued on registered buffers (`READ_FIXED`/`WRITE_FIXED`).
    pub(crate) registered_buffer_ios: u64,
}

/// fio's latency object (nanoseconds).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FioLat {
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
    pub(crate) stddev: f64,
    #[serde(rename = "N")]
    pub(crate) n: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) percentile: Option<BTreeMap<String, u64>>,
}

/// fio's per-direction object (`jobs[].read`, `jobs[].write`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FioDir {
    pub(crate) io_bytes: u64,
    pub(crate) io_kbytes: u64,
    pub(crate) bw_bytes: u64,
    /// KiB/s.
    pub(crate) bw: u64,
    pub(crate) iops: f64,
    /// Milliseconds.
    pub(crate) runtime: u64,
    pub(crate) total_ios: u64,
    /// Submission to completion handler (endio has no separate submission
    /// latency: the same as `lat_ns`).
    pub(crate) clat_ns: FioLat,
    pub(crate) lat_ns: FioLat,
}

/// One job: endio's fields, then fio's.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobReport {
    /// `MODE-RW`, fio's job name.
    pub(crate) jobname: String,
    /// With `--numjobs` above 1, which clone of the job this entry is
    /// (from 0); absent from the job's own entry, the aggregate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) clone: Option<u32>,
    pub(crate) mode: Mode,
    pub(crate) rw: Rw,
    pub(crate) bs: u64,
    pub(crate) iodepth: u32,
    /// Bytes transferred (both directions).
    pub(crate) bytes: u64,
    /// From the first submission to the end (last completion, fsync,
    /// drop-behind).
    pub(crate) seconds: f64,
    pub(crate) mib_per_s: f64,
    pub(crate) iops: f64,
    pub(crate) lat_us: LatUs,
    /// Bytes the process had the block layer read from storage during the
    /// job (`/proc/self/io` `read_bytes`: readahead included, page-cache
    /// hits not); what a read job's throughput owes to the device. `None`
    /// where the kernel does not account it.
    pub(crate) device_read_bytes: Option<u64>,
    /// Of the bytes read, those the page cache had when each read was
    /// submitted, where endio measured it (direct reads: 0; dontcache
    /// reads of endio's emulation); `None` when no read was measured.
    pub(crate) cache_hit_bytes: Option<u64>,
    /// Percent of a mixed pattern's I/Os that read (fio's rwmixread).
    pub(crate) rwmixread: Option<u32>,
    pub(crate) cpu: Cpu,
    pub(crate) cache: Cache,
    pub(crate) deferral: Deferral,
    pub(crate) verify: VerifyStats,
    /// The dontcache mode and counters (dontcache jobs only).
    pub(crate) dontcache: Option<DontcacheReport>,
    /// Seconds of the closing fsync, inside `seconds`.
    pub(crate) end_fsync_s: Option<f64>,
    /// I/O errors (the job stops at the first).
    pub(crate) errors: u64,
    /// The first error.
    pub(crate) error_message: Option<String>,
    /// Write-back failures of data this job wrote, as the device reported
    /// them (its write-back waits, the closing fsync, a final check):
    /// counted even when every write itself completed.
    pub(crate) writeback_errors: u64,
    /// The first write-back error.
    pub(crate) writeback_first_error: Option<String>,
    /// Stopped by Ctrl-C.
    pub(crate) interrupted: bool,
    /// fio: the errno of the job's first error (an I/O or a write-back
    /// error), 0 when it had none.
    pub(crate) error: i32,
    /// fio: reads.
    pub(crate) read: FioDir,
    /// fio: writes.
    pub(crate) write: FioDir,
    /// fio: user CPU, percent of the job's time.
    pub(crate) usr_cpu: f64,
    /// fio: system CPU, percent of the job's time.
    pub(crate) sys_cpu: f64,
    /// fio: context switches.
    pub(crate) ctx: u64,
    /// fio: seconds (rounded).
    pub(crate) elapsed: u64,
    /// Per second: throughput and page-cache residency.
    pub(crate) series: Vec<SeriesPoint>,
    /// Every 100 ms: bytes done and page-cache residency.
    pub(crate) samples: Vec<Sample>,
}

/// What [`job_report`] is made of.
#[derive(Debug)]
pub(crate) struct JobInputs<'a> {
    pub(crate) spec: &'a JobSpec,
    pub(crate) seconds: f64,
    pub(crate) read: &'a Direction,
    pub(crate) write: &'a Direction,
    pub(crate) usage: Usage,
    pub(crate) stats: Stats,
    pub(crate) drive: DriveStats,
    pub(crate) buffers: BufferStats,
    pub(crate) samples: Vec<Sample>,
    pub(crate) left_cached: u64,
    pub(crate) dontcache: Option<DontcacheReport>,
    pub(crate) verify: VerifyStats,
    pub(crate) fsync_s: Option<f64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) first_errno: i32,
    pub(crate) writeback: endio::WritebackErrors,
    pub(crate) interrupted: bool,
    pub(crate) device_read_bytes: Option<u64>,
    pub(crate) cache_hit_bytes: Option<u64>,
}

fn fio_lat(h: &Histogram<u64>, with_percentiles: bool) -> FioLat {
    let empty = h.is_empty();
    FioLat {
        min: if empty { 0 } else { h.min() },
        max: h.max(),
        mean: if empty { 0.0 } else { h.mean() },
        stddev: if empty { 0.0 } else { h.stdev() },
        n: h.len(),
        percentile: with_percentiles.then(|| {
            FIO_PERCENTILES
                .iter()
                .map(|&p| (format!("{p:.6}"), h.value_at_percentile(p)))
                .collect()
        }),
    }
}

fn fio_dir(d: &Direction, h: &Histogram<u64>, seconds: f64) -> FioDir {
    let bytes = d.bytes.load(Ordering::Relaxed);
    let ios = d.ios.load(Ordering::Relaxed);
    let per_s = |x: u64| {
        if seconds > 0.0 {
            x as f64 / seconds
        } else {
            0.0
        }
    };
    FioDir {
        io_bytes: bytes,
        io_kbytes: bytes / 1024,
        bw_bytes: per_s(bytes) as u64,
        bw: (per_s(bytes) / 1024.0) as u64,
        iops: per_s(ios),
        runtime: (seconds * 1000.0).round() as u64,
        total_ios: ios,
        clat_ns: fio_lat(h, true),
        lat_ns: fio_lat(h, false),
    }
}

/// Per-second points from the 100 ms samples.
fn per_second(samples: &[Sample]) -> Vec<SeriesPoint> {
    let mut out = Vec::new();
    let Some(first) = samples.first() else {
        return out;
    };
    let (mut t0, mut b0) = (first.t_s, first.bytes);
    for (i, s) in samples.iter().enumerate().skip(1) {
        let last = i + 1 == samples.len();
        // A tick may come a little early: 0.95 s counts as a second.
        if s.t_s - t0 >= 0.95 || (last && s.t_s > t0) {
            let dt = s.t_s - t0;
            out.push(SeriesPoint {
                t_s: s.t_s,
                mib_per_s: if dt > 0.0 {
                    mib(s.bytes - b0) / dt
                } else {
                    0.0
                },
                resident_bytes: s.resident_bytes,
            });
            t0 = s.t_s;
            b0 = s.bytes;
        }
    }
    out
}

/// Builds a job's report.
/// fio's `error`: the errno of the first I/O error, else of the first
/// write-back error, else 0.
fn job_errno(i: &JobInputs<'_>) -> i32 {
    if i.errors > 0 {
        if i.first_errno != 0 {
            i.first_errno
        } else {
            libc::EIO
        }
    } else {
        i.writeback.first_errno.unwrap_or(0)
    }
}

impl JobReport {
    /// Whether the job failed: an I/O error, a write-back error or a
    /// verify error.
    pub(crate) fn failed(&self) -> bool {
        self.error != 0 || self.errors > 0 || self.writeback_errors > 0 || self.verify.errors > 0
    }
}

pub(crate) fn job_report(i: JobInputs<'_>) -> JobReport {
    let rh = i.read.lat.merged();
    let wh = i.write.lat.merged();
    let mut all = rh.clone();
    all.add(&wh).expect("same bounds");
    let bytes = i.read.bytes.load(Ordering::Relaxed) + i.write.bytes.load(Ordering::Relaxed);
    let ios = i.read.ios.load(Ordering::Relaxed) + i.write.ios.load(Ordering::Relaxed);
    let secs = i.seconds.max(1e-9);
    let us = |ns: u64| ns as f64 / 1000.0;
    let resident: Vec<u64> = i.samples.iter().filter_map(|s| s.resident_bytes).collect();
    let dirty_max = i
        .samples
        .iter()
        .filter_map(|s| s.dirty_bytes)
        .max()
        .unwrap_or(0);
    let user_s = i.usage.user.as_secs_f64();
    let sys_s = i.usage.system.as_secs_f64();
    let error = job_errno(&i);
    JobReport {
        jobname: format!("{}-{}", i.spec.mode.name(), i.spec.rw.name()),
        clone: None,
        mode: i.spec.mode,
        rw: i.spec.rw,
        bs: i.spec.bs,
        iodepth: i.spec.iodepth,
        bytes,
        seconds: i.seconds,
        mib_per_s: mib(bytes) / secs,
        iops: ios as f64 / secs,
        lat_us: LatUs {
            min: if all.is_empty() { 0.0 } else { us(all.min()) },
            avg: if all.is_empty() {
                0.0
            } else {
                all.mean() / 1000.0
            },
            p50: us(all.value_at_quantile(0.50)),
            p99: us(all.value_at_quantile(0.99)),
            p999: us(all.value_at_quantile(0.999)),
            max: us(all.max()),
        },
        device_read_bytes: i.device_read_bytes,
        cache_hit_bytes: i.cache_hit_bytes,
        rwmixread: (i.spec.rw.reads() && i.spec.rw.writes()).then_some(i.spec.rwmixread),
        cpu: Cpu { user_s, sys_s },
        cache: Cache {
            resident_start_bytes: resident.first().copied().unwrap_or(0),
            resident_max_bytes: resident.iter().copied().max().unwrap_or(0),
            resident_end_bytes: resident.last().copied().unwrap_or(0),
            dirty_max_bytes: dirty_max,
            left_after_invalidate_bytes: i.left_cached,
            measured: !resident.is_empty(),
        },
        deferral: Deferral {
            deferred: i.stats.deferred,
            inline: i.stats.inline,
            batches: i.stats.batches,
            max_batch: i.stats.batch_len_max,
            requeues: i.stats.requeues,
            rescued: i.stats.rescued,
            wakeups: i.stats.wakeups,
            panics: i.stats.panics,
            reaped_by_worker: i.drive.worker_completions,
            reaped_by_reaper: i.drive.reaper_completions,
            lane_takeovers: i.drive.takeovers,
            registered_buffer_ios: i.buffers.fixed_ios,
        },
        verify: i.verify,
        dontcache: i.dontcache,
        end_fsync_s: i.fsync_s,
        errors: i.errors,
        error,
        writeback_errors: i.writeback.count,
        writeback_first_error: i.writeback.first().map(|e| e.to_string()),
        error_message: i.first_error,
        interrupted: i.interrupted,
        read: fio_dir(i.read, &rh, secs),
        write: fio_dir(i.write, &wh, secs),
        usr_cpu: 100.0 * user_s / secs,
        sys_cpu: 100.0 * sys_s / secs,
        ctx: i.usage.ctx_switches(),
        elapsed: i.seconds.round() as u64,
        series: per_second(&i.samples),
        samples: i.samples,
    }
}

/// The target, for the JSON.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetReport {
    pub(crate) path: PathBuf,
    pub(crate) kind: Kind,
    pub(crate) size_bytes: u64,
    pub(crate) description: String,
    pub(crate) temporary: bool,
}

/// The options every job shares (fio's `global options`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GlobalOptions {
    pub(crate) size: u64,
    pub(crate) iodepth: u32,
    /// I/Os per submitting system call (io_uring).
    pub(crate) submit_batch: u32,
    /// Whether job buffers come from a pool registered with the rings.
    pub(crate) registered_buffers: bool,
    /// Clones per job (shown when above 1).
    #[serde(skip_serializing_if = "is_one")]
    pub(crate) numjobs: u32,
    pub(crate) runtime_s: Option<f64>,
    pub(crate) time_based: bool,
    pub(crate) verify: bool,
    pub(crate) seed: u64,
    pub(crate) end_fsync: bool,
    pub(crate) invalidate: bool,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The whole run: what `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport {
    pub(crate) endio_version: &'static str,
    /// Seconds since the Unix epoch at the end of the run.
    pub(crate) timestamp: u64,
    pub(crate) target: TargetReport,
    /// The I/O backend the jobs ran on.
    pub(crate) backend: Option<String>,
    #[serde(rename = "global options")]
    pub(crate) global_options: GlobalOptions,
    /// The memory cgroup of `--memcg`.
    pub(crate) memcg: Option<MemcgReport>,
    pub(crate) notes: Vec<String>,
    /// One object per job, in the order they ran; with `--numjobs` above
    /// 1 each job's object (the aggregate of its clones) is followed by
    /// one per clone.
    pub(crate) jobs: Vec<JobReport>,
}

impl RunReport {
    /// The jobs' own entries (the aggregates of their clones), without the
    /// clones: what the table and the plot show.
    pub(crate) fn aggregates(&self) -> impl Iterator<Item = &JobReport> {
        self.jobs.iter().filter(|j| j.clone.is_none())
    }

    /// Assembles the run's report.
    pub(crate) fn new(
        target: &Target,
        args: &BenchArgs,
        backend: Option<endio::Backend>,
        memcg: Option<MemcgReport>,
        notes: Vec<String>,
        jobs: Vec<JobReport>,
    ) -> RunReport {
        RunReport {
            endio_version: env!("CARGO_PKG_VERSION"),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            target: TargetReport {
                path: target.path.clone(),
                kind: target.kind,
                size_bytes: target.size,
                description: target.description.clone(),
                temporary: target.temporary,
            },
            backend: backend.map(|b| b.name().to_owned()),
            global_options: GlobalOptions {
                size: target.size,
                iodepth: args.iodepth,
                submit_batch: args.submit_batch,
                registered_buffers: args.registered_buffers,
                numjobs: args.numjobs,
                runtime_s: args.runtime.map(|d| d.as_secs_f64()),
                time_based: args.time_based,
                verify: args.verify,
                seed: args.seed,
                end_fsync: args.end_fsync,
                invalidate: true,
            },
            memcg,
            notes,
            jobs,
        }
    }
}

fn mib_cell(bytes: u64) -> String {
    format!("{:.1}", mib(bytes))
}

fn lat_cell(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

type Row = (&'static str, fn(&JobReport) -> String);

const ROWS: [Row; 23] = [
    ("throughput   MiB/s", |j| format!("{:.1}", j.mib_per_s)),
    ("device read  MiB", |j| {
        j.device_read_bytes.map_or_else(|| "-".into(), mib_cell)
    }),
    ("IOPS", |j| format!("{:.0}", j.iops)),
    ("time         s", |j| format!("{:.2}", j.seconds)),
    ("  of it fsync s", |j| {
        j.end_fsync_s
            .map_or_else(|| "-".into(), |s| format!("{s:.2}"))
    }),
    ("lat min      µs", |j| lat_cell(j.lat_us.min)),
    ("lat avg      µs", |j| lat_cell(j.lat_us.avg)),
    ("lat p50      µs", |j| lat_cell(j.lat_us.p50)),
    ("lat p99      µs", |j| lat_cell(j.lat_us.p99)),
    ("lat p99.9    µs", |j| lat_cell(j.lat_us.p999)),
    ("lat max      µs", |j| lat_cell(j.lat_us.max)),
    ("CPU user     s", |j| format!("{:.2}", j.cpu.user_s)),
    ("CPU sys      s", |j| format!("{:.2}", j.cpu.sys_s)),
    ("cache start  MiB", |j| {
        mib_cell(j.cache.resident_start_bytes)
    }),
    ("cache max    MiB", |j| mib_cell(j.cache.resident_max_bytes)),
    ("cache end    MiB", |j| mib_cell(j.cache.resident_end_bytes)),
    ("deferred", |j| j.deferral.deferred.to_string()),
    ("batches", |j| j.deferral.batches.to_string()),
    ("max batch", |j| j.deferral.max_batch.to_string()),
    ("wakeups", |j| j.deferral.wakeups.to_string()),
    ("inline/requeue/rescue", |j| {
        format!(
            "{}/{}/{}",
            j.deferral.inline, j.deferral.requeues, j.deferral.rescued
        )
    }),
    ("registered buffers %", |j| {
        let all = j.deferral.reaped_by_worker + j.deferral.reaped_by_reaper;
        if all == 0 {
            "-".into()
        } else {
            format!(
                "{:.1}",
                100.0 * j.deferral.registered_buffer_ios as f64 / all as f64
            )
        }
    }),
    ("reaped by worker %", |j| {
        let d = &j.deferral;
        let all = d.reaped_by_worker + d.reaped_by_reaper;
        if all == 0 {
            "-".into()
        } else {
            format!("{:.1}", 100.0 * d.reaped_by_worker as f64 / all as f64)
        }
    }),
];

/// Prints the header and a table per access pattern, a column per mode.
pub(crate) fn print_table(out: &mut dyn Write, run: &RunReport) -> io::Result<()> {
    let t = &run.target;
    writeln!(
        out,
        "endio bench: {}: {}; {} used, iodepth {}{}, backend {}{}{}",
        t.path.display(),
        t.description,
        fmt_bytes(t.size_bytes),
        run.global_options.iodepth,
        match run.global_options.numjobs {
            1 => String::new(),
            n => format!(", numjobs {n} (each job: the sum of its clones)"),
        },
        run.backend.as_deref().unwrap_or("?"),
        if run.global_options.end_fsync && run.aggregates().any(|j| j.rw.writes()) {
            ", writes timed to the end of their fsync"
        } else {
            ""
        },
        if run.global_options.verify {
            ", verified"
        } else {
            ""
        },
    )?;
    if let Some(m) = &run.memcg {
        writeln!(
            out,
            "memory cgroup {} (v{}): limit {}, peak {}, limit hit {} times",
            m.path.display(),
            if m.version == super::memcg::Version::V2 {
                2
            } else {
                1
            },
            fmt_bytes(m.limit_bytes),
            m.peak_bytes.map_or_else(|| "?".into(), fmt_bytes),
            m.limit_hits.map_or_else(|| "?".into(), |n| n.to_string()),
        )?;
        if !m.stat_delta.is_empty() {
            let counts: Vec<String> = m
                .stat_delta
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "pgscan" | "pgsteal" | "workingset_refault_file" | "pgpgout"
                    )
                })
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if !counts.is_empty() {
                writeln!(
                    out,
                    "memory cgroup during the run (memory.stat growth): {}",
                    counts.join(", ")
                )?;
            }
        }
    }
    let mut patterns: Vec<Rw> = Vec::new();
    for j in run.aggregates() {
        if !patterns.contains(&j.rw) {
            patterns.push(j.rw);
        }
    }
    const LABEL: usize = 22;
    const CELL: usize = 12;
    for rw in patterns {
        let jobs: Vec<&JobReport> = run.aggregates().filter(|j| j.rw == rw).collect();
        writeln!(out)?;
        let title = match jobs[0].rwmixread {
            Some(mix) => rw.title().replace("50/50", &format!("{mix}/{}", 100 - mix)),
            None => rw.title().to_owned(),
        };
        writeln!(
            out,
            "{title}, bs {}",
            fmt_bytes(jobs[0].bs).replace(".0 ", " ")
        )?;
        write!(out, "{:LABEL$}", "")?;
        for j in &jobs {
            write!(out, "{:>CELL$}", j.mode.name())?;
        }
        writeln!(out)?;
        let mut row = |label: &str, cell: &dyn Fn(&JobReport) -> String| -> io::Result<()> {
            write!(out, "{label:LABEL$}")?;
            for j in &jobs {
                write!(out, "{:>CELL$}", cell(j))?;
            }
            writeln!(out)
        };
        for (label, cell) in ROWS {
            if label == "  of it fsync s" && jobs.iter().all(|j| j.end_fsync_s.is_none()) {
                continue;
            }
            if label == "device read  MiB" && !rw.reads() {
                continue;
            }
            row(label, &cell)?;
            if label == "throughput   MiB/s" && rw.reads() && rw.writes() {
                row("  read       MiB/s", &|j| {
                    format!("{:.1}", j.read.bw_bytes as f64 / (1 << 20) as f64)
                })?;
                row("  write      MiB/s", &|j| {
                    format!("{:.1}", j.write.bw_bytes as f64 / (1 << 20) as f64)
                })?;
            }
        }
        if jobs.iter().any(|j| j.dontcache.is_some()) {
            row("dontcache", &|j| {
                j.dontcache
                    .as_ref()
                    .map_or_else(|| "-".into(), |d| d.mode.into())
            })?;
            if jobs
                .iter()
                .any(|j| j.dontcache.as_ref().is_some_and(|d| d.stats.is_some()))
            {
                row("  dropped    MiB", &|j| {
                    j.dontcache
                        .as_ref()
                        .and_then(DontcacheReport::bytes_dropped)
                        .map_or_else(|| "-".into(), mib_cell)
                })?;
            }
        }
        if rw.reads() && jobs.iter().any(|j| j.cache_hit_bytes.is_some()) {
            row("  cache hits MiB", &|j| {
                j.cache_hit_bytes.map_or_else(|| "-".into(), mib_cell)
            })?;
        }
        if run.global_options.verify {
            row("verified     MiB", &|j| mib_cell(j.verify.checked_bytes))?;
            row("verify errors", &|j| j.verify.errors.to_string())?;
        }
        if jobs.iter().any(|j| j.errors > 0) {
            row("I/O errors", &|j| j.errors.to_string())?;
        }
        if jobs.iter().any(|j| j.writeback_errors > 0) {
            row("write-back errors", &|j| j.writeback_errors.to_string())?;
        }
        if jobs.iter().any(|j| j.error != 0) {
            row("error (errno)", &|j| j.error.to_string())?;
        }
    }
    if run.aggregates().any(|j| j.rw.reads()) {
        writeln!(out)?;
        writeln!(
            out,
            "device read: what the block layer read from storage for this process during the job (readahead included); a read job whose throughput is far above its device read was served by the page cache, not the device"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: f64, bytes: u64) -> Sample {
        Sample {
            t_s,
            bytes,
            resident_bytes: Some(bytes),
            dirty_bytes: None,
        }
    }

    #[test]
    fn per_second_points_cover_the_job() {
        let samples: Vec<Sample> = (0..=25)
            .map(|i: u32| s(f64::from(i) * 0.1, u64::from(i) << 20))
            .collect();
        let pts = per_second(&samples);
        assert_eq!(pts.len(), 3, "{pts:?}");
        assert!((pts[0].mib_per_s - 10.0).abs() < 0.01, "{pts:?}");
        assert!((pts[2].t_s - 2.5).abs() < 1e-9);
        assert!((pts[2].mib_per_s - 10.0).abs() < 0.01, "{pts:?}");
    }

    #[test]
    fn fio_percentile_keys_have_six_decimals() {
        let mut h = Histogram::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let l = fio_lat(&h, true);
        let p = l.percentile.unwrap();
        assert!(p.contains_key("99.000000") && p.contains_key("99.990000"));
        assert!((990..=1000).contains(&p["99.000000"]));
    }
}
