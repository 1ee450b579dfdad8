//! Line charts written to PNG or SVG (by the file's extension): one or more panels side by
//! side (or in a grid of [`Figure::in_columns`]), each with named series, axis labels, a
//! legend, an optional logarithmic y axis and optional names for whole x values (dates).
//! `recur plot` draws training curves with it; anything else that draws a curve (a forecast
//! beside its history and truth) builds a [`Figure`] the same way.
//!
//! Text is laid out with the DejaVu Sans font embedded in the binary, so no system font or C
//! library is needed; PNGs draw it, SVGs name a sans-serif font and leave the glyphs to the
//! viewer.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;

/// Pixels of one panel.
pub const PANEL_WIDTH: u32 = 640;
pub const PANEL_HEIGHT: u32 = 440;

/// The colours of series by index (Tableau 10, which stays readable for most colour
/// vision deficiencies); more series cycle through them.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// How a series' line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Solid,
    Dashed,
}

/// One named curve: its points in x order, a colour index into the palette, a line style
/// and whether each point is marked.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: usize,
    pub line: Line,
    pub markers: bool,
}

impl Series {
    /// A solid line without markers, in palette colour `color`.
    pub fn new(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            color,
            line: Line::Solid,
            markers: false,
        }
    }

    pub fn dashed(mut self) -> Self {
        self.line = Line::Dashed;
        self
    }

    pub fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }
}

/// One chart: title, axis labels, whether y is logarithmic, its series.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// names of whole x values: the tick at x = i reads `x_names[i]` (e.g. the time column's
    /// dates for row indices); empty: ticks show the numbers
    pub x_names: Vec<String>,
    /// the legend in the upper left corner (where a rising curve leaves room) instead of
    /// the upper right
    pub legend_left: bool,
}

impl Panel {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Self::default()
        }
    }

    /// The panel's finite points (and, on a log axis, positive ones): non-finite values from a
    /// diverged run are left out rather than stretching the axes to infinity.
    fn drawable(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let log_y = self.log_y;
        self.series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(move |&(x, y)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0))
    }

    /// The x and y ranges of the drawable points, widened a little (and away from a single
    /// value); `None` when there is nothing to draw.
    fn ranges(&self) -> Option<((f64, f64), (f64, f64))> {
        let mut pts = self.drawable().peekable();
        pts.peek()?;
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x1 <= x0 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        if self.log_y {
            (y0, y1) = if y1 <= y0 {
                (y0 / 2.0, y1 * 2.0)
            } else {
                (y0 / 1.1, y1 * 1.1)
            };
        } else {
            let pad = if y1 > y0 {
                0.05 * (y1 - y0)
            } else {
                0.5 * y0.abs().max(1.0)
            };
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        Some(((x0, x1), (y0, y1)))
    }
}

/// Panels drawn side by side, or row by row in a grid of `columns`.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    pub panels: Vec<Panel>,
    /// panels per row (0: all in one row)
    pub columns: usize,
}

/// The output format an extension names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

/// Checks that `path` names a format a figure is written in (`.png`, `.svg`), before any
/// work is done for it.
pub fn check_extension(path: &Path) -> Result<()> {
    format_of(path).map(|_| ())
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => bail!(
            "{}: the picture's format follows its extension, .png or .svg",
            path.display()
        ),
    }
}

/// Registers the embedded font once (plotters' bitmap text needs one registered).
fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .map_err(|_| anyhow!("the embedded DejaVu Sans font did not load"));
    });
    result
}

impl Figure {
    pub fn new(panels: Vec<Panel>) -> Self {
        Self { panels, columns: 0 }
    }

    /// The panels in rows of `columns` (the last row may be shorter).
    pub fn in_columns(mut self, columns: usize) -> Self {
        self.columns = columns;
        self
    }

