//! Prometheus metrics in the text format, written atomically after every run
//! for node_exporter's textfile collector (`metrics_file` in the host config).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::apply::publish::Published;
use crate::apply::record::LastRun;
use crate::error::{ApplyError, exit};
use crate::host::Host;
use crate::plan::state::State;

/// Write the metrics of the run `last`, which took `took`.
///
/// A run that holds the host on its release because the branch head is
/// quarantined (exit 8) is a success here: the failure was reported once,
/// by the run that failed; `plumb_head_quarantined` stays 1 while it lasts.
pub fn write(
    host: &dyn Host,
    path: &Path,
    state: &State,
    published: &Published,
    last: &LastRun,
    took: Duration,
) -> Result<(), ApplyError> {
    let ok = matches!(last.exit_code, exit::OK | exit::QUARANTINED);
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    // The last success survives failed runs: read it back from the file.
    let previous = host
        .files()
        .read(path)
        .ok()
        .and_then(|bytes| {
            let text = String::from_utf8(bytes).ok()?;
            let line = text
                .lines()
                .find(|l| l.starts_with("plumb_last_success_timestamp_seconds "))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0);
    let last_success = if ok { now } else { previous };
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{value}"
        );
    };
    metric(
        "plumb_last_run_timestamp_seconds",
        "When the last reconcile ended.",
        "gauge",
        format!(" {now:.3}"),
    );
    metric(
        "plumb_last_run_success",
        "1 if the last reconcile succeeded (deployed, up to date, or holding on a quarantined head).",
        "gauge",
        format!(" {}", ok as u8),
    );
    metric(
        "plumb_last_run_exit_code",
        "The exit code of the last reconcile (docs/troubleshooting.md).",
        "gauge",
        format!(" {}", last.exit_code),
    );
    metric(
        "plumb_head_quarantined",
        "1 while the branch head is a quarantined commit and the host stays on its release.",
        "gauge",
        format!(" {}", (last.exit_code == exit::QUARANTINED) as u8),
    );
    metric(
        "plumb_last_success_timestamp_seconds",
        "When a reconcile last succeeded.",
        "gauge",
        format!(" {last_success:.3}"),
    );
    metric(
        "plumb_run_duration_seconds",
        "How long the last reconcile took.",
        "gauge",
        format!(" {:.3}", took.as_secs_f64()),
    );
    metric(
        "plumb_rollbacks_total",
        "Deploys rolled back after the switch.",
        "counter",
        format!(" {}", state.rollbacks_total),
    );
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    if let Some(d) = &state.deployed {
        metric(
            "plumb_deployed_info",
            "The deployed commit and release.",
            "gauge",
            format!(
                "{{commit=\"{}\",release=\"{}\"}} 1",
                label(&d.commit),
                label(&d.release)
            ),
        );
    }
    if !published.targets.is_empty() {
        let _ = writeln!(
            text,
            "# HELP plumb_publish_ok 1 if the publish target serves the live release.\n# TYPE plumb_publish_ok gauge"
        );
    }
    for (name, target) in &published.targets {
        let ok = target.serves.as_deref() == Some(published.release.as_str());
        let _ = writeln!(
            text,
            "plumb_publish_ok{{app=\"{}\",target=\"{}\"}} {}",
            label(&target.app),
            label(name),
            ok as u8
        );
    }
    let files = host.files();
    if let Some(dir) = path.parent() {
        files
            .create_dir_all(dir)
            .map_err(ApplyError::io("create", dir))?;
    }
    // Read by node_exporter, which does not run as root.
    files
        .write_atomic(path, text.as_bytes(), 0o644)
        .map_err(ApplyError::io("write", path))
}
