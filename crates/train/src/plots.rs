//! SVG plots for the evaluation report (plotters' SVG backend: text stays text, no fonts or
//! system libraries needed).

use crate::TrainError;
use plotters::prelude::*;
use std::path::Path;

/// Line colours, one per series in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

/// A named series of points.
pub struct Series {
    /// Legend.
    pub name: String,
    /// Points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// Axes of a chart.
pub struct Axes<'a> {
    /// Caption.
    pub title: &'a str,
    /// X axis description.
    pub x: &'a str,
    /// Y axis description.
    pub y: &'a str,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
}

fn plot_error(path: &Path) -> impl Fn(String) -> TrainError + '_ {
    move |why| TrainError::Plot {
        path: path.to_owned(),
        why,
    }
}

/// Draws `series` as lines into an SVG at `path`.
pub fn lines(path: &Path, axes: &Axes<'_>, series: &[Series]) -> Result<(), TrainError> {
    let err = plot_error(path);
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (x0, x1) = axes.x_range;
    let (y0, y1) = axes.y_range;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// The share of each sample per bin of `range`, as a step line (so samples of very different
/// sizes compare); values outside the range land in the end bins.
pub fn distribution(values: &[f64], range: (f64, f64), bins: usize) -> Vec<(f64, f64)> {
    let bins = bins.max(1);
    let width = (range.1 - range.0) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values {
        let b = (((v - range.0) / width).floor().max(0.0) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let n = values.len().max(1) as f64;
    let mut points = Vec::with_capacity(bins * 2);
    for (b, c) in counts.iter().enumerate() {
        let share = *c as f64 / n;
        points.push((range.0 + b as f64 * width, share));
        points.push((range.0 + (b + 1) as f64 * width, share));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        lines(
            &path,
            &Axes {
                title: "precision-recall: low and slow",
                x: "recall",
                y: "precision",
                x_range: (0.0, 1.0),
                y_range: (0.0, 1.05),
            },
            &[Series {
                name: "detector".into(),
                points: vec![(0.0, 1.0), (0.5, 0.8), (1.0, 0.2)],
            }],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("low and slow") && svg.contains("detector"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
    }

    #[test]
    fn distributions_are_shares_that_sum_to_one() {
        let d = distribution(&[0.0, 0.5, 1.0, 9.0, 100.0], (0.0, 10.0), 10);
        let total: f64 = d.iter().step_by(2).map(|p| p.1).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(d.len(), 20);
        assert!((d[0].1 - 0.4).abs() < 1e-12, "0.0 and 0.5 in the first bin");
        assert!(
            (d[18].1 - 0.4).abs() < 1e-12,
            "9.0 and the clamped 100.0 in the last"
        );
    }
}