    /// `(columns, rows)` of the grid.
    fn grid(&self) -> (usize, usize) {
        let n = self.panels.len();
        let cols = if self.columns == 0 {
            n
        } else {
            self.columns.min(n)
        }
        .max(1);
        (cols, n.div_ceil(cols).max(1))
    }

    /// Writes the figure to `path`, PNG or SVG by its extension.
    pub fn save(&self, path: &Path) -> Result<()> {
        let format = format_of(path)?;
        if self.panels.is_empty() {
            bail!("nothing to draw");
        }
        let (cols, rows) = self.grid();
        let size = (PANEL_WIDTH * cols as u32, PANEL_HEIGHT * rows as u32);
        let name = path.display();
        // both backends measure text with the registered font
        register_font()?;
        match format {
            Format::Png => {
                let root = BitMapBackend::new(path, size).into_drawing_area();
                self.draw(&root)?;
                root.present().with_context(|| format!("{name}"))?;
            }
            Format::Svg => {
                let root = SVGBackend::new(path, size).into_drawing_area();
                self.draw(&root)?;
                root.present().with_context(|| format!("{name}"))?;
            }
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(plot_error)?;
        let (cols, rows) = self.grid();
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in self.panels.iter().zip(&areas) {
            draw_panel(panel, area)?;
        }
        Ok(())
    }
}

/// A heat map: one value per cell of a grid of columns (x) by rows (y), coloured by log10 of
/// the value (viridis, the smallest positive value dark, the largest light); values that are
/// not positive and finite are left white. A colour bar beside it reads the colours back.
#[derive(Clone, Debug, Default)]
pub struct HeatMap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// each column's x (in order, evenly spaced)
    pub xs: Vec<f64>,
    /// each row's y (in order, evenly spaced, drawn bottom to top)
    pub ys: Vec<f64>,
    /// `[ys.len(), xs.len()]`, row by row
    pub values: Vec<f64>,
}

/// Pixels of a heat map's colour bar.
const COLOUR_BAR_WIDTH: u32 = 96;

