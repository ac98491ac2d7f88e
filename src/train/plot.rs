//! A line chart written as SVG by hand (no plotting crate: build time): axes with
//! round-number ticks, one polyline per series, a legend.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// An SVG colour.
    pub color: &'static str,
    /// Stroke width in pixels.
    pub width: f64,
    /// Whether to draw a dot at each point.
    pub markers: bool,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;

/// About `n` round tick values (1, 2 or 5 times a power of ten) covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A complete SVG document plotting `series`; the y axis starts at 0 when all values
/// are non-negative.
pub fn line_chart_svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().filter(finite))
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = pts.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if pts.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if y0 >= 0.0 {
        y0 = 0.0;
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    y1 += (y1 - y0) * 0.05;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * ph;

    let mut s = String::new();
    // writing to a String cannot fail
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    for t in ticks(y0, y1, 6) {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            label(t)
        );
    }
    for t in ticks(x0, x1, 10) {
        let x = sx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 19.0,
            label(t)
        );
    }
    let _ = writeln!(
        s,
        r##"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="#444"/>"##,
        TOP + ph,
        W - RIGHT
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let path: Vec<String> = ser
            .points
            .iter()
            .filter(|p| finite(p))
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"/>"#,
                path.join(" "),
                ser.color,
                ser.width
            );
        }
        if ser.markers {
            for &(x, y) in ser.points.iter().filter(|p| finite(p)) {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                    sx(x),
                    sy(y),
                    ser.color
                );
            }
        }
        let ly = TOP + 14.0 + 18.0 * i as f64;
        let lx = W - RIGHT - 190.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            ser.color,
            lx + 30.0,
            ly + 4.0,
            escape(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The training-loss chart: per-step losses (thin) and per-epoch means (thick, dots),
/// against the epoch (a step `i` of `n` in epoch `e` sits at `e - 1 + (i + 1) / n`).
pub fn loss_curve_svg(step_losses: &[Vec<f32>], epoch_losses: &[f32]) -> String {
    let steps: Vec<(f64, f64)> = step_losses
        .iter()
        .enumerate()
        .flat_map(|(e, ls)| {
            let n = ls.len().max(1) as f64;
            ls.iter()
                .enumerate()
                .map(move |(i, &l)| (e as f64 + (i + 1) as f64 / n, f64::from(l)))
        })
        .collect();
    let epochs: Vec<(f64, f64)> = epoch_losses
        .iter()
        .enumerate()
        .map(|(e, &l)| ((e + 1) as f64, f64::from(l)))
        .collect();
    line_chart_svg(
        "Training loss (cross-entropy), UCI digits MLP",
        "epoch",
        "loss",
        &[
            Series {
                name: "mini-batch loss".into(),
                points: steps,
                color: "#9ecae1",
                width: 1.0,
                markers: false,
            },
            Series {
                name: "epoch mean".into(),
                points: epochs,
                color: "#08519c",
                width: 2.5,
                markers: true,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(
            ticks(1.0, 20.0, 10),
            (1..=10).map(|i| f64::from(i * 2)).collect::<Vec<_>>()
        );
        assert_eq!(label(0.30000000000000004), "0.3");
        assert_eq!(label(2.0), "2");
    }

    #[test]
    fn chart_is_well_formed_svg() {
        let svg = loss_curve_svg(&[vec![2.3, 1.9], vec![1.0, f32::NAN]], &[2.1, 1.0]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("NaN"));
        let empty = line_chart_svg("a < b", "x", "y", &[]);
        assert!(empty.contains("a &lt; b"));
    }
}
