//! `results.svg`: bar charts of throughput, latency and per-request cost, written as plain SVG
//! so that no plotting library or font file is needed. Text uses the viewer's sans-serif font.

use std::fmt::Write as _;

use super::markdown::format_ns;
use super::summary::summarize;
use crate::fixtures::Case;
use crate::results::{LoadResults, MicroResults};

const WIDTH: f64 = 980.0;
const PANEL_HEIGHT: f64 = 320.0;
const COLORS: [&str; 4] = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"];

/// One cluster of bars along the x axis.
struct BarGroup {
    label: String,
    /// One value per series; `None` draws no bar.
    values: Vec<Option<f64>>,
    /// Optional min–max whisker per series.
    ranges: Vec<Option<(f64, f64)>>,
}

/// A bar chart in a rectangle of the image.
struct Panel<'a> {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    title: &'a str,
    series: &'a [&'a str],
    groups: Vec<BarGroup>,
    format: fn(f64) -> String,
}

/// Renders the chart from the first load test (the stand-in one when present) and the
/// micro-benchmarks.
pub fn render(micro: Option<&MicroResults>, load: Option<&LoadResults>) -> String {
    let height = 2.0 * PANEL_HEIGHT + 50.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let subtitle = load.map_or_else(
        || "no load test yet".to_owned(),
        |load| {
            format!(
                "End to end: {}, {} CPUs ({}), authorization by {}, Envoy --concurrency {}, wrk {} \
                 connections. Details: RESULTS.md",
                load.provenance.date,
                load.provenance.machine.nproc,
                load.provenance.machine.cpu_model,
                load.settings.authz,
                load.settings.envoy_concurrency,
                load.settings.wrk_connections
            )
        },
    );
    let _ = writeln!(
        svg,
        "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">jwt-revocation benchmarks \
         (benches/RESULTS.md)</text>\n<text x=\"10\" y=\"38\" fill=\"#555\">{}</text>",
        escape(&subtitle)
    );

    let top = 50.0;
    if let Some(load) = load {
        let summaries = summarize(load);
        let throughput = Panel {
            x: 0.0,
            y: top,
            width: WIDTH / 2.0,
            height: PANEL_HEIGHT,
            title: "Throughput, req/s (median of rounds, whiskers: range)",
            series: &["req/s"],
            groups: summaries
                .iter()
                .map(|s| BarGroup {
                    label: s.variant.clone(),
                    values: vec![Some(s.requests_per_second.median)],
                    ranges: vec![Some((s.requests_per_second.min, s.requests_per_second.max))],
                })
                .collect(),
            format: |v| format!("{v:.0}"),
        };
        draw_panel(&mut svg, &throughput);
        let latency = Panel {
            x: WIDTH / 2.0,
            y: top,
            width: WIDTH / 2.0,
            height: PANEL_HEIGHT,
            title: "Latency, µs (median of rounds)",
            series: &["p50", "p99"],
            groups: summaries
                .iter()
                .map(|s| BarGroup {
                    label: s.variant.clone(),
                    values: vec![Some(s.p50_us.median), Some(s.p99_us.median)],
                    ranges: vec![None, None],
                })
                .collect(),
            format: |v| format!("{v:.0}"),
        };
        draw_panel(&mut svg, &latency);
    }

    if let Some(micro) = micro {
        let groups = [
            ("core_request", "core"),
            ("native_request", "native"),
            ("wasm_request", "wasm"),
        ];
        let cost = Panel {
            x: 0.0,
            y: top + PANEL_HEIGHT,
            width: WIDTH,
            height: PANEL_HEIGHT,
            title: "Per-request cost in the filter (criterion mean, mock hosts)",
            series: &["core", "native (dlopen .so)", "wasm (wasmtime)"],
            groups: Case::ALL
                .iter()
                .map(|&case| BarGroup {
                    label: format!("{} ({} B)", case.name(), case.token().len()),
                    values: groups
                        .iter()
                        .map(|(group, _)| micro.find(group, case.name()).map(|e| e.mean_ns))
                        .collect(),
                    ranges: groups
                        .iter()
                        .map(|(group, _)| {
                            micro
                                .find(group, case.name())
                                .map(|e| (e.mean_low_ns, e.mean_high_ns))
                        })
                        .collect(),
                })
                .collect(),
            format: format_ns,
        };
        draw_panel(&mut svg, &cost);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Returns a round axis maximum at or above `max`, and its tick step.
fn axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let magnitude = 10f64.powf(max.log10().floor());
    let step = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|f| f * magnitude)
        .find(|step| max / step <= 5.0)
        .unwrap_or(magnitude * 10.0);
    ((max / step).ceil() * step, step)
}