impl HeatMap {
    /// log10 of the smallest and largest drawable values, apart; `None` when there are none.
    fn log_range(&self) -> Option<(f64, f64)> {
        let logs = self
            .values
            .iter()
            .filter(|v| v.is_finite() && **v > 0.0)
            .map(|v| v.log10());
        let (lo, hi) = logs.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let widened = if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, hi + 0.5)
        };
        (lo <= hi).then_some(widened)
    }

    /// Writes the heat map with `beside` (line charts) to its right, to `path` (PNG or SVG by
    /// its extension).
    pub fn save_beside(&self, beside: &[Panel], path: &Path) -> Result<()> {
        let format = format_of(path)?;
        if self.xs.is_empty()
            || self.ys.is_empty()
            || self.values.len() != self.xs.len() * self.ys.len()
        {
            bail!(
                "a heat map of {} × {} cells has {} values",
                self.ys.len(),
                self.xs.len(),
                self.values.len()
            );
        }
        let width = PANEL_WIDTH * (1 + beside.len() as u32) + COLOUR_BAR_WIDTH;
        let size = (width, PANEL_HEIGHT);
        register_font()?;
        let name = path.display();
        match format {
            Format::Png => {
                let root = BitMapBackend::new(path, size).into_drawing_area();
                self.draw(beside, &root)?;
                root.present().with_context(|| format!("{name}"))?;
            }
            Format::Svg => {
                let root = SVGBackend::new(path, size).into_drawing_area();
                self.draw(beside, &root)?;
                root.present().with_context(|| format!("{name}"))?;
            }
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(
        &self,
        beside: &[Panel],
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(plot_error)?;
        let (heat, rest) = root.split_horizontally(PANEL_WIDTH + COLOUR_BAR_WIDTH);
        let (cells, bar) = heat.split_horizontally(PANEL_WIDTH);
        let Some((lo, hi)) = self.log_range() else {
            cells
                .titled(
                    &format!("{}: no positive values", self.title),
                    ("sans-serif", 18),
                )
                .map_err(plot_error)?;
            return Ok(());
        };
        let colour = |v: f64| -> RGBColor {
            if v.is_finite() && v > 0.0 {
                ViridisRGB.get_color_normalized(v.log10(), lo, hi)
            } else {
                WHITE
            }
        };
        // each cell centred on its column's x and its row's y
        let spacing = |v: &[f64]| match v {
            [first, .., last] if last > first => (last - first) / (v.len() - 1) as f64,
            _ => 1.0,
        };
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let (dx, dy) = (spacing(&self.xs), spacing(&self.ys));
        let (x0, x1) = (self.xs[0] - dx / 2.0, self.xs[nx - 1] + dx / 2.0);
        let (y0, y1) = (self.ys[0] - dy / 2.0, self.ys[ny - 1] + dy / 2.0);
        let mut chart = ChartBuilder::on(&cells)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&|x| tick(*x))
            .y_label_formatter(&|y| tick(*y))
            .draw()
            .map_err(plot_error)?;
        let rects = self.values.iter().enumerate().map(|(k, &v)| {
            let (x, y) = (self.xs[k % nx], self.ys[k / nx]);
            let corners = [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)];
            Rectangle::new(corners, colour(v).filled())
        });
        chart.draw_series(rects).map_err(plot_error)?;
        // the colour bar: log10 of the value up the side, its ticks labelled with the value
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(44)
            .margin_bottom(52)
            .margin_right(8)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, lo..hi)
            .map_err(plot_error)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_style(("sans-serif", 13))
            .y_label_formatter(&|y| tick(10f64.powf(*y)))
            .draw()
            .map_err(plot_error)?;
        let steps = 64;
        let strip = (0..steps).map(|k| {
            let (a, b) = (
                lo + (hi - lo) * k as f64 / steps as f64,
                lo + (hi - lo) * (k + 1) as f64 / steps as f64,
            );
            let c: RGBColor = ViridisRGB.get_color_normalized((a + b) / 2.0, lo, hi);
            Rectangle::new([(0.0, a), (1.0, b)], c.filled())
        });
        scale.draw_series(strip).map_err(plot_error)?;
        let areas = rest.split_evenly((1, beside.len().max(1)));
        for (panel, area) in beside.iter().zip(&areas) {
            draw_panel(panel, area)?;
        }
        Ok(())
    }
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let Some(((x0, x1), (y0, y1))) = panel.ranges() else {
        area.titled(
            &format!("{}: no finite values", panel.title),
            ("sans-serif", 18),
        )
        .map_err(plot_error)?;
        return Ok(());
    };
    // a log axis is a linear one over log10 y, its ticks labelled with y
    let (y0, y1) = if panel.log_y {
        (y0.log10(), y1.log10())
    } else {
        (y0, y1)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_error)?;
    let log_y = panel.log_y;
    // whole numbers on the x axis (epochs, steps) get whole-number ticks
    let whole = panel.drawable().all(|(x, _)| x.fract() == 0.0);
    let x_ticks = if whole {
        ((x1 - x0).ceil() as usize + 1).min(if panel.x_names.is_empty() { 10 } else { 6 })
    } else {
        10
    };
    // a named x axis labels whole values by name, and nothing between them
    let x_name = |x: f64| -> String {
        let i = x.round();
        if (x - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        panel.x_names.get(i as usize).cloned().unwrap_or_default()
    };
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_labels(x_ticks)
        .x_label_formatter(&|x| {
            if panel.x_names.is_empty() {
                tick(*x)
            } else {
                x_name(*x)
            }
        })
        .y_label_formatter(&|y| tick(if log_y { 10f64.powf(*y) } else { *y }))
        .max_light_lines(4)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_error)?;
    let to_y = |y: f64| if log_y { y.log10() } else { y };
    for s in &panel.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let style = color.stroke_width(2);
        // a break in the line where a value cannot be drawn
        let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![]];
        for &(x, y) in &s.points {
            if x.is_finite() && y.is_finite() && (!log_y || y > 0.0) {
                runs.last_mut()
                    .expect("one run at least")
                    .push((x, to_y(y)));
            } else if !runs.last().expect("one run at least").is_empty() {
                runs.push(vec![]);
            }
        }
        let mut labelled = false;
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            let drawn = match s.line {
                Line::Solid => chart
                    .draw_series(LineSeries::new(run.iter().copied(), style))
                    .map_err(plot_error)?,
                Line::Dashed => chart
                    .draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))
                    .map_err(plot_error)?,
            };
            if !labelled {
                let line = s.line;
                // a dashed series' legend shows two dashes
                drawn.label(s.name.as_str()).legend(move |(x, y)| {
                    let segment = |a: i32, b: i32| {
                        PathElement::new(vec![(a, 0), (b, 0)], color.stroke_width(2))
                    };
                    let (first, second) = match line {
                        Line::Solid => ((0, 12), (12, 24)),
                        Line::Dashed => ((0, 9), (15, 24)),
                    };
                    EmptyElement::at((x, y))
                        + segment(first.0, first.1)
                        + segment(second.0, second.1)
                });
                labelled = true;
            }
            if s.markers {
                chart
                    .draw_series(run.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(plot_error)?;
            }
        }
    }
    if panel.series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 14))
            .position(if panel.legend_left {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::UpperRight
            })
            .draw()
            .map_err(plot_error)?;
    }
    Ok(())
}

