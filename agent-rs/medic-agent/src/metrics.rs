//! Prometheus metrics, and the tiny HTTP endpoint that serves them.
//!
//! Six series, rendered by hand in the text exposition format (a metrics crate would outweigh
//! the rest of the agent):
//!
//! - `medic_agent_script_executions_total{script,result}`: executions that ran, by final state
//!   (`succeeded`, `failed`, `timed_out`, `cancelled`);
//! - `medic_agent_script_skips_total{script,reason}`: requests that did not run, by reason code;
//! - `medic_agent_script_duration_seconds{script}`: a histogram of run times;
//! - `medic_agent_containment{mode}`: 1 for the containment in force (`cgroup`, `subreaper`,
//!   `process_group`);
//! - `medic_agent_contained_processes_killed_total{mode}`: processes the containment signalled
//!   to end executions (timed out, cancelled, stopped, or what a script left running); a
//!   process group's members are not counted;
//! - `medic_agent_connected`: 1 while a stream to the server is welcomed.
//!
//! The `script` label is the allowlist entry's name; a name that is not in the allowlist is
//! reported as `(unknown)`, so a confused server cannot grow the label set without bound.
//!
//! The endpoint answers `GET /metrics` (and `GET /`) on the configured local address; it reads
//! at most 8 KiB of request within 5 seconds and closes every connection after one answer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::containment::Mode;

/// Upper bounds of the duration histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The label used for names that are not in the allowlist.
pub const UNKNOWN_SCRIPT: &str = "(unknown)";

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Series {
    executions: BTreeMap<(String, String), u64>,
    skips: BTreeMap<(String, String), u64>,
    durations: BTreeMap<String, Histogram>,
    containment: Option<Mode>,
    killed: u64,
    connected: bool,
}

/// The agent's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
}

