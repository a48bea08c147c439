//! Just enough of the Prometheus text exposition format for the dashboard to read the
//! AppView's `/metrics`: samples (`name{label="value",...} value [timestamp]`), with
//! comments and blank lines skipped, and histograms (`_bucket{le=...}`, `_sum`, `_count`)
//! with `histogram_quantile`'s interpolation.
//!
//! Written here rather than taken from a crate: no Prometheus parser is in the workspace's
//! lock file, and the dashboard needs about a hundred lines of it. A malformed line is
//! skipped, never an error and never a panic: the dashboard shows what it can read.

/// One sample: a series and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The metric name (`atelier_appview_oauth_errors_total`).
    pub(crate) name: String,
    /// The labels, in the order written, escapes resolved.
    pub(crate) labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses `text`, skipping comments, blank lines and lines it cannot read.
    pub(crate) fn parse(text: &str) -> Metrics {
        Metrics {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Every sample of metric `name`.
    pub(crate) fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Whether any sample of metric `name` is present.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.series(name).next().is_some()
    }

    /// The sum of every sample of metric `name` (`None`: no sample).
    pub(crate) fn sum(&self, name: &str) -> Option<f64> {
        self.series(name).map(|s| s.value).reduce(|a, b| a + b)
    }

    /// The histogram `name` (its `_bucket`, `_sum` and `_count` series), summed over
    /// every label set but `le` (as `sum by (le)` would); `None` when it has no buckets.
    pub(crate) fn histogram(&self, name: &str) -> Option<Histogram> {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for sample in self.series(&bucket_name) {
            let Some(le) = sample.label("le").and_then(parse_value) else {
                continue;
            };
            if le.is_nan() {
                continue;
            }
            match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                Some((_, count)) => *count += sample.value,
                None => buckets.push((le, sample.value)),
            }
        }
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Histogram {
            buckets,
            sum: self.sum(&format!("{name}_sum")).unwrap_or(0.0),
            count: self.sum(&format!("{name}_count")).unwrap_or(0.0),
        })
    }
}

/// A histogram's cumulative buckets, sum and count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    /// (upper bound, cumulative count), by increasing bound; `+Inf` last when present.
    pub(crate) buckets: Vec<(f64, f64)>,
    /// The sum of the observations.
    pub(crate) sum: f64,
    /// The number of observations.
    pub(crate) count: f64,
}

impl Histogram {
    /// The `q`-quantile (0 ≤ q ≤ 1), computed as Prometheus' `histogram_quantile` does:
    /// find the bucket holding the rank `q × count`, then interpolate linearly inside it
    /// (the first bucket starts at 0). A rank in the `+Inf` bucket gives the highest
    /// finite bound. `None` without observations, without a `+Inf` bucket, or for a `q`
    /// outside `[0, 1]`.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let &(last_bound, _) = self.buckets.last()?;
        if last_bound != f64::INFINITY || self.buckets.len() < 2 {
            return None;
        }
        // Counts scraped bucket by bucket may be momentarily out of order: make them
        // monotonic, as Prometheus does.
        let mut buckets = self.buckets.clone();
        let mut max = 0.0_f64;
        for (_, count) in &mut buckets {
            max = max.max(*count);
            *count = max;
        }
        let total = buckets.last().map_or(0.0, |b| b.1);
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        // The first finite bucket reaching the rank, or else the +Inf one.
        let finite = buckets.len() - 1;
        let b = buckets
            .iter()
            .take(finite)
            .position(|(_, count)| *count >= rank)
            .unwrap_or(finite);
        if b == finite {
            return buckets.get(finite - 1).map(|(bound, _)| *bound);
        }
        let (end, count) = buckets.get(b).copied()?;
        let (start, below) = match b.checked_sub(1).and_then(|i| buckets.get(i)) {
            Some(&(bound, count)) => (bound, count),
            None if end <= 0.0 => return Some(end),
            None => (0.0, 0.0),
        };
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(end);
        }
        Some(start + (end - start) * ((rank - below) / in_bucket))
    }
}

/// One line: a sample, or `None` for a comment, a blank or a malformed line.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_len = line
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
        })
        .map_or(line.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, mut rest) = line.split_at(name_len);
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp: nothing else.
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() || !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The labels after `{` up to and including the closing `}`; returns them and the rest.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once('=')?;
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key
                .char_indices()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
        if !valid_key {
            return None;
        }
        let mut chars = rest.trim_start().strip_prefix('"')?.char_indices();
        let quoted = rest.trim_start().get(1..)?;
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        text = quoted.get(end?..)?.trim_start();
        labels.push((key.to_owned(), value));
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return None;
        }
    }
}

