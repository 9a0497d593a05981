//! The report's SVG bar charts and the approval-time distribution they show.

/// Approval-time buckets of the distribution chart: (label, upper bound in hours).
pub const APPROVAL_BUCKETS: &[(&str, f64)] = &[
    ("< 1h", 1.0),
    ("1-4h", 4.0),
    ("4-24h", 24.0),
    ("1-3d", 72.0),
    ("3-7d", 168.0),
    ("> 7d", f64::INFINITY),
];

/// How many approval times fall in each of [`APPROVAL_BUCKETS`].
pub fn approval_histogram(hours: &[f64]) -> Vec<usize> {
    let mut out = vec![0; APPROVAL_BUCKETS.len()];
    for h in hours {
        let i = APPROVAL_BUCKETS
            .iter()
            .position(|(_, max)| h < max)
            .unwrap_or(APPROVAL_BUCKETS.len() - 1);
        out[i] += 1;
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar chart as SVG: one group per label, stacked series with a legend.
pub fn svg_bars(title: &str, labels: &[String], series: &[(&str, &str, Vec<usize>)]) -> String {
    let (w, h, left, bottom, top) = (640.0, 240.0, 40.0, 40.0, 30.0);
    let max = (0..labels.len())
        .map(|i| series.iter().map(|s| s.2[i]).sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_h = h - bottom - top;
    let slot = (w - left - 10.0) / labels.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n<title>{}</title>\n<text x=\"{left}\" y=\"16\" font-size=\"13\">{}</text>\n",
        escape(title),
        escape(title)
    );
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n",
        h - bottom,
        w - 10.0,
        h - bottom,
        left - 4.0,
        top + 4.0,
        left - 4.0,
        h - bottom
    ));
    let every = (labels.len() / 12).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = h - bottom;
        for (name, colour, values) in series {
            let v = values[i];
            if v == 0 {
                continue;
            }
            let bh = v as f64 / max * plot_h;
            y -= bh;
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{}: {v} {name}</title></rect>\n",
                escape(label)
            ));
        }
        if i % every == 0 {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                x + bar / 2.0,
                h - bottom + 14.0,
                escape(label)
            ));
        }
    }
    let mut lx = left;
    for (name, colour, _) in series {
        s.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
            h - 14.0,
            lx + 14.0,
            h - 5.0,
            escape(name)
        ));
        lx += 110.0;
    }
    s.push_str("</svg>");
    s
}
