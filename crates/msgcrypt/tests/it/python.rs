//! A python with wechatpy 1.8.18, and one call of tests/wechatpy_crypto.py.
//!
//! The python is, in order: `WXTOKEN_SDK_PYTHON`; the sdk e2e test's venv
//! (`<target>/sdk-venv` or `<workspace>/target/sdk-venv`, as
//! tests/src/sdk.rs makes it) when it imports wechatpy 1.8.18, unless
//! `WXTOKEN_MSGCRYPT_OWN_VENV` is set; else `<target>/msgcrypt-venv`,
//! created with `python3 -m venv` and `pip install -r
//! crates/msgcrypt/tests/requirements.txt` (recreated when that file
//! changes). No python, or no PyPI, fails the test: it never skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The wechatpy release the cross tests are pinned to.
const WECHATPY: &str = "1.8.18";

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's target directory, found as tests/src/sdk.rs finds it: the
/// nearest ancestor of this test executable with cargo's `CACHEDIR.TAG`,
/// else `CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_path_buf();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace().join(dir),
        _ => workspace().join("target"),
    }
}

/// Why `python` cannot run the driver, or `None` when it can.
fn import_error(python: &Path) -> Option<String> {
    let check = format!(
        "import wechatpy, wechatpy.crypto, cryptography; \
         assert wechatpy.__version__ == '{WECHATPY}', wechatpy.__version__"
    );
    match Command::new(python).args(["-c", &check]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Some(e.to_string()),
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e} (apt-get install -y python3 python3-venv, or set WXTOKEN_SDK_PYTHON)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find_or_install() -> PathBuf {
    if let Some(python) = std::env::var_os("WXTOKEN_SDK_PYTHON") {
        let python = PathBuf::from(python);
        if let Some(e) = import_error(&python) {
            panic!(
                "WXTOKEN_SDK_PYTHON ({}) lacks wechatpy {WECHATPY}: {e}",
                python.display()
            );
        }
        return python;
    }
    if std::env::var_os("WXTOKEN_MSGCRYPT_OWN_VENV").is_none() {
        for venv in [
            target_dir().join("sdk-venv"),
            workspace().join("target/sdk-venv"),
        ] {
            let python = venv.join("bin/python");
            if python.exists() && import_error(&python).is_none() {
                return python;
            }
        }
    }
    let requirements = tests_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("reading requirements.txt");
    let venv = target_dir().join("msgcrypt-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("wxtoken-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r crates/msgcrypt/tests/requirements.txt",
    );
    if let Some(e) = import_error(&python) {
        panic!("the new venv {} still lacks wechatpy: {e}", venv.display());
    }
    std::fs::write(&stamp, wanted).expect("writing the venv stamp");
    python
}

/// The python to use, installed at most once per test process.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(find_or_install)
}

/// Sends `requests` to tests/wechatpy_crypto.py, returns its replies.
pub fn wechatpy(requests: &[Value]) -> Vec<Value> {
    let mut child = Command::new(python())
        .arg(tests_dir().join("wechatpy_crypto.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wechatpy_crypto.py");
    let input = serde_json::to_vec(requests).expect("encoding requests");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .expect("running wechatpy_crypto.py");
    writer
        .join()
        .expect("writer thread")
        .expect("writing requests");
    assert!(
        out.status.success(),
        "wechatpy_crypto.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<Value> = serde_json::from_slice(&out.stdout).expect("decoding replies");
    assert_eq!(replies.len(), requests.len(), "one reply per request");
    replies
}
