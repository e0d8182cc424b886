//! `kairos-bench summarize`: the table `make bench` prints and `summary.json`.
//!
//! Reads the measurements of one run from a directory (any file may be missing: its figures
//! are then "not measured"), sets every Kairos figure beside its same-run baseline, and
//! judges each against its target. The targets at scale (windows p50 at N users over p50 at
//! 1,000 users; peak memory) are defined at 100,000 users.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde::ser::SerializeMap as _;
use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// Directory holding the run's measurements (windows_kairos.json, create_raw.json, ...).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Users in the database during the windows load (the run's scale).
    #[arg(long)]
    pub users: u64,
    /// Where to write the summary as JSON (parent directories are created).
    #[arg(long, value_name = "PATH", default_value = "target/bench/summary.json")]
    pub out: PathBuf,
}

/// The scale at which the scale and memory targets are defined.
pub const TARGET_USERS: u64 = 100_000;
/// The scale the windows p50 at N users is compared with.
pub const SCALE_BASE_USERS: u64 = 1_000;
pub const MEMORY_TARGET_MIB: f64 = 512.0;
/// What a server may hold beyond its windows cache budget (`KAIROS_WINDOWS_CACHE_MB`) when
/// one user in ten has the heaviest schedule the API takes.
pub const BEYOND_CACHE_BUDGET_MIB: f64 = 128.0;

/// One row of the table: a Kairos figure, its baseline, their ratio and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Its name in summary.json.
    pub key: &'static str,
    /// Its name in the table.
    pub label: &'static str,
    /// Kairos's numbers (None: not measured).
    pub kairos: Option<Value>,
    /// The baseline's numbers (None: not measured, or the target is absolute).
    pub baseline: Option<Value>,
    pub ratio: Option<f64>,
    pub target: &'static str,
    /// None: not measured, or (see `applicable`) not defined at this scale.
    pub met: Option<bool>,
    /// Whether every number the verdict needs was there.
    pub measured: bool,
    /// False when the target is defined at another scale: then `met` is None and the figure
    /// does not count towards `allMet`.
    pub applicable: bool,
    pub note: Option<String>,
    kairos_cell: String,
    baseline_cell: String,
}

impl Figure {
    fn met_cell(&self) -> String {
        if !self.applicable {
            return self.note.clone().unwrap_or_else(|| "n/a".into());
        }
        let verdict = match self.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => return "not measured".into(),
        };
        match &self.note {
            Some(note) => format!("{verdict} ({note})"),
            None => verdict.into(),
        }
    }

    fn ratio_cell(&self) -> String {
        match self.ratio {
            Some(r) if r.abs() < 0.1 => format!("{r:.3}"),
            Some(r) => format!("{r:.2}"),
            None => "-".into(),
        }
    }
}

/// Everything `summarize` found and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub users: u64,
    pub machine: Option<String>,
    pub cpus: Option<u64>,
    pub date: Option<String>,
    pub figures: Vec<Figure>,
    /// What was missing or odd in the inputs.
    pub notes: Vec<String>,
}

impl Summary {
    /// Every applicable figure measured and met (not-measured figures count as not met).
    pub fn all_met(&self) -> bool {
        self.figures
            .iter()
            .all(|f| !f.applicable || f.met == Some(true))
    }