/// A tick label: three significant digits, without trailing zeros.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = if a == 0.0 {
        0
    } else {
        (2 - a.log10().floor() as i32).max(0) as usize
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(1.41254), "1.41");
        assert_eq!(tick(0.0123456), "0.0123");
        assert_eq!(tick(0.0001234), "1.2e-4");
        assert_eq!(tick(123456.0), "1.2e5");
    }

    #[test]
    fn ranges_skip_non_finite_and_widen_single_values() {
        let mut p = Panel::new("t", "x", "y");
        p.series
            .push(Series::new("a", 0, vec![(1.0, 2.0), (2.0, f64::NAN)]));
        let ((x0, x1), (y0, y1)) = p.ranges().unwrap();
        assert!(x0 < 1.0 && x1 > 1.0 && y0 < 2.0 && y1 > 2.0);
        p.log_y = true;
        p.series[0].points = vec![(1.0, -1.0)];
        assert!(p.ranges().is_none());
    }

    #[test]
    fn grids_hold_every_panel() {
        let f = |n: usize, c: usize| Figure::new(vec![Panel::default(); n]).in_columns(c).grid();
        assert_eq!(f(1, 0), (1, 1));
        assert_eq!(f(4, 0), (4, 1));
        assert_eq!(f(4, 3), (3, 2));
        assert_eq!(f(6, 3), (3, 2));
        assert_eq!(f(2, 3), (2, 1));
    }

    #[test]
    fn heat_map_colours_span_the_positive_values() {
        let mut h = HeatMap {
            xs: vec![0.0, 1.0],
            ys: vec![0.0],
            values: vec![1e-8, 1e-2],
            ..HeatMap::default()
        };
        assert_eq!(h.log_range(), Some((-8.0, -2.0)));
        h.values = vec![0.0, f64::NAN];
        assert_eq!(h.log_range(), None);
        h.values = vec![0.0, 10.0];
        assert_eq!(h.log_range(), Some((0.5, 1.5)));
    }

    #[test]
    fn extension_picks_the_format() {
        assert_eq!(format_of(Path::new("a.PNG")).unwrap(), Format::Png);
        assert_eq!(format_of(Path::new("a.svg")).unwrap(), Format::Svg);
        assert!(format_of(Path::new("a.pdf")).is_err());
        assert!(format_of(Path::new("a")).is_err());
    }
}