impl Metrics {
    /// An execution ran and ended in `result` after `duration`.
    pub fn executed(&self, script: &str, result: &str, duration: Duration) {
        let mut series = self.lock();
        *series
            .executions
            .entry((script.to_owned(), result.to_owned()))
            .or_default() += 1;
        let histogram = series.durations.entry(script.to_owned()).or_default();
        let seconds = duration.as_secs_f64();
        for (count, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// A request for `script` did not run, for `reason`.
    pub fn skipped(&self, script: &str, reason: &str) {
        *self
            .lock()
            .skips
            .entry((script.to_owned(), reason.to_owned()))
            .or_default() += 1;
    }

    /// The containment in force.
    pub fn set_containment(&self, mode: Mode) {
        self.lock().containment = Some(mode);
    }

    /// An execution's containment signalled `killed` processes to end it.
    pub fn contained(&self, mode: Mode, killed: usize) {
        let mut series = self.lock();
        series.containment = Some(mode);
        series.killed += u64::try_from(killed).unwrap_or(u64::MAX);
    }

    /// Whether a stream is welcomed now.
    pub fn set_connected(&self, connected: bool) {
        self.lock().connected = connected;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let series = self.lock();
        let mut out = String::new();
        out.push_str(
            "# HELP medic_agent_script_executions_total Script executions that ran, by final state.\n\
             # TYPE medic_agent_script_executions_total counter\n",
        );
        for ((script, result), value) in &series.executions {
            let _ = writeln!(
                out,
                "medic_agent_script_executions_total{{script=\"{}\",result=\"{}\"}} {value}",
                escape(script),
                escape(result)
            );
        }
        out.push_str(
            "# HELP medic_agent_script_skips_total Requested executions that did not run, by reason.\n\
             # TYPE medic_agent_script_skips_total counter\n",
        );
        for ((script, reason), value) in &series.skips {
            let _ = writeln!(
                out,
                "medic_agent_script_skips_total{{script=\"{}\",reason=\"{}\"}} {value}",
                escape(script),
                escape(reason)
            );
        }
        out.push_str(
            "# HELP medic_agent_script_duration_seconds Run time of script executions.\n\
             # TYPE medic_agent_script_duration_seconds histogram\n",
        );
        for (script, histogram) in &series.durations {
            let script = escape(script);
            for (count, bound) in histogram.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "medic_agent_script_duration_seconds_bucket{{script=\"{script}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "medic_agent_script_duration_seconds_bucket{{script=\"{script}\",le=\"+Inf\"}} {}\n\
                 medic_agent_script_duration_seconds_sum{{script=\"{script}\"}} {}\n\
                 medic_agent_script_duration_seconds_count{{script=\"{script}\"}} {}",
                histogram.count, histogram.sum, histogram.count
            );
        }
        if let Some(mode) = series.containment {
            let _ = write!(
                out,
                "# HELP medic_agent_containment How the agent contains the processes of each \
                 execution: 1 for the mode in force.\n\
                 # TYPE medic_agent_containment gauge\n\
                 medic_agent_containment{{mode=\"{mode}\"}} 1\n\
                 # HELP medic_agent_contained_processes_killed_total Processes the containment \
                 signalled to end executions (a process group's members are not counted).\n\
                 # TYPE medic_agent_contained_processes_killed_total counter\n\
                 medic_agent_contained_processes_killed_total{{mode=\"{mode}\"}} {}\n",
                series.killed
            );
        }
        let _ = write!(
            out,
            "# HELP medic_agent_connected Whether a stream to the server is open and welcomed.\n\
             # TYPE medic_agent_connected gauge\n\
             medic_agent_connected {}\n",
            u8::from(series.connected)
        );
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serve the metrics on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 || request.len() + read > 8192 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let line = request
        .split(|&byte| byte == b'\r')
        .next()
        .unwrap_or_default();
    let mut words = line.split(|&byte| byte == b' ');
    let (method, path) = (words.next(), words.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        (Some(b"GET"), _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_agent_renders_empty_families_and_the_connection_gauge() {
        let metrics = Metrics::default();
        let text = metrics.render();
        assert!(text.contains("# TYPE medic_agent_script_executions_total counter\n"));
        assert!(text.contains("# TYPE medic_agent_script_duration_seconds histogram\n"));
        assert!(text.ends_with("medic_agent_connected 0\n"), "{text}");
        metrics.set_connected(true);
        assert!(metrics.render().ends_with("medic_agent_connected 1\n"));
    }

    #[test]
    fn the_containment_mode_and_the_processes_it_killed_are_exposed() {
        let metrics = Metrics::default();
        metrics.set_containment(Mode::Cgroup);
        let text = metrics.render();
        assert!(
            text.contains("medic_agent_containment{mode=\"cgroup\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("medic_agent_contained_processes_killed_total{mode=\"cgroup\"} 0\n"));
        metrics.contained(Mode::Cgroup, 3);
        metrics.contained(Mode::Cgroup, 0);
        assert!(
            metrics
                .render()
                .contains("medic_agent_contained_processes_killed_total{mode=\"cgroup\"} 3\n")
        );
    }

    #[test]
    fn executions_skips_and_durations_are_counted_by_label() {
        let metrics = Metrics::default();
        metrics.executed("restart", "succeeded", Duration::from_millis(300));
        metrics.executed("restart", "succeeded", Duration::from_secs(20));
        metrics.executed("restart", "timed_out", Duration::from_secs(7200));
        metrics.skipped("restart", "paused");
        metrics.skipped("(unknown)", "not_allowlisted");
        let text = metrics.render();
        for line in [
            "medic_agent_script_executions_total{script=\"restart\",result=\"succeeded\"} 2\n",
            "medic_agent_script_executions_total{script=\"restart\",result=\"timed_out\"} 1\n",
            "medic_agent_script_skips_total{script=\"restart\",reason=\"paused\"} 1\n",
            "medic_agent_script_skips_total{script=\"(unknown)\",reason=\"not_allowlisted\"} 1\n",
            "medic_agent_script_duration_seconds_bucket{script=\"restart\",le=\"0.25\"} 0\n",
            "medic_agent_script_duration_seconds_bucket{script=\"restart\",le=\"0.5\"} 1\n",
            "medic_agent_script_duration_seconds_bucket{script=\"restart\",le=\"30\"} 2\n",
            "medic_agent_script_duration_seconds_bucket{script=\"restart\",le=\"3600\"} 2\n",
            "medic_agent_script_duration_seconds_bucket{script=\"restart\",le=\"+Inf\"} 3\n",
            "medic_agent_script_duration_seconds_sum{script=\"restart\"} 7220.3\n",
            "medic_agent_script_duration_seconds_count{script=\"restart\"} 3\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[tokio::test]
    async fn the_endpoint_serves_get_metrics_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.set_connected(true);
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics)));
        let get = |request: &'static str| async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let response = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.ends_with("medic_agent_connected 1\n"),
            "{response}"
        );
        let response = get("GET /other HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let response = get("POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        server.abort();
    }
}