    pub fn figure(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    /// summary.json: figures in table order.
    pub fn to_json(&self) -> anyhow::Result<String> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct FigureJson<'a> {
            kairos: &'a Option<Value>,
            baseline: &'a Option<Value>,
            ratio: Option<f64>,
            target: &'a str,
            met: Option<bool>,
            measured: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            note: &'a Option<String>,
        }
        struct Figures<'a>(&'a [Figure]);
        impl Serialize for Figures<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for f in self.0 {
                    map.serialize_entry(
                        f.key,
                        &FigureJson {
                            kairos: &f.kairos,
                            baseline: &f.baseline,
                            ratio: f.ratio,
                            target: f.target,
                            met: f.met,
                            measured: f.measured,
                            note: &f.note,
                        },
                    )?;
                }
                map.end()
            }
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct SummaryJson<'a> {
            users: u64,
            machine: &'a Option<String>,
            cpus: Option<u64>,
            date: &'a Option<String>,
            figures: Figures<'a>,
            all_met: bool,
            notes: &'a [String],
        }
        Ok(serde_json::to_string_pretty(&SummaryJson {
            users: self.users,
            machine: &self.machine,
            cpus: self.cpus,
            date: &self.date,
            figures: Figures(&self.figures),
            all_met: self.all_met(),
            notes: &self.notes,
        })?)
    }

    /// The plain-text table: one row per figure, columns aligned, then the verdict and notes.
    pub fn table(&self) -> String {
        let header = ["figure", "Kairos", "baseline", "ratio", "target", "met"];
        let rows: Vec<[String; 6]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.label.to_string(),
                    f.kairos_cell.clone(),
                    f.baseline_cell.clone(),
                    f.ratio_cell(),
                    f.target.to_string(),
                    f.met_cell(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 6]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            padded.join(" | ").trim_end().to_string()
        };
        let mut out = String::new();
        let mut about = vec![format!("{} users", thousands(self.users as f64))];
        if let Some(machine) = &self.machine {
            about.push(machine.clone());
        }
        if let Some(cpus) = self.cpus {
            about.push(format!("{cpus} cpus"));
        }
        if let Some(date) = &self.date {
            about.push(date.clone());
        }
        let _ = writeln!(out, "Kairos bench: {}", about.join(", "));
        let _ = writeln!(out, "{}", line(&header.map(String::from)));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        let _ = writeln!(out, "{}", rule.join("-+-"));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        let _ = write!(
            out,
            "all met: {}",
            if self.all_met() { "yes" } else { "no" }
        );
        for note in &self.notes {
            let _ = write!(out, "\nnote: {note}");
        }
        out
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The measurement files of one run, read leniently: a missing or malformed file is a note
/// and its figures are not measured.
struct Inputs<'a> {
    dir: &'a Path,
    notes: Vec<String>,
}

