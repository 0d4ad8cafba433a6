//! `--plot FILE.svg`: throughput and page-cache residency over each job's
//! time, one line per mode; a column per access pattern.
//!
//! SVG only: plotters' SVG backend writes text as SVG `<text>` elements and
//! needs no font; its bitmap (PNG) backend rasterizes text itself and
//! panics without a font library and system fonts, which would make the
//! plot depend on the machine. So `.png` is refused with the fix.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::report::{JobReport, RunReport, Sample};
use super::units::{fmt_bytes, mib};
use super::{Mode, Rw};

fn color(mode: Mode) -> RGBColor {
    match mode {
        Mode::Buffered => RGBColor(0x1f, 0x77, 0xb4),
        Mode::Dontcache => RGBColor(0x2c, 0xa0, 0x2c),
        Mode::Direct => RGBColor(0xd6, 0x27, 0x28),
    }
}

/// Room above the highest point, so the legend (upper right) does not
/// cover a line.
const HEADROOM: f64 = 1.4;

/// The shortest interval a throughput point spans: the last sample of a
/// job comes at its end, often just after a tick, and a few bytes over a
/// few microseconds would draw a spike.
const INTERVAL_MIN_S: f64 = 0.05;

/// Throughput points of a job: MiB/s over each sample interval.
fn throughput(job: &JobReport) -> Vec<(f64, f64)> {
    let mut kept: Vec<&Sample> = Vec::new();
    for (i, s) in job.samples.iter().enumerate() {
        let last = i + 1 == job.samples.len();
        match kept.last() {
            None => kept.push(s),
            Some(k) if s.t_s - k.t_s >= INTERVAL_MIN_S => kept.push(s),
            Some(_) if last && kept.len() > 1 => {
                kept.pop();
                kept.push(s);
            }
            Some(_) if last => kept.push(s),
            Some(_) => {}
        }
    }
    let mut pts = vec![(0.0, 0.0)];
    for w in kept.windows(2) {
        let dt = w[1].t_s - w[0].t_s;
        if dt > 1e-6 {
            pts.push((w[1].t_s, mib(w[1].bytes - w[0].bytes) / dt));
        }
    }
    pts
}

/// Residency points of a job, in MiB.
fn residency(job: &JobReport) -> Vec<(f64, f64)> {
    job.samples
        .iter()
        .filter_map(|s| Some((s.t_s, mib(s.resident_bytes?))))
        .collect()
}

fn to_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

/// Writes the plot of `run` to `path` (SVG).
pub(crate) fn write_svg(path: &Path, run: &RunReport) -> anyhow::Result<()> {
    let mut patterns: Vec<Rw> = Vec::new();
    for j in run.aggregates() {
        if !patterns.contains(&j.rw) {
            patterns.push(j.rw);
        }
    }
    let cols = patterns.len().max(1);
    let width = 520 * cols as u32 + 40;
    let root = SVGBackend::new(path, (width, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(to_err)?;
    let title = format!(
        "endio bench: {} of {}{}",
        fmt_bytes(run.target.size_bytes),
        run.target.description,
        run.memcg
            .as_ref()
            .map(|m| format!(", memcg {}", fmt_bytes(m.limit_bytes)))
            .unwrap_or_default()
    );
    let root = root.titled(&title, ("sans-serif", 18)).map_err(to_err)?;
    let areas = root.split_evenly((2, cols));
    for (c, &rw) in patterns.iter().enumerate() {
        let jobs: Vec<&JobReport> = run.aggregates().filter(|j| j.rw == rw).collect();
        let t_max = jobs.iter().map(|j| j.seconds).fold(0.1_f64, f64::max) * 1.02;
        let series: Vec<Vec<(f64, f64)>> = jobs.iter().map(|j| throughput(j)).collect();
        let y_max = series.iter().flatten().map(|p| p.1).fold(1.0_f64, f64::max) * HEADROOM;
        let bs = fmt_bytes(jobs[0].bs).replace(".0 ", " ");
        let mut chart = ChartBuilder::on(&areas[c])
            .caption(
                format!("{}, bs {bs}: throughput", rw.title()),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(to_err)?;
        chart
            .configure_mesh()
            .x_desc("time since job start (s)")
            .y_desc("throughput (MiB/s)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .max_light_lines(2)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(to_err)?;
        for (job, pts) in jobs.iter().zip(&series) {
            let col = color(job.mode);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                .map_err(to_err)?
                .label(format!("{} ({:.0} MiB/s)", job.mode.name(), job.mib_per_s))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(to_err)?;

        let res: Vec<Vec<(f64, f64)>> = jobs.iter().map(|j| residency(j)).collect();
        let r_max = res.iter().flatten().map(|p| p.1).fold(1.0_f64, f64::max) * HEADROOM;
        let mut chart = ChartBuilder::on(&areas[cols + c])
            .caption(
                format!("{}: page cache of the target", rw.title()),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..t_max, 0.0..r_max)
            .map_err(to_err)?;
        chart
            .configure_mesh()
            .x_desc("time since job start (s)")
            .y_desc("resident (MiB)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .max_light_lines(2)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(to_err)?;
        for (job, pts) in jobs.iter().zip(&res) {
            let col = color(job.mode);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                .map_err(to_err)?
                .label(format!(
                    "{} (max {})",
                    job.mode.name(),
                    fmt_bytes(job.cache.resident_max_bytes)
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(to_err)?;
    }
    root.present().map_err(to_err)?;
    Ok(())
}