/// A sample value or an `le` bound: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }

    #[test]
    fn lines() {
        let cases: &[(&str, Option<Sample>)] = &[
            ("# HELP x Things.", None),
            ("# TYPE x counter", None),
            ("", None),
            ("x 3", Some(sample("x", &[], 3.0))),
            ("x_total 3 1700000000000", Some(sample("x_total", &[], 3.0))),
            ("  x 2.5  ", Some(sample("x", &[], 2.5))),
            (
                "x{kind=\"csrf\"} 7",
                Some(sample("x", &[("kind", "csrf")], 7.0)),
            ),
            (
                "x{a=\"1\", b = \"two words\",} 1e3",
                Some(sample("x", &[("a", "1"), ("b", "two words")], 1000.0)),
            ),
            (
                r#"x{q="say \"hi\"\n",p="a\\b"} 1"#,
                Some(sample("x", &[("q", "say \"hi\"\n"), ("p", "a\\b")], 1.0)),
            ),
            (
                "x_bucket{le=\"+Inf\"} 4",
                Some(sample("x_bucket", &[("le", "+Inf")], 4.0)),
            ),
            ("x{} 1", Some(sample("x", &[], 1.0))),
            ("x +Inf", Some(sample("x", &[], f64::INFINITY))),
            // Malformed: skipped.
            ("x", None),
            ("x{a=\"1\" 1", None),
            ("x{a=1} 1", None),
            ("x{=\"1\"} 1", None),
            ("x{a=\"1\"b=\"2\"} 1", None),
            ("x{a=\"unterminated} 1", None),
            ("x one", None),
            ("x 1 2 3", None),
            ("x 1 soon", None),
            ("x1{a=\"1\"}1", None),
            ("1x 1", None),
            ("{a=\"1\"} 1", None),
            ("x{a=\"\\", None),
            ("x{a=\"é\"} 1", Some(sample("x", &[("a", "é")], 1.0))),
        ];
        for (line, want) in cases {
            let got = parse_line(line);
            assert_eq!(got.as_ref(), want.as_ref(), "{line:?}");
        }
    }

    #[test]
    fn sums_and_series() {
        let m = Metrics::parse(
            "# TYPE e counter\n\
             e{kind=\"a\"} 2\n\
             e{kind=\"b\"} 3\n\
             garbage line here\n\
             f 1\n",
        );
        assert_eq!(m.sum("e"), Some(5.0));
        assert_eq!(m.sum("f"), Some(1.0));
        assert_eq!(m.sum("g"), None);
        assert!(m.has("f") && !m.has("g"));
        let kinds: Vec<_> = m.series("e").filter_map(|s| s.label("kind")).collect();
        assert_eq!(kinds, ["a", "b"]);
    }

    /// le=0.1: 2, 0.5: 6, 1: 9, +Inf: 10 (so 2, 4, 3 and 1 observations per bucket).
    const HISTOGRAM: &str = "\
h_seconds_bucket{le=\"0.1\"} 2
h_seconds_bucket{le=\"0.5\"} 6
h_seconds_bucket{le=\"1\"} 9
h_seconds_bucket{le=\"+Inf\"} 10
h_seconds_sum 7.5
h_seconds_count 10
";

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Metrics::parse(HISTOGRAM)
            .histogram("h_seconds")
            .expect("a histogram");
        assert_eq!(h.count, 10.0);
        assert_eq!(h.sum, 7.5);
        // Worked by hand, as histogram_quantile does:
        // q=0.5: rank 5, in (0.1, 0.5] holding 4 from 2: 0.1 + 0.4 × (5-2)/4 = 0.4.
        // q=0.9: rank 9, in (0.5, 1] holding 3 from 6: 0.5 + 0.5 × (9-6)/3 = 1.
        // q=0.1: rank 1, in (0, 0.1] holding 2: 0.1 × 1/2 = 0.05.
        // q=0.8: rank 8, in (0.5, 1]: 0.5 + 0.5 × 2/3 = 0.8333...
        // q=0.99: rank 9.9, in +Inf: the highest finite bound, 1.
        let cases = [
            (0.5, Some(0.4)),
            (0.9, Some(1.0)),
            (0.1, Some(0.05)),
            (0.8, Some(0.5 + 0.5 * 2.0 / 3.0)),
            (0.99, Some(1.0)),
            (0.0, Some(0.0)),
            (1.5, None),
            (-0.1, None),
        ];
        for (q, want) in cases {
            let got = h.quantile(q);
            match (got, want) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 1e-9, "q={q}: {got}"),
                _ => assert_eq!(got, want, "q={q}"),
            }
        }
    }

    #[test]
    fn histograms_sum_label_sets_and_refuse_what_cannot_be_computed() {
        let m = Metrics::parse(
            "p_bucket{kind=\"a\",le=\"1\"} 1\n\
             p_bucket{kind=\"a\",le=\"+Inf\"} 1\n\
             p_bucket{kind=\"b\",le=\"1\"} 0\n\
             p_bucket{kind=\"b\",le=\"+Inf\"} 3\n\
             p_count{kind=\"a\"} 1\n\
             p_count{kind=\"b\"} 3\n\
             empty_bucket{le=\"1\"} 0\n\
             empty_bucket{le=\"+Inf\"} 0\n\
             noinf_bucket{le=\"1\"} 4\n",
        );
        let p = m.histogram("p").expect("p");
        assert_eq!(p.buckets, [(1.0, 1.0), (f64::INFINITY, 4.0)]);
        assert_eq!(p.count, 4.0);
        assert_eq!(p.quantile(0.5), Some(1.0), "rank 2 is in +Inf");
        assert_eq!(m.histogram("empty").and_then(|h| h.quantile(0.5)), None);
        assert_eq!(m.histogram("noinf").and_then(|h| h.quantile(0.5)), None);
        assert_eq!(m.histogram("absent"), None);
        // Out of order counts are made monotonic rather than giving nonsense.
        let odd = Histogram {
            buckets: vec![(1.0, 5.0), (2.0, 3.0), (f64::INFINITY, 6.0)],
            sum: 0.0,
            count: 6.0,
        };
        assert_eq!(odd.quantile(0.5), Some(0.6));
    }
}