impl Inputs<'_> {
    fn file(&mut self, name: &str) -> Option<Value> {
        let path = self.dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.notes.push(format!("{name}: missing"));
                return None;
            }
            Err(error) => {
                self.notes.push(format!("{name}: unreadable ({error})"));
                return None;
            }
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(value @ Value::Object(_)) => Some(value),
            Ok(_) => {
                self.notes.push(format!("{name}: not a JSON object"));
                None
            }
            Err(error) => {
                self.notes.push(format!("{name}: not JSON ({error})"));
                None
            }
        }
    }

    /// The named numbers of `name`, all of them or None (with a note).
    fn numbers<const N: usize>(&mut self, name: &str, keys: [&str; N]) -> Option<[f64; N]> {
        let value = self.file(name)?;
        let mut out = [0.0; N];
        for (slot, key) in out.iter_mut().zip(keys) {
            match value.get(key).and_then(Value::as_f64) {
                Some(number) => *slot = number,
                None => {
                    self.notes.push(format!("{name}: no number `{key}`"));
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A `load --json` output. Failed requests become a note: they make the figures suspect.
    fn load(&mut self, name: &str) -> Option<Load> {
        let [rps, p50, p99, requests, errors] = self.numbers(
            name,
            ["requestsPerSecond", "p50Ms", "p99Ms", "requests", "errors"],
        )?;
        if errors > 0.0 {
            self.notes.push(format!(
                "{name}: {} of {} requests failed",
                thousands(errors),
                thousands(requests)
            ));
        }
        Some(Load {
            rps,
            p50,
            p99,
            requests,
            errors,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    requests: f64,
    errors: f64,
}

impl Load {
    fn json(&self) -> Value {
        json!({
            "requestsPerSecond": self.rps,
            "p50Ms": self.p50,
            "p99Ms": self.p99,
            "requests": self.requests as u64,
            "errors": self.errors as u64,
        })
    }
}

fn ratio(kairos: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0 && kairos.is_finite() && baseline.is_finite()).then(|| kairos / baseline)
}

const NOT_MEASURED: &str = "not measured";

/// A figure "Kairos / baseline ≥ target".
#[allow(clippy::too_many_arguments)]
fn ratio_figure(
    key: &'static str,
    label: &'static str,
    target: &'static str,
    at_least: f64,
    kairos: Option<(Value, f64, String)>,
    baseline: Option<(Value, f64, String)>,
) -> Figure {
    let r = match (&kairos, &baseline) {
        (Some((_, k, _)), Some((_, b, _))) => ratio(*k, *b),
        _ => None,
    };
    let (kairos_json, kairos_cell) = match kairos {
        Some((json, _, cell)) => (Some(json), cell),
        None => (None, NOT_MEASURED.into()),
    };
    let (baseline_json, baseline_cell) = match baseline {
        Some((json, _, cell)) => (Some(json), cell),
        None => (None, NOT_MEASURED.into()),
    };
    let note = (kairos_json.is_some() && baseline_json.is_some() && r.is_none())
        .then(|| "the baseline measured 0".to_string());
    Figure {
        key,
        label,
        kairos: kairos_json,
        baseline: baseline_json,
        ratio: r,
        target,
        met: r.map(|r| r >= at_least),
        measured: r.is_some(),
        applicable: true,
        note,
        kairos_cell,
        baseline_cell,
    }
}

/// Reads the run in `dir` (at `users` users) and judges every figure.
pub fn summarize(dir: &Path, users: u64) -> Summary {
    let mut inputs = Inputs {
        dir,
        notes: Vec::new(),
    };
    let windows = inputs.load("windows_kairos.json");
    let windows_static = inputs.load("windows_static.json");
    let windows_sql = inputs.load("windows_sql.json");
    let windows_1k = inputs.load("windows_kairos_1k.json");
    let create = inputs.load("create_kairos.json");
    let raw = inputs.numbers(
        "create_raw.json",
        ["usersPerSecond", "p50Ms", "p99Ms", "users", "errors"],
    );
    let rebuild = inputs.numbers("rebuild.json", ["events", "seconds", "eventsPerSecond"]);
    let copy = inputs.numbers(
        "copy.json",
        ["events", "bytes", "seconds", "eventsPerSecond"],
    );
    let memory = inputs.numbers("memory.json", ["peakRssBytes"]);
    let memory_heavy = inputs.numbers(
        "memory_heavy.json",
        [
            "peakRssBytes",
            "budgetBytes",
            "users",
            "heavyUsers",
            "cachedBytes",
        ],
    );
    let meta = inputs.file("meta.json");
    let mut notes = inputs.notes;
    let text = |key: &str| {
        meta.as_ref()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let (machine, date) = (text("machine"), text("date"));
    let cpus = meta
        .as_ref()
        .and_then(|m| m.get("cpus"))
        .and_then(Value::as_u64);
    if let Some(meta_users) = meta
        .as_ref()
        .and_then(|m| m.get("users"))
        .and_then(Value::as_u64)
        && meta_users != users
    {
        notes.push(format!(
            "meta.json says {meta_users} users; the figures use --users {users}"
        ));
    }
    if let (Some([rebuilt, ..]), Some([copied, ..])) = (rebuild, copy)
        && rebuilt != copied
    {
        notes.push(format!(
            "the rebuild replayed {} events, the sequential read found {}",
            thousands(rebuilt),
            thousands(copied)
        ));
    }
    let at_users = thousands(users as f64);
    let rps_side = |load: Option<Load>, source: &str| {
        load.map(|l| {
            let mut json = l.json();
            let cell = if source.is_empty() {
                format!("{} req/s", thousands(l.rps))
            } else {
                json["source"] = json!(source);
                format!("{} req/s ({source})", thousands(l.rps))
            };
            (json, l.rps, cell)
        })
    };

    let mut figures = vec![
        ratio_figure(
            "windows_vs_framework",
            "windows vs framework ceiling",
            "≥ 0.5",
            0.5,
            rps_side(windows, ""),
            rps_side(windows_static, "serve-static"),
        ),
        ratio_figure(
            "windows_vs_database",
            "windows vs database floor",
            "≥ 1.0",
            1.0,
            rps_side(windows, ""),
            rps_side(windows_sql, "serve-sql"),
        ),
    ];

    let p99 = windows.map(|w| w.p99);
    figures.push(Figure {
        key: "windows_p99",
        label: "windows p99 at 64 connections",
        kairos: p99.map(|p99| json!({"p99Ms": p99, "connections": 64})),
        baseline: None,
        ratio: None,
        target: "≤ 10 ms",
        met: p99.map(|p99| p99 <= 10.0),
        measured: p99.is_some(),
        applicable: true,
        note: None,
        kairos_cell: p99.map_or(NOT_MEASURED.into(), |p99| format!("p99 {p99:.2} ms")),
        baseline_cell: "-".into(),
    });

    figures.push(ratio_figure(
        "user_creation_vs_raw",
        "user creation vs raw transactions",
        "≥ 0.5",
        0.5,
        create.map(|c| {
            let mut json = c.json();
            json["usersPerSecond"] = json!(c.rps);
            let cell = format!(
                "{} users/s, p50 {:.1} / p99 {:.1} ms",
                thousands(c.rps),
                c.p50,
                c.p99
            );
            (json, c.rps, cell)
        }),
        raw.map(|[ups, p50, p99, written, errors]| {
            let json = json!({
                "source": "raw-users",
                "usersPerSecond": ups,
                "p50Ms": p50,
                "p99Ms": p99,
                "users": written as u64,
                "errors": errors as u64,
            });
            let cell = format!(
                "{} users/s, p50 {p50:.1} / p99 {p99:.1} ms (raw)",
                thousands(ups)
            );
            (json, ups, cell)
        }),
    ));

    figures.push(ratio_figure(
        "rebuild_vs_sequential_read",
        "rebuild vs sequential read",
        "≥ 0.1",
        0.1,
        rebuild.map(|[events, seconds, eps]| {
            let json = json!({"events": events as u64, "seconds": seconds, "eventsPerSecond": eps});
            let cell = format!("{} events/s ({} events)", thousands(eps), thousands(events));
            (json, eps, cell)
        }),
        copy.map(|[events, bytes, seconds, eps]| {
            let json = json!({
                "source": "copy-events",
                "events": events as u64,
                "bytes": bytes as u64,
                "seconds": seconds,
                "eventsPerSecond": eps,
            });
            (json, eps, format!("{} events/s (COPY)", thousands(eps)))
        }),
    ));

    let mut scale = ratio_figure(
        "scale",
        "scale: windows p50 N / 1k users",
        "≤ 1.3",
        f64::NEG_INFINITY,
        windows.map(|w| {
            let json = json!({"users": users, "p50Ms": w.p50});
            (
                json,
                w.p50,
                format!("p50 {:.2} ms at {at_users} users", w.p50),
            )
        }),
        windows_1k.map(|w| {
            let json = json!({"users": SCALE_BASE_USERS, "p50Ms": w.p50});
            let cell = format!(
                "p50 {:.2} ms at {} users",
                w.p50,
                thousands(SCALE_BASE_USERS as f64)
            );
            (json, w.p50, cell)
        }),
    );
    scale.met = scale.ratio.map(|r| r <= 1.3);
    if users < TARGET_USERS {
        scale.applicable = false;
        scale.met = None;
        scale.note = Some(format!(
            "n/a (target defined at {} users; measured at {at_users})",
            thousands(TARGET_USERS as f64)
        ));
    }
    figures.push(scale);

    let peak = memory.map(|[bytes]| bytes);
    let mib = peak.map(|bytes| bytes / (1024.0 * 1024.0));
    figures.push(Figure {
        key: "memory",
        label: "memory: peak RSS",
        kairos: peak.zip(mib).map(
            |(bytes, mib)| json!({"peakRssBytes": bytes as u64, "peakRssMiB": mib, "users": users}),
        ),
        baseline: None,
        ratio: None,
        target: "≤ 512 MiB",
        met: mib.map(|mib| mib <= MEMORY_TARGET_MIB),
        measured: mib.is_some(),
        applicable: true,
        note: (users < TARGET_USERS && mib.is_some()).then(|| {
            format!(
                "measured at {at_users} users; target defined at {}",
                thousands(TARGET_USERS as f64)
            )
        }),
        kairos_cell: mib.map_or(NOT_MEASURED.into(), |mib| format!("{mib:.1} MiB")),
        baseline_cell: "-".into(),
    });

    figures.push(heavy_memory_figure(memory_heavy));

    Summary {
        users,
        machine,
        cpus,
        date,
        figures,
        notes,
    }
}

/// Peak RSS of a server started with a windows cache budget on a database where one user in
/// ten has the heaviest schedule (twelve intervals a day, 5-minute slots, a year's horizon),
/// through its preload and a windows load over every user: the budget, not the users, must
/// bound it.
fn heavy_memory_figure(measured: Option<[f64; 5]>) -> Figure {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = measured.map(|[peak, budget, _, _, cached]| (peak / MIB, budget / MIB, cached / MIB));
    Figure {
        key: "memory_heavy_schedules",
        label: "memory: peak RSS, 10% heaviest schedules",
        kairos: measured.map(|[peak, budget, users, heavy, cached]| {
            json!({
                "peakRssBytes": peak as u64, "peakRssMiB": peak / MIB,
                "budgetBytes": budget as u64, "cachedBytes": cached as u64,
                "users": users as u64, "heavyUsers": heavy as u64,
            })
        }),
        baseline: None,
        ratio: None,
        target: "≤ cache budget + 128 MiB",
        met: mib.map(|(peak, budget, _)| peak <= budget + BEYOND_CACHE_BUDGET_MIB),
        measured: mib.is_some(),
        applicable: true,
        note: measured.map(|[_, _, users, heavy, _]| {
            format!(
                "{} of {} users with the heaviest schedule",
                thousands(heavy),
                thousands(users)
            )
        }),
        kairos_cell: mib.map_or(NOT_MEASURED.into(), |(peak, budget, cached)| {
            format!("{peak:.1} MiB (cache {cached:.1} of {budget:.0} MiB)")
        }),
        baseline_cell: "-".into(),
    }
}

/// Summarizes, prints the table, writes the JSON.
pub fn run(args: &SummarizeArgs) -> anyhow::Result<Summary> {
    let summary = summarize(&args.dir, args.users);
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.out, summary.to_json()? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "kairos-bench-summarize-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, value: Value) {
            std::fs::write(self.0.join(name), value.to_string()).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load(rps: f64, p50: f64, p99: f64) -> Value {
        json!({
            "requests": (rps * 10.0) as u64, "errors": 0, "statusCounts": {"200": (rps * 10.0) as u64},
            "durationSeconds": 10.0, "requestsPerSecond": rps, "p50Ms": p50, "p90Ms": p99 * 0.8,
            "p99Ms": p99, "maxMs": p99 * 2.0, "meanMs": p50, "meanBodyBytes": 700.0,
        })
    }

    /// A complete run where every target is met.
    fn full_run(dir: &TempDir, users: u64) {
        dir.write("windows_kairos.json", load(6000.0, 1.2, 8.0));
        dir.write("windows_static.json", load(10000.0, 0.6, 3.0));
        dir.write("windows_sql.json", load(4000.0, 2.0, 12.0));
        dir.write("windows_kairos_1k.json", load(6500.0, 1.0, 7.0));
        dir.write("create_kairos.json", load(600.0, 50.0, 120.0));
        dir.write(
            "create_raw.json",
            json!({"users": 20000, "errors": 0, "durationSeconds": 20.0, "usersPerSecond": 1000.0,
                   "p50Ms": 30.0, "p90Ms": 45.0, "p99Ms": 70.0, "maxMs": 90.0}),
        );
        dir.write(
            "rebuild.json",
            json!({"projectors": ["user_profiles"], "tables": ["user_profiles"], "events": 300000,
                   "seconds": 6.0, "eventsPerSecond": 50000.0, "position": 300000}),
        );
        dir.write(
            "copy.json",
            json!({"events": 300000, "bytes": 300000000, "seconds": 1.0, "eventsPerSecond": 300000.0}),
        );
        dir.write("memory.json", json!({"peakRssBytes": 200u64 * 1024 * 1024}));
        dir.write("memory_heavy.json", heavy_memory(150, 64));
        dir.write(
            "meta.json",
            json!({"users": users, "machine": "Linux 6.1 x86_64", "cpus": 2, "date": "2026-11-28T10:00:00Z"}),
        );
    }

    fn heavy_memory(peak_mib: u64, budget_mib: u64) -> Value {
        json!({"peakRssBytes": peak_mib << 20, "budgetBytes": budget_mib << 20,
               "users": 11111, "heavyUsers": 1111, "cachedBytes": (budget_mib - 1) << 20})
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn ratios_and_verdicts_at_100k_users() {
        let dir = TempDir::new("full");
        full_run(&dir, 100_000);
        let s = summarize(&dir.0, 100_000);
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        let f = |key| s.figure(key).unwrap();
        assert!(close(f("windows_vs_framework").ratio, 0.6));
        assert!(close(f("windows_vs_database").ratio, 1.5));
        assert!(close(f("user_creation_vs_raw").ratio, 0.6));
        assert!(close(
            f("rebuild_vs_sequential_read").ratio,
            50000.0 / 300000.0
        ));
        assert!(close(f("scale").ratio, 1.2));
        for figure in &s.figures {
            assert_eq!(figure.met, Some(true), "{}", figure.key);
            assert!(figure.measured && figure.applicable, "{}", figure.key);
        }
        assert_eq!(f("windows_p99").ratio, None);
        assert!(s.all_met());
        assert_eq!(s.machine.as_deref(), Some("Linux 6.1 x86_64"));
        assert_eq!(s.cpus, Some(2));
    }

    #[test]
    fn missed_targets_are_not_met() {
        let dir = TempDir::new("missed");
        full_run(&dir, 100_000);
        dir.write("windows_kairos.json", load(3000.0, 1.5, 12.5));
        dir.write("create_kairos.json", load(400.0, 80.0, 200.0));
        dir.write(
            "rebuild.json",
            json!({"events": 300000, "seconds": 20.0, "eventsPerSecond": 15000.0}),
        );
        dir.write("memory.json", json!({"peakRssBytes": 600u64 * 1024 * 1024}));
        dir.write("memory_heavy.json", heavy_memory(193, 64));
        let s = summarize(&dir.0, 100_000);
        let met = |key| s.figure(key).unwrap().met;
        assert_eq!(met("windows_vs_framework"), Some(false)); // 0.3
        assert_eq!(met("windows_vs_database"), Some(false)); // 0.75
        assert_eq!(met("windows_p99"), Some(false)); // 12.5 ms
        assert_eq!(met("user_creation_vs_raw"), Some(false)); // 0.4
        assert_eq!(met("rebuild_vs_sequential_read"), Some(false)); // 0.05
        assert_eq!(met("scale"), Some(false)); // 1.5
        assert_eq!(met("memory"), Some(false)); // 600 MiB
        assert_eq!(met("memory_heavy_schedules"), Some(false)); // 193 > 64 + 128 MiB
        assert!(!s.all_met());
    }

    #[test]
    fn boundaries_meet_their_targets() {
        let dir = TempDir::new("bounds");
        full_run(&dir, 100_000);
        dir.write("windows_kairos.json", load(5000.0, 1.3, 10.0));
        dir.write("windows_sql.json", load(5000.0, 1.0, 5.0));
        dir.write("memory.json", json!({"peakRssBytes": 512u64 * 1024 * 1024}));
        dir.write("memory_heavy.json", heavy_memory(192, 64));
        let s = summarize(&dir.0, 100_000);
        let f = |key| s.figure(key).unwrap();
        assert!(close(f("windows_vs_framework").ratio, 0.5));
        assert!(close(f("windows_vs_database").ratio, 1.0));
        assert!(close(f("scale").ratio, 1.3));
        assert!(s.figures.iter().all(|f| f.met == Some(true)));
    }

    #[test]
    fn below_100k_users_scale_is_not_applicable_and_memory_is_noted() {
        let dir = TempDir::new("small");
        full_run(&dir, 10_000);
        dir.write("windows_kairos.json", load(6000.0, 2.0, 8.0)); // scale ratio 2.0
        let s = summarize(&dir.0, 10_000);
        let scale = s.figure("scale").unwrap();
        assert!(close(scale.ratio, 2.0));
        assert_eq!(scale.met, None);
        assert!(!scale.applicable);
        assert_eq!(
            scale.met_cell(),
            "n/a (target defined at 100,000 users; measured at 10,000)"
        );
        let memory = s.figure("memory").unwrap();
        assert_eq!(memory.met, Some(true));
        assert!(
            memory
                .note
                .as_deref()
                .unwrap()
                .contains("measured at 10,000 users")
        );
        // The scale figure does not count: everything else is met.
        assert!(s.all_met());
        let json: Value = serde_json::from_str(&s.to_json().unwrap()).unwrap();
        assert_eq!(json["figures"]["scale"]["met"], Value::Null);
        assert_eq!(json["figures"]["memory"]["met"], json!(true));
        assert_eq!(json["allMet"], json!(true));
    }

    #[test]
    fn missing_and_broken_files_are_not_measured() {
        let dir = TempDir::new("missing");
        full_run(&dir, 100_000);
        std::fs::remove_file(dir.0.join("windows_static.json")).unwrap();
        std::fs::write(dir.0.join("copy.json"), "").unwrap();
        std::fs::remove_file(dir.0.join("memory.json")).unwrap();
        dir.write("create_raw.json", json!({"users": 10}));
        let s = summarize(&dir.0, 100_000);
        for key in [
            "windows_vs_framework",
            "rebuild_vs_sequential_read",
            "memory",
            "user_creation_vs_raw",
        ] {
            let f = s.figure(key).unwrap();
            assert_eq!((f.met, f.measured, f.ratio), (None, false, None), "{key}");
            assert_eq!(f.met_cell(), "not measured");
        }
        // Kairos's side of a figure is still reported when only its baseline is missing.
        assert!(s.figure("windows_vs_framework").unwrap().kairos.is_some());
        assert_eq!(s.figure("windows_vs_database").unwrap().met, Some(true));
        assert!(!s.all_met());
        assert_eq!(s.notes.len(), 4, "{:?}", s.notes);
        assert!(s.notes.iter().any(|n| n == "windows_static.json: missing"));
        assert!(s.notes.iter().any(|n| n.starts_with("copy.json: not JSON")));
        assert!(
            s.notes
                .iter()
                .any(|n| n == "create_raw.json: no number `usersPerSecond`")
        );

        let empty = TempDir::new("empty");
        let s = summarize(&empty.0, 1_000);
        assert!(s.figures.iter().all(|f| f.met.is_none() && !f.measured));
        assert!(!s.all_met());
    }

    #[test]
    fn run_writes_summary_json_and_the_table_is_aligned() {
        let dir = TempDir::new("run");
        full_run(&dir, 10_000);
        let out = dir.0.join("out").join("summary.json");
        let summary = run(&SummarizeArgs {
            dir: dir.0.clone(),
            users: 10_000,
            out: out.clone(),
        })
        .unwrap();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(json["users"], json!(10_000));
        assert_eq!(json["machine"], json!("Linux 6.1 x86_64"));
        let fw = &json["figures"]["windows_vs_framework"];
        assert_eq!(fw["kairos"]["requestsPerSecond"], json!(6000.0));
        assert_eq!(fw["baseline"]["requestsPerSecond"], json!(10000.0));
        assert_eq!(fw["target"], json!("≥ 0.5"));
        assert_eq!(fw["met"], json!(true));
        let create = &json["figures"]["user_creation_vs_raw"];
        assert_eq!(create["baseline"]["usersPerSecond"], json!(1000.0));
        assert_eq!(create["kairos"]["p99Ms"], json!(120.0));
        assert_eq!(json["figures"]["windows_p99"]["baseline"], Value::Null);
        assert_eq!(json["allMet"], json!(true));
        let keys: Vec<&String> = json["figures"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 8);
        let heavy = &json["figures"]["memory_heavy_schedules"];
        assert_eq!(heavy["kairos"]["budgetBytes"], json!(64u64 << 20));
        assert_eq!(heavy["target"], json!("≤ cache budget + 128 MiB"));
        assert_eq!(heavy["met"], json!(true));

        let table = summary.table();
        println!("{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("Kairos bench: 10,000 users, Linux 6.1 x86_64, 2 cpus"));
        assert!(lines[1].starts_with("figure"));
        // Every row has its separators at the header's columns.
        let columns = |line: &str| -> Vec<usize> {
            line.chars()
                .enumerate()
                .filter(|(_, c)| *c == '|')
                .map(|(i, _)| i)
                .collect()
        };
        let header = columns(lines[1]);
        assert_eq!(header.len(), 5);
        for row in &lines[3..11] {
            assert_eq!(columns(row), header, "{row}");
        }
        assert!(table.contains("6,000 req/s"));
        assert!(table.contains("10,000 req/s (serve-static)"));
        assert!(table.contains("| 0.60  |"));
        assert!(table.contains("150.0 MiB (cache 63.0 of 64 MiB)"));
        assert!(lines[11].starts_with("all met: yes"));
        assert!(!table.contains('\u{1b}'));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-12345.0), "-12,345");
    }
}
