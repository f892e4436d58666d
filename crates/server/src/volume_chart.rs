//! The connector's hourly volume as an SVG chart, drawn on the server: items read per hour over
//! the last two weeks, the usual band for each hour of the day (median to 90th percentile of
//! the hours outside the alert), and the alert window shaded.

use chrono::{DateTime, Timelike, Utc};
use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the chart; `window` is the alert's first and last event.
pub fn render(
    title: &str,
    hourly: &[(DateTime<Utc>, u64)],
    window: (DateTime<Utc>, DateTime<Utc>),
) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}"><style>text{{font:11px sans-serif;fill:#5c6370}}</style>"#,
        escape(title)
    );
    if hourly.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="{}">no volume recorded for this connector</text></svg>"#,
            H / 2.0
        );
        return svg;
    }
    let t0 = hourly[0].0.timestamp() as f64;
    let t1 = (hourly[hourly.len() - 1].0.timestamp() + 3600) as f64;
    let span = (t1 - t0).max(3600.0);
    let in_window = |t: DateTime<Utc>| t + chrono::Duration::hours(1) > window.0 && t <= window.1;
    // The usual band per hour of day, from the hours outside the alert.
    let mut by_hour: Vec<Vec<f64>> = vec![Vec::new(); 24];
    for &(t, n) in hourly.iter().filter(|(t, _)| !in_window(*t)) {
        by_hour[t.hour() as usize].push(n as f64);
    }
    let band: Vec<(f64, f64)> = by_hour
        .into_iter()
        .map(|v| (quantile(v.clone(), 0.5), quantile(v, 0.9)))
        .collect();
    let ymax = hourly
        .iter()
        .map(|&(_, n)| n as f64)
        .chain(band.iter().map(|b| b.1))
        .fold(1.0, f64::max)
        * 1.1;
    let x = |t: f64| LEFT + (t - t0) / span * (W - LEFT - 8.0);
    let y = |v: f64| H - BOTTOM - v / ymax * (H - BOTTOM - TOP);
    // Alert window.
    let (wx0, wx1) = (
        x(window.0.timestamp() as f64).max(LEFT),
        x(window.1.timestamp() as f64 + 3600.0).min(W - 8.0),
    );
    if wx1 > wx0 {
        let _ = write!(
            svg,
            r##"<rect x="{wx0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#e03131" fill-opacity="0.15"><title>alert window</title></rect>"##,
            (wx1 - wx0).max(2.0),
            H - BOTTOM - TOP
        );
    }
    // Usual band (median to p90 for the hour of day), as a polygon over time.
    let mut upper = String::new();
    let mut lower = Vec::new();
    for &(t, _) in hourly {
        let (med, p90) = band[t.hour() as usize];
        let xt = x(t.timestamp() as f64 + 1800.0);
        let _ = write!(upper, "{xt:.1},{:.1} ", y(p90));
        lower.push(format!("{xt:.1},{:.1}", y(med)));
    }
    lower.reverse();
    let _ = write!(
        svg,
        r##"<polygon points="{upper}{}" fill="#4263eb" fill-opacity="0.18"><title>usual: median to 90th percentile for the hour</title></polygon>"##,
        lower.join(" ")
    );
    // Volume line.
    let points: Vec<String> = hourly
        .iter()
        .map(|&(t, n)| format!("{:.1},{:.1}", x(t.timestamp() as f64 + 1800.0), y(n as f64)))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#1d2330" stroke-width="1.2"/>"##,
        points.join(" ")
    );
    // Axes and labels.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#adb5bd"/>"##,
        H - BOTTOM,
        W - 8.0
    );
    let _ = write!(
        svg,
        r#"<text x="4" y="{:.1}">{:.0}</text><text x="4" y="{:.1}">0</text>"#,
        TOP + 10.0,
        ymax / 1.1,
        H - BOTTOM
    );
    let mut day = hourly[0].0.date_naive();
    let last = hourly[hourly.len() - 1].0.date_naive();
    while day <= last {
        let t = day
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp() as f64;
        if t >= t0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                x(t),
                H - 6.0,
                day.format("%m-%d")
            );
        }
        day = day.succ_opt().expect("next day");
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{TOP}">items read per hour (UTC)</text></svg>"#,
        W - 170.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn draws_line_band_and_window() {
        let start = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        let hourly: Vec<_> = (0..72)
            .map(|h| {
                (
                    start + chrono::Duration::hours(h),
                    if h == 50 { 900 } else { 20 },
                )
            })
            .collect();
        let w = (
            start + chrono::Duration::hours(50),
            start + chrono::Duration::hours(50),
        );
        let svg = render("backup <sync>", &hourly, w);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains("<polyline") && svg.contains("<polygon") && svg.contains("alert window")
        );
        assert!(svg.contains("backup &lt;sync&gt;"));
        assert!(svg.contains(">03-02<"));
        assert!(render("x", &[], w).contains("no volume"));
    }
}
