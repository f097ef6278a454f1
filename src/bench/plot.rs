//! `--plot FILE.svg`: total-latency percentile curves, one panel per
//! concurrency, every upstream overlaid (solid = keep-alive on, dashed = off).
//!
//! The x axis is `-log10(1 - p/100)`, so 90, 99 and 99.9 are evenly spaced
//! and the tail gets as much room as the median.

use plotters::prelude::*;

use super::report::{CellReport, Report};
use super::stats::Latencies;

const PANEL_WIDTH: u32 = 520;
const HEIGHT: u32 = 440;
/// x of p99.9.
const X_MAX: f64 = 3.0;
/// Percentiles sampled for each curve.
const POINTS: [f64; 20] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.5, 99.0,
    99.5, 99.75, 99.8, 99.9,
];
/// One color per upstream, in the order given.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// The SVG document for `report`.
pub fn svg(report: &Report) -> Result<String, String> {
    let mut out = String::new();
    draw(report, &mut out).map_err(|e| format!("drawing the plot failed: {e}"))?;
    Ok(out)
}

fn draw(report: &Report, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let levels = &report.settings.concurrency;
    let width = PANEL_WIDTH * (levels.len().max(1) as u32);
    let root = SVGBackend::with_string(out, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, levels.len().max(1)));
    for (panel, &concurrency) in panels.iter().zip(levels) {
        let cells: Vec<&CellReport> = report
            .cells
            .iter()
            .filter(|c| c.concurrency == concurrency)
            .collect();
        let curves: Vec<Vec<(f64, f64)>> = cells.iter().map(|c| curve(&c.total_hist)).collect();
        let y_top = curves.iter().flatten().map(|&(_, y)| y).fold(0.0, f64::max);
        let y_top = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("concurrency {concurrency}"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..X_MAX, 0f64..y_top)?;
        chart
            .configure_mesh()
            // Ticks every half decade: 0, 68.4, 90, 96.8, 99, 99.68, 99.9.
            .x_labels(7)
            .x_label_formatter(&|x| percentile_label(*x))
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .draw()?;
        for (cell, points) in cells.iter().zip(curves) {
            let upstream = report
                .settings
                .upstreams
                .iter()
                .position(|u| *u == cell.upstream)
                .unwrap_or(0);
            let color = COLORS[upstream % COLORS.len()];
            // Keep-alive off: the same hue, lighter, so the legend tells them apart too.
            let color = if cell.keepalive {
                color
            } else {
                lighter(color)
            };
            let style = color.stroke_width(2);
            let label = format!(
                "{} keep-alive {}",
                cell.label,
                if cell.keepalive { "on" } else { "off" }
            );
            let drawn = if cell.keepalive {
                chart.draw_series(LineSeries::new(points, style))?
            } else {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
            };
            drawn
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// (x, latency ms) at the sampled percentiles; empty for an empty histogram.
fn curve(h: &Latencies) -> Vec<(f64, f64)> {
    if h.count() == 0 {
        return Vec::new();
    }
    POINTS.iter().map(|&p| (to_x(p), h.at_ms(p))).collect()
}

fn lighter(RGBColor(r, g, b): RGBColor) -> RGBColor {
    let mix = |c: u8| ((u16::from(c) + 255) / 2) as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

fn to_x(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_mapping() {
        assert_eq!(to_x(0.0), 0.0);
        assert!((to_x(90.0) - 1.0).abs() < 1e-9);
        assert!((to_x(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(0.0), "0");
        assert_eq!(percentile_label(1.0), "90");
        assert_eq!(percentile_label(2.0), "99");
        assert_eq!(percentile_label(3.0), "99.9");
    }
}
