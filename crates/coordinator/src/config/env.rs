//! The environment as config loading sees it, and the `WXTOKEN__SECTION__KEY`
//! overrides it carries.
//!
//! [`Env`] is one snapshot serving both needs, listing the override variables
//! and looking up `secret = { env = … }` references, so tests inject a
//! map instead of mutating the process env. Overrides are written into the
//! parsed TOML document before typed deserialization; this module knows no
//! schema. Unknown keys are caught by `deny_unknown_fields`, and [`blame`]
//! then names the env var that set them.

use std::collections::BTreeMap;
use std::fmt;

use toml::Value;

use super::ConfigError;

const PREFIX: &str = "WXTOKEN__";
/// Highest `apps` index an override may create, so a typo cannot allocate millions.
const MAX_INDEX: usize = 1024;

/// A snapshot of environment variables (names and values that are UTF-8).
/// `Debug` prints only the count: values may be secrets.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// Set by [`Env::with_stand_in_secrets`]: commands that only read Redis
    /// (`status`, `get`, …) never use a secret, so one that cannot be read
    /// must not stop them. Never set for `serve` or `check-config`.
    stand_in_secrets: bool,
}

impl Env {
    /// The current process environment.
    pub fn process() -> Self {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// This env, where a secret reference that cannot be read resolves to a
    /// stand-in (see `secret::is_stand_in`) instead of failing the load. For
    /// commands that use no secret; a malformed file is still refused.
    pub fn with_stand_in_secrets(mut self) -> Self {
        self.stand_in_secrets = true;
        self
    }

    pub(super) fn stands_in_secrets(&self) -> bool {
        self.stand_in_secrets
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let vars = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            vars,
            stand_in_secrets: false,
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Env({} vars)", self.vars.len())
    }
}

/// One applied override: which variable set which key, and its raw text.
#[derive(Debug)]
pub(super) struct Override {
    var: String,
    path: Vec<String>,
    /// The dotted key as `serde_path_to_error` prints it: `apps[0].appid`.
    key: String,
    raw: String,
    /// The raw text was written as a number or bool rather than a string.
    coerced: bool,
}

/// Writes every `WXTOKEN__…` variable of `env` into `doc`.
pub(super) fn apply_overrides(doc: &mut Value, env: &Env) -> Result<Vec<Override>, ConfigError> {
    let mut applied = Vec::new();
    for (var, raw) in &env.vars {
        let Some(rest) = var
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &var[PREFIX.len()..])
        else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            let msg = "empty segment: write WXTOKEN__SECTION__KEY, e.g. WXTOKEN__REFRESH__LOCK_TTL";
            return Err(ConfigError::new(var.clone(), msg));
        }
        let key = dotted(&path);
        let value = coerce(raw);
        let coerced = !value.is_str();
        set(doc, &path, value)
            .map_err(|m| ConfigError::new(key.clone(), format!("{m} (set by env {var})")))?;
        applied.push(Override {
            var: var.clone(),
            path,
            key,
            raw: raw.clone(),
            coerced,
        });
    }
    Ok(applied)
}

/// If `key` was set by an override that was read as a number or bool, set it
/// again as a string and return true: the typed schema wanted text.
pub(super) fn retry_as_string(doc: &mut Value, overrides: &mut [Override], key: &str) -> bool {
    let Some(o) = overrides.iter_mut().find(|o| o.coerced && o.key == key) else {
        return false;
    };
    o.coerced = false;
    set(doc, &o.path, Value::String(o.raw.clone())).is_ok()
}

/// Adds the responsible env var to an error about a key an override set, or
/// under which it wrote (`WXTOKEN__BOGUS__KEY` is refused at `bogus`).
pub(super) fn blame(mut err: ConfigError, overrides: &[Override]) -> ConfigError {
    let culprit = |o: &&Override| {
        let rest = o.key.strip_prefix(err.key.as_str());
        rest.is_some_and(|r| r.is_empty() || r.starts_with(['.', '[']))
    };
    if let Some(o) = overrides.iter().find(culprit) {
        err.message = format!("{} (set by env {})", err.message, o.var);
    }
    err
}

fn dotted(path: &[String]) -> String {
    let segments = path.iter().map(|s| match s.parse::<usize>() {
        Ok(_) => format!("[{s}]"),
        Err(_) => format!(".{s}"),
    });
    segments
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

/// `30` → integer, `true` → bool, `1.5` → float (as TOML reads them), else a string.
fn coerce(raw: &str) -> Value {
    let parsed = format!("v = {raw}").parse::<toml::Table>().ok();
    match parsed
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"))
    {
        Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => v,
        _ => Value::String(raw.to_owned()),
    }
}

fn set(slot: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *slot = value;
        return Ok(());
    };
    let fresh = || match rest.first().map(|s| s.parse::<usize>()) {
        Some(Ok(_)) => Value::Array(Vec::new()),
        _ => Value::Table(toml::Table::new()),
    };
    match slot {
        Value::Table(table) => set(
            table.entry(head.as_str()).or_insert_with(fresh),
            rest,
            value,
        ),
        Value::Array(items) => {
            let i = head.parse::<usize>().ok().filter(|i| *i <= MAX_INDEX);
            let i = i.ok_or_else(|| format!("`{head}` is not an index (0-{MAX_INDEX})"))?;
            while items.len() <= i {
                items.push(Value::Table(toml::Table::new()));
            }
            set(&mut items[i], rest, value)
        }
        _ => Err(format!(
            "cannot set `{head}` inside a value that is not a table"
        )),
    }
}
