//! Every command README.md and deploy/examples show, exercised: each
//! `wxtoken …` line of README's shell blocks parses as the CLI defines it
//! (usage brackets both ways); each `wechat-sim …` command of README and
//! the example configs starts and answers `/healthz`; and the local dev
//! walkthrough of deploy/examples/dev.toml (its sim command, then
//! `wxtoken serve` with that file) ends with a token. Only the fixed ports
//! are moved (`--listen`, `WXTOKEN__…` overrides), so two runs never clash.
//! The demo line is run as written by `papercuts.rs`; the chaos and bench
//! lines are run by CI (`.ci/run`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use wxtoken_e2e::wxtoken_bin;

const README: &str = include_str!("../../../README.md");
const EXAMPLES: [(&str, &str); 3] = [
    (
        "dev.toml",
        include_str!("../../../deploy/examples/dev.toml"),
    ),
    (
        "wxtoken.toml",
        include_str!("../../../deploy/examples/wxtoken.toml"),
    ),
    (
        "compose.toml",
        include_str!("../../../deploy/examples/compose.toml"),
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sim_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("WECHAT_SIM_BIN") {
        return PathBuf::from(bin);
    }
    let bin = wxtoken_bin().with_file_name("wechat-sim");
    assert!(bin.exists(), "no wechat-sim at {}", bin.display());
    bin
}

/// Lines of README's fenced shell blocks.
fn readme_shell_lines() -> Vec<&'static str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in README.lines() {
        if line.starts_with("```") {
            inside = !inside && line.trim_start_matches('`').trim() == "sh";
            continue;
        }
        if inside {
            lines.push(line);
        }
    }
    lines
}

/// The words of a command, its `# comment` and `VAR=… ` prefixes removed.
fn words(line: &str) -> Vec<String> {
    let code = line.split(" #").next().unwrap_or(line);
    code.split_whitespace()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// `a [--x [--y N]]` → `a`, `a --x`, `a --x --y N`: every form the usage shows.
fn expand(words: &[String]) -> Vec<Vec<String>> {
    let mut forms = Vec::new();
    for depth in 0..=words.iter().filter(|w| w.starts_with('[')).count() {
        let mut open = 0;
        let mut form = Vec::new();
        for w in words {
            let opens = w.matches('[').count();
            open += opens;
            let word = w.trim_matches(|c| c == '[' || c == ']');
            if open <= depth && !word.is_empty() {
                form.push(word.to_owned());
            }
            open -= w.matches(']').count();
        }
        forms.push(form);
    }
    forms
}

/// The `wxtoken` arguments of a README line, if it runs wxtoken.
fn wxtoken_args(line: &str) -> Option<Vec<String>> {
    let w = words(line);
    let at = w.iter().position(|x| x == "wxtoken")?;
    // `docker build … -t wxtoken .` names an image, not a command.
    if at > 0 && w[at - 1] == "-t" {
        return None;
    }
    // `cargo run … --bin wxtoken -- demo`
    if at > 0 && w[at - 1] == "--bin" {
        let dashes = w.iter().position(|x| x == "--")?;
        return Some(w[dashes + 1..].to_vec());
    }
    Some(w[at + 1..].to_vec())
}

#[test]
fn every_wxtoken_command_in_readme_parses() {
    let mut checked = 0;
    for line in readme_shell_lines() {
        let Some(args) = wxtoken_args(line) else {
            continue;
        };
        for form in expand(&args) {
            let argv = std::iter::once("wxtoken".to_owned()).chain(form.iter().cloned());
            if let Err(e) = wxtoken_coordinator::cli::Cli::try_parse_from(argv) {
                panic!("README line `{line}` ({form:?}) does not parse:\n{e}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 12,
        "only {checked} wxtoken commands found in README"
    );
}

/// `wechat-sim …` commands: README's inline one and the example configs'.
fn sim_commands() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let spans = README
        .lines()
        .filter(|l| !l.starts_with("```"))
        .flat_map(|l| l.split('`').skip(1).step_by(2));
    for span in spans {
        if span.starts_with("wechat-sim --") {
            out.push(("README.md".to_owned(), words(span)));
        }
    }
    for (name, text) in EXAMPLES {
        for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
            if line.trim_start().starts_with("wechat-sim --") {
                out.push((format!("deploy/examples/{name}"), words(line)));
            }
        }
    }
    out
}

/// A documented sim command with its `--listen` on port 0 and `$VAR`s set;
/// waits for its listening line and returns the bound address.
fn spawn_sim(words: &[String], secret: &str) -> (Child, String) {
    let mut args: Vec<String> = words[1..]
        .iter()
        .map(|w| w.replace("$SHOP_SECRET", secret))
        .collect();
    match args.iter().position(|w| w == "--listen") {
        Some(i) => args[i + 1] = "127.0.0.1:0".into(),
        None => args.extend(["--listen".into(), "127.0.0.1:0".into()]),
    }
    let mut child = Command::new(sim_bin())
        .args(&args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wechat-sim starts");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(addr) = line.split("listening addr=").nth(1) {
            let addr = addr.split_whitespace().next().unwrap_or(addr).to_owned();
            std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
            return (child, addr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("`{}` did not start:\n{seen}", words.join(" "));
}

#[test]
fn every_documented_wechat_sim_command_starts_and_answers_healthz() {
    let commands = sim_commands();
    assert!(commands.len() >= 2, "{commands:?}");
    for (source, words) in commands {
        let (mut sim, addr) = spawn_sim(&words, "documented-secret");
        let out = Command::new(sim_bin())
            .args(["--healthcheck", &format!("http://{addr}/healthz")])
            .output()
            .unwrap();
        let _ = sim.kill();
        let _ = sim.wait();
        assert!(
            out.status.success(),
            "{source}: `{}` healthcheck: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing listening: the probe fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(sim_bin())
        .args(["--healthcheck", &format!("http://{closed}/healthz")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// deploy/examples/dev.toml's walkthrough: its wechat-sim command (60 s
/// tokens, no --overlap) and `SHOP_SECRET=... wxtoken serve --config
/// deploy/examples/dev.toml` store a token `wxtoken get shop` prints.
#[test]
fn the_dev_example_walkthrough_ends_with_a_token() {
    let secret = "dev-walkthrough-secret";
    let (_, sim_words) = sim_commands()
        .into_iter()
        .find(|(source, _)| source.ends_with("dev.toml"))
        .expect("dev.toml shows a wechat-sim command");
    let (mut sim, addr) = spawn_sim(&sim_words, secret);
    let redis = wxtoken_testkit::RedisServer::spawn();
    let config = repo().join("deploy/examples/dev.toml");
    let env = [
        ("SHOP_SECRET", secret.to_owned()),
        ("WXTOKEN__REDIS__URL", redis.url()),
        ("WXTOKEN__UPSTREAM__BASE_URL", format!("http://{addr}")),
        ("WXTOKEN__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let mut serve = Command::new(wxtoken_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    let got =
        wxtoken_testkit::wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            let out = Command::new(wxtoken_bin())
                .args(["get", "shop", "--config"])
                .arg(&config)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env_remove("SHOP_SECRET")
                .output()
                .unwrap();
            printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            out.status.success() && !printed.is_empty()
        });
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(got, "no token from the dev walkthrough");
    assert!(!printed.contains(secret));
}
