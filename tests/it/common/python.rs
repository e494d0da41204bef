//! The platforms' own Python SDKs, run from `tests/.venv` (made by `tests/setup.sh` from the
//! pinned `tests/requirements.txt`): what real clients send, and sign, without our code.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs `script` with the venv's Python, `input` on its standard input, and returns what it
/// printed. Panics, naming the fix, when the venv is missing or the script fails.
pub fn run_python(script: &str, input: &str) -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/setup.sh` to make the venv with tests/requirements.txt",
        python.display()
    );
    let mut child = Command::new(&python)
        .args(["-c", script])
        // Every request goes to loopback: never through a proxy the machine may name.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv's python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
