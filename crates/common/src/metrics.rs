//! Request metrics, rendered in the Prometheus text format at `/metrics`.
//!
//! Keyed by the *matched route* (`/storage/objects/{*key}`), never the raw
//! path, so the series count stays bounded whatever keys clients use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    route: String,
    method: String,
    status: u16,
}

/// Shared metrics registry. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<BTreeMap<Key, Series>>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let key = Key {
            route: route.to_string(),
            method: method.to_string(),
            status,
        };
        let slot = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        let mut map = self.inner.lock();
        let s = map.entry(key).or_default();
        s.count += 1;
        s.sum_seconds += seconds;
        s.buckets[slot] += 1;
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        // Copy out under the lock, format outside it.
        let snapshot: Vec<(Key, Series)> = self
            .inner
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = String::new();
        out.push_str("# HELP lakehouse_http_requests_total HTTP requests served, by route, method and status.\n");
        out.push_str("# TYPE lakehouse_http_requests_total counter\n");
        for (k, s) in &snapshot {
            let _ = writeln!(
                out,
                "lakehouse_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}",
                escape(&k.route),
                k.method,
                k.status,
                s.count
            );
        }
        out.push_str("# HELP lakehouse_http_request_duration_seconds Time to response headers, by route, method and status.\n");
        out.push_str("# TYPE lakehouse_http_request_duration_seconds histogram\n");
        for (k, s) in &snapshot {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{}\"",
                escape(&k.route),
                k.method,
                k.status
            );
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(
                    out,
                    "lakehouse_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[BUCKETS.len()];
            let _ = writeln!(
                out,
                "lakehouse_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "lakehouse_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "lakehouse_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

/// Merges the expositions of several services into one, adding a
/// `service="…"` label to every sample and keeping each metric family's lines
/// together (the text format requires one HELP/TYPE block per family).
pub fn merge_expositions(parts: &[(String, String)]) -> String {
    // family name -> (HELP/TYPE lines, samples); BTreeMap for stable output.
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (service, text) in parts {
        let mut current = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                current = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let fam = families.entry(current.clone()).or_default();
                if !fam.0.iter().any(|l| l == line) {
                    fam.0.push(line.to_string());
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            let family = if !current.is_empty() && name.starts_with(current.as_str()) {
                current.clone()
            } else {
                name.to_string()
            };
            let label = format!("service=\"{}\"", escape(service));
            let sample = match line[name_end..].strip_prefix('{') {
                Some(rest) if rest.starts_with('}') => format!("{name}{{{label}{rest}"),
                Some(rest) => format!("{name}{{{label},{rest}"),
                None => format!("{name}{{{label}}}{}", &line[name_end..]),
            };
            families.entry(family).or_default().1.push(sample);
        }
    }
    let mut out = String::new();
    for (_, (meta, samples)) in families {
        for l in meta.iter().chain(&samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// axum middleware recording every request against its matched route.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    metrics.record(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::new();
        m.record("GET", "/storage/objects/{*key}", 200, 0.002);
        m.record("GET", "/storage/objects/{*key}", 200, 2.0);
        m.record("PUT", "/storage/objects/{*key}", 412, 0.0001);
        let text = m.render();
        assert!(text.contains(
            "lakehouse_http_requests_total{route=\"/storage/objects/{*key}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "lakehouse_http_request_duration_seconds_bucket{route=\"/storage/objects/{*key}\",method=\"GET\",status=\"200\",le=\"0.0025\"} 1"
        ));
        assert!(text.contains(
            "lakehouse_http_request_duration_seconds_bucket{route=\"/storage/objects/{*key}\",method=\"GET\",status=\"200\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("status=\"412\"} 1"));
    }

    #[test]
    fn merging_labels_samples_and_groups_families() {
        let a = Metrics::new();
        a.record("GET", "/a", 200, 0.01);
        let b = Metrics::new();
        b.record("POST", "/b", 201, 0.01);
        let text = merge_expositions(&[
            ("gateway".to_string(), a.render()),
            ("queryd".to_string(), b.render()),
            ("odd".to_string(), "up 1\n".to_string()),
        ]);
        assert!(text.contains(
            "lakehouse_http_requests_total{service=\"gateway\",route=\"/a\",method=\"GET\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("lakehouse_http_requests_total{service=\"queryd\",route=\"/b\""));
        assert!(text.contains("up{service=\"odd\"} 1"));
        // One TYPE line per family, and every sample of a family after it.
        assert_eq!(
            text.matches("# TYPE lakehouse_http_requests_total").count(),
            1
        );
        assert_eq!(
            text.matches("# TYPE lakehouse_http_request_duration_seconds ")
                .count(),
            1
        );
        // Each family's lines are contiguous: its samples never interleave.
        let lines: Vec<&str> = text.lines().collect();
        for fam in [
            "lakehouse_http_requests_total",
            "lakehouse_http_request_duration_seconds_",
        ] {
            let at: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].starts_with(fam))
                .collect();
            assert!(at.len() >= 2, "{fam}");
            assert_eq!(
                at.last().unwrap() - at[0] + 1,
                at.len(),
                "{fam} interleaved:\n{text}"
            );
        }
    }
}
