//! PNG plots of scaling curves, drawn with plotters and the DejaVu Sans font
//! (Debian package `fonts-dejavu-core`).

use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)")).and_then(
            |bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{FONT}: not a font"))
            },
        );
    });
    result
}

/// One line of a plot: a label and its (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// A tick label for a time in milliseconds: no more digits than the scale needs.
fn ms_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draw `series` (points in µs) against a logarithmic x axis (the scale) and a logarithmic
/// y axis in milliseconds into a PNG at `path`. Tick labels are few and plain numbers, so
/// they neither crowd nor overlap.
pub fn scaling(path: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<(), String> {
    register_font()?;
    let series: Vec<Series> =
        series.iter().map(|(l, p)| (l.clone(), p.iter().map(|&(x, y)| (x, y / 1000.0)).collect())).collect();
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::MAX, 0.0f64);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if y_min == f64::MAX {
        return Err(format!("{title}: nothing to plot"));
    }
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0f64..x_max * 1.2).log_scale(), (y_min * 0.7..y_max * 1.4).log_scale().base(2.0))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("{x_label} (log scale)"))
        .y_desc("median, ms (log scale)")
        .x_labels(5)
        .y_labels(8)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| ms_label(*v))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        let path = std::env::temp_dir().join(format!("wharf-plot-{}.png", std::process::id()));
        let series = vec![
            ("a".to_string(), vec![(1.0, 100.0), (10.0, 110.0), (1000.0, 130.0)]),
            ("b".to_string(), vec![(1.0, 1000.0), (1000.0, 9000.0)]),
            ("c".to_string(), vec![(1.0, 80000.0), (10.0, 90000.0), (100.0, 120000.0), (1000.0, 330000.0)]),
        ];
        scaling(&path, "test", "endpoints", &series).unwrap();
        let png = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 5000, "a real picture, not an empty frame: {} bytes", png.len());
        assert!(scaling(&path, "empty", "x", &[]).is_err());
    }
}
