//! Request counters and a latency histogram per route, exposed in Prometheus' text
//! format (`GET /metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

#[derive(Default)]
struct Route {
    /// status code -> count
    status: BTreeMap<u16, u64>,
    /// cumulative counts per bucket of [`BUCKETS`]
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
}

impl Metrics {
    /// Records one answered request.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().expect("metrics lock");
        let r = routes.entry(route.to_string()).or_default();
        *r.status.entry(status).or_default() += 1;
        for (b, le) in r.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *b += 1;
            }
        }
        r.sum += seconds;
        r.count += 1;
    }

    /// The Prometheus text exposition, with `gauges` (name, help, value) appended.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let routes = self.routes.lock().expect("metrics lock");
        let mut s = String::new();
        s.push_str("# HELP darec_requests_total Requests answered, by route and status.\n");
        s.push_str("# TYPE darec_requests_total counter\n");
        for (name, r) in routes.iter() {
            for (status, n) in &r.status {
                s.push_str(&format!(
                    "darec_requests_total{{route=\"{name}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        s.push_str("# HELP darec_request_duration_seconds Time to answer a request.\n");
        s.push_str("# TYPE darec_request_duration_seconds histogram\n");
        for (name, r) in routes.iter() {
            for (b, le) in r.buckets.iter().zip(BUCKETS) {
                s.push_str(&format!(
                    "darec_request_duration_seconds_bucket{{route=\"{name}\",le=\"{le}\"}} {b}\n"
                ));
            }
            s.push_str(&format!(
                "darec_request_duration_seconds_bucket{{route=\"{name}\",le=\"+Inf\"}} {}\n",
                r.count
            ));
            s.push_str(&format!(
                "darec_request_duration_seconds_sum{{route=\"{name}\"}} {}\n",
                r.sum
            ));
            s.push_str(&format!(
                "darec_request_duration_seconds_count{{route=\"{name}\"}} {}\n",
                r.count
            ));
        }
        for (name, help, v) in gauges {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("/recommend", 200, 0.0003);
        m.observe("/recommend", 200, 0.003);
        m.observe("/recommend", 404, 5.0);
        let t = m.render(&[("darec_items", "Items.", 7.0)]);
        assert!(t.contains("darec_requests_total{route=\"/recommend\",status=\"200\"} 2"));
        assert!(t.contains("darec_requests_total{route=\"/recommend\",status=\"404\"} 1"));
        assert!(t.contains("route=\"/recommend\",le=\"0.0005\"} 1\n"), "{t}");
        assert!(t.contains("route=\"/recommend\",le=\"0.005\"} 2\n"));
        assert!(t.contains("route=\"/recommend\",le=\"+Inf\"} 3\n"));
        assert!(t.contains("darec_request_duration_seconds_count{route=\"/recommend\"} 3"));
        assert!(t.contains("darec_items 7"));
    }
}
