//! The loss curve, drawn with `plotters` into an SVG document: per-step losses (thin)
//! and per-epoch means (thick, a dot per epoch) against the epoch.
//!
//! Only the SVG backend is compiled (no font or bitmap libraries: text is left to the
//! SVG viewer). A PNG would need plotters' bitmap backend plus a TrueType rasterizer
//! and a font, which is more to build than the plot is worth here.

use plotters::prelude::*;

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the loss curve: {0}")]
pub struct PlotError(String);

fn plot_err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Size of the image in pixels.
const SIZE: (u32, u32) = (720, 420);
const STEP_COLOR: RGBColor = RGBColor(0x9e, 0xca, 0xe1);
const EPOCH_COLOR: RGBColor = RGBColor(0x08, 0x51, 0x9c);

/// `(epoch position, loss)` of every mini-batch: step `i` of `n` in epoch `e` (1-based)
/// sits at `e - 1 + (i + 1) / n`; non-finite losses are left out.
fn step_points(step_losses: &[Vec<f32>]) -> Vec<(f64, f64)> {
    step_losses
        .iter()
        .enumerate()
        .flat_map(|(e, ls)| {
            let n = ls.len().max(1) as f64;
            ls.iter()
                .enumerate()
                .map(move |(i, &l)| (e as f64 + (i + 1) as f64 / n, f64::from(l)))
        })
        .filter(|(_, y)| y.is_finite())
        .collect()
}

/// The SVG document of the training-loss chart.
pub fn loss_curve_svg(step_losses: &[Vec<f32>], epoch_losses: &[f32]) -> Result<String, PlotError> {
    let steps = step_points(step_losses);
    let epochs: Vec<(f64, f64)> = epoch_losses
        .iter()
        .enumerate()
        .map(|(e, &l)| ((e + 1) as f64, f64::from(l)))
        .filter(|(_, y)| y.is_finite())
        .collect();
    let x_max = (epoch_losses.len().max(step_losses.len()) as f64).max(1.0);
    let y_max = steps
        .iter()
        .chain(&epochs)
        .map(|&(_, y)| y)
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Training loss (cross-entropy), UCI digits MLP",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(steps, STEP_COLOR.stroke_width(1)))
            .map_err(plot_err)?
            .label("mini-batch loss")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], STEP_COLOR.stroke_width(3)));
        chart
            .draw_series(LineSeries::new(
                epochs.iter().copied(),
                EPOCH_COLOR.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label("epoch mean")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], EPOCH_COLOR.stroke_width(3)));
        chart
            .draw_series(
                epochs
                    .iter()
                    .map(|&p| Circle::new(p, 3, EPOCH_COLOR.filled())),
            )
            .map_err(plot_err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_svg_with_a_dot_per_epoch() -> Result<(), PlotError> {
        let svg = loss_curve_svg(&[vec![2.3, 1.9], vec![1.0, f32::NAN]], &[2.1, 1.0])?;
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("mini-batch loss") && svg.contains("epoch mean"));
        assert!(!svg.contains("NaN"));
        assert_eq!(
            step_points(&[vec![2.0, 1.0], vec![0.5, f32::NAN]]),
            [(0.5, 2.0), (1.0, 1.0), (1.5, 0.5)]
        );
        let empty = loss_curve_svg(&[], &[])?;
        assert_eq!(empty.matches("<circle").count(), 0);
        Ok(())
    }
}
