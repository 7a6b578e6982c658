//! The fleet benchmark behind `cargo run --release -p wxtoken-e2e --bin bench`
//! (issue 8): upstream efficiency of wxtoken fleets next to the SDKs users run
//! today, scale to 10 000 credentials, and the read path, in one run on one
//! machine. Every section returns table rows and a JSON value; `bin/bench.rs`
//! prints both.

pub mod alternative;
pub mod efficiency;
pub mod follow;
pub mod follow_component;
pub mod gateway;
pub mod hardening;
pub mod kinds;
pub mod loadgen;
pub mod nginx;
mod pin;
pub mod platform;
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

/// What a section returns: its table rows and its JSON.
pub type SectionResult = anyhow::Result<(Vec<Row>, serde_json::Value)>;

/// One section: its `--only` name, its JSON key, and how to run it
/// (`quick`: a smoke run that checks the harness, not the numbers).
pub struct Section {
    pub name: &'static str,
    pub key: &'static str,
    pub run: fn(bool) -> futures_util::future::BoxFuture<'static, SectionResult>,
}

impl std::fmt::Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every section, in run order: adding one is one line here.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "efficiency",
        key: "efficiency",
        run: |q| Box::pin(efficiency::run(q)),
    },
    Section {
        name: "alternative",
        key: "alternative",
        run: |q| Box::pin(alternative::run(q)),
    },
    Section {
        name: "scale",
        key: "scale",
        run: |q| Box::pin(scale::run(q)),
    },
    Section {
        name: "read-path",
        key: "read_path",
        run: |q| Box::pin(read_path::run(q)),
    },
    Section {
        name: "kinds",
        key: "kinds",
        run: |q| Box::pin(kinds::run(q)),
    },
    Section {
        name: "hardening",
        key: "hardening",
        run: |q| Box::pin(hardening::run(q)),
    },
    Section {
        name: "platform",
        key: "platform",
        run: |q| Box::pin(platform::run(q)),
    },
    Section {
        name: "gateway",
        key: "gateway",
        run: |q| Box::pin(gateway::run(q)),
    },
    Section {
        name: "gateway-pinned",
        key: "gateway_pinned",
        run: |q| Box::pin(gateway::run_pinned(q)),
    },
    Section {
        name: "follow",
        key: "follow",
        run: |q| Box::pin(follow::run(q)),
    },
    Section {
        name: "follow-component",
        key: "follow_component",
        run: |q| Box::pin(follow_component::run(q)),
    },
];

/// Which sections to run (all by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections(Vec<&'static str>);

impl Default for Sections {
    fn default() -> Self {
        Self(SECTIONS.iter().map(|s| s.name).collect())
    }
}

impl Sections {
    /// `efficiency,scale` → those two.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut chosen = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match SECTIONS.iter().find(|s| s.name == name) {
                Some(s) => chosen.push(s.name),
                None => {
                    let known: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
                    return Err(format!(
                        "unknown section {name:?}; known: {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(Self(chosen))
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains(&name)
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
    for section in SECTIONS.iter().filter(|s| sections.contains(s.name)) {
        report.add(section.key, (section.run)(quick).await?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