/// Splits a bar group's label at its last `_` when it is wider than the group, so that
/// neighbouring labels do not overlap. The width of a 12-pixel sans-serif character is taken as
/// 7 pixels.
fn label_lines(label: &str, width: f64) -> Vec<&str> {
    const CHAR_WIDTH: f64 = 7.0;
    match label.rsplit_once('_') {
        Some((head, tail)) if label.len() as f64 * CHAR_WIDTH > width => vec![head, tail],
        _ => vec![label],
    }
}

fn draw_panel(svg: &mut String, panel: &Panel) {
    let left = panel.x + 70.0;
    let right = panel.x + panel.width - 20.0;
    let top = panel.y + 40.0;
    let bottom = panel.y + panel.height - 60.0;
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        panel.x + 10.0,
        panel.y + 20.0,
        escape(panel.title)
    );

    let max = panel
        .groups
        .iter()
        .flat_map(|g| {
            g.values
                .iter()
                .flatten()
                .copied()
                .chain(g.ranges.iter().flatten().map(|(_, high)| *high))
        })
        .fold(0.0, f64::max);
    let (axis_max, step) = axis(max);
    let scale = |value: f64| bottom - (value / axis_max) * (bottom - top);

    let mut tick = 0.0;
    while tick <= axis_max + step / 2.0 {
        let y = scale(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            left - 6.0,
            y + 4.0,
            escape(&(panel.format)(tick))
        );
        tick += step;
    }

    let group_width = (right - left) / panel.groups.len().max(1) as f64;
    let bar_width = (group_width * 0.7) / panel.series.len().max(1) as f64;
    for (index, group) in panel.groups.iter().enumerate() {
        let group_left = left + index as f64 * group_width + group_width * 0.15;
        for (series, value) in group.values.iter().enumerate() {
            let Some(value) = value else { continue };
            let x = group_left + series as f64 * bar_width;
            let y = scale(*value);
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                bar_width - 2.0,
                bottom - y,
                COLORS[series % COLORS.len()],
                x + bar_width / 2.0,
                y - 4.0,
                escape(&(panel.format)(*value))
            );
            if let Some(Some((low, high))) = group.ranges.get(series) {
                let center = x + bar_width / 2.0 - 1.0;
                let _ = writeln!(
                    svg,
                    "<line x1=\"{center:.1}\" y1=\"{:.1}\" x2=\"{center:.1}\" y2=\"{:.1}\" \
                     stroke=\"#222\"/>",
                    scale(*low),
                    scale(*high)
                );
            }
        }
        let center = left + (index as f64 + 0.5) * group_width;
        for (line, text) in label_lines(&group.label, group_width).iter().enumerate() {
            let _ = writeln!(
                svg,
                "<text x=\"{center:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 18.0 + 13.0 * line as f64,
                escape(text)
            );
        }
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#222\"/>"
    );

    if panel.series.len() > 1 {
        for (series, name) in panel.series.iter().enumerate() {
            let x = left + series as f64 * 160.0;
            let y = bottom + 48.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
                y - 9.0,
                COLORS[series % COLORS.len()],
                x + 14.0,
                escape(name)
            );
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_rounds_up() {
        assert_eq!(axis(17_300.0), (20_000.0, 5_000.0));
        assert_eq!(axis(940.0), (1_000.0, 200.0));
    }

    #[test]
    fn long_labels_split() {
        assert_eq!(
            label_lines("dynamic_module_cached", 66.0),
            ["dynamic_module", "cached"]
        );
        assert_eq!(label_lines("dynamic_module", 100.0), ["dynamic_module"]);
        assert_eq!(label_lines("passthrough", 10.0), ["passthrough"]);
    }

    #[test]
    fn escape_markup() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
