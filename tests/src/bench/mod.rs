//! The fleet benchmark behind `cargo run --release -p wxtoken-e2e --bin bench`
//! (issue 8): upstream efficiency of wxtoken fleets next to the SDKs users run
//! today, scale to 10 000 credentials, and the read path, in one run on one
//! machine. Every section returns table rows and a JSON value; `bin/bench.rs`
//! prints both.

pub mod alternative;
pub mod efficiency;
pub mod read_path;
pub mod scale;

/// One line of the printed table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// `efficiency`, `alternative`, `scale`, `read path`.
    pub section: &'static str,
    /// What was measured, e.g. `8 replicas: fetches / ideal`.
    pub what: String,
    /// The measured figure, formatted with its unit.
    pub value: String,
    /// The target, or empty when the figure is a reference.
    pub target: String,
    /// Whether the target was met (`None`: no target).
    pub met: Option<bool>,
}

impl Row {
    pub fn new(section: &'static str, what: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            section,
            what: what.into(),
            value: value.into(),
            target: String::new(),
            met: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }
}

/// Which sections to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub efficiency: bool,
    pub alternative: bool,
    pub scale: bool,
    pub read_path: bool,
}

impl Default for Sections {
    fn default() -> Self {
        Self {
            efficiency: true,
            alternative: true,
            scale: true,
            read_path: true,
        }
    }
}

impl Sections {
    /// `efficiency,scale` → those two.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut s = Self {
            efficiency: false,
            alternative: false,
            scale: false,
            read_path: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "efficiency" => s.efficiency = true,
                "alternative" => s.alternative = true,
                "scale" => s.scale = true,
                "read-path" => s.read_path = true,
                other => {
                    return Err(format!(
                        "unknown section {other:?}; known: efficiency, alternative, scale, read-path"
                    ));
                }
            }
        }
        Ok(s)
    }
}

/// The whole run.
#[derive(Debug, Default)]
pub struct Report {
    pub quick: bool,
    pub rows: Vec<Row>,
    pub sections: serde_json::Map<String, serde_json::Value>,
    pub seconds: f64,
}

impl Report {
    /// One section's rows and JSON.
    fn add(&mut self, name: &str, (rows, json): (Vec<Row>, serde_json::Value)) {
        self.rows.extend(rows);
        self.sections.insert(name.into(), json);
    }

    /// A Markdown table, the form BENCHMARKS.md uses.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| section | what | measured | target | met |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {met} |\n",
                r.section, r.what, r.value, r.target
            ));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "quick": self.quick,
            "seconds": self.seconds,
            "machine": machine(),
            "rows": self.rows,
            "sections": self.sections,
        })
    }
}

fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    serde_json::json!({ "cpus": cpus, "cpu": model })
}

/// Runs the chosen sections one after the other (never side by side: they
/// would share the 2 cores and skew each other).
pub async fn run(quick: bool, sections: Sections) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let mut report = Report {
        quick,
        ..Report::default()
    };
    if sections.efficiency {
        report.add("efficiency", efficiency::run(quick).await?);
    }
    if sections.alternative {
        report.add("alternative", alternative::run(quick).await?);
    }
    if sections.scale {
        report.add("scale", scale::run(quick).await?);
    }
    if sections.read_path {
        report.add("read_path", read_path::run(quick).await?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
