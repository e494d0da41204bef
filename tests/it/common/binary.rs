//! The real `callmux` binary, as an operator runs it: `callmux serve` on a free loopback
//! port, its output kept for assertions, killed when the test ends, pass or fail. The load
//! benchmark starts it here too.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::TestApp;

/// How long the binary may take to log its address, and to exit when asked to stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// `callmux` with nothing of the test's own environment that would change what it does: no
/// inherited `CALLMUX_*` variable (config path, log format, any setting) and no `RUST_LOG`.
pub fn callmux() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callmux"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CALLMUX_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    cmd
}

/// Where [`Binary::start`] reads its providers.toml from.
pub enum ConfigFile<'a> {
    /// This text, written to a temporary file that lives as long as the [`Binary`].
    Toml(&'a str),
    /// A file the test owns (or the shipped one).
    Path(&'a Path),
}

impl<'a> From<&'a str> for ConfigFile<'a> {
    fn from(toml: &'a str) -> Self {
        ConfigFile::Toml(toml)
    }
}

impl<'a> From<&'a String> for ConfigFile<'a> {
    fn from(toml: &'a String) -> Self {
        ConfigFile::Toml(toml)
    }
}

impl<'a> From<&'a Path> for ConfigFile<'a> {
    fn from(path: &'a Path) -> Self {
        ConfigFile::Path(path)
    }
}

impl<'a> From<&'a PathBuf> for ConfigFile<'a> {
    fn from(path: &'a PathBuf) -> Self {
        ConfigFile::Path(path)
    }
}

/// A running `callmux serve`, and everything it has written so far.
pub struct Binary {
    child: Child,
    /// A client for it, at the address it logged.
    pub app: TestApp,
    config: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Binary {
    /// Starts `callmux serve --config <config> <args>` with `CALLMUX_SERVER__BIND=127.0.0.1:0`
    /// and `env` set (after [`callmux`] has cleared the inherited environment: set `RUST_LOG`
    /// here for more than the default `info`), and waits until it logs the address it listens
    /// on (`callmux listening on http://ADDR`).
    pub fn start<'a>(
        config: impl Into<ConfigFile<'a>>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Binary {
        let (mut binary, listening) = Self::spawn(
            callmux(),
            config.into(),
            &[("CALLMUX_SERVER__BIND", "127.0.0.1:0")],
            env,
            args,
        );
        // Disconnected (the reader ended) as soon as callmux exits without listening.
        binary.app.addr = listening.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "callmux did not log the address it listens on; its output:\n{}",
                binary.output()
            )
        });
        binary
    }

    /// [`Binary::start`] for a benchmark: logging at `warn` only, since callmux logs each
    /// request at `info`, so it does not log its address. It is started on a free loopback
    /// port chosen here (on another, should that one be taken meanwhile) and polled until it
    /// accepts connections. Its environment is cleared (`env` aside), so that nothing of the
    /// machine's, such as a proxy variable, comes between it and the upstreams.
    #[allow(dead_code, reason = "the load benchmark's, which shares this harness")]
    pub fn start_quiet(config: &str, env: &[(&str, &str)]) -> Binary {
        for _attempt in 0..3 {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port");
            let bind = addr.to_string();
            let fixed = [
                ("CALLMUX_SERVER__BIND", bind.as_str()),
                ("RUST_LOG", "warn"),
                ("NO_COLOR", "1"),
            ];
            let mut bare = Command::new(env!("CARGO_BIN_EXE_callmux"));
            bare.env_clear();
            let (mut binary, _) = Self::spawn(bare, ConfigFile::Toml(config), &fixed, env, &[]);
            binary.app.addr = addr;
            if binary.accepts_within(PATIENCE) {
                return binary;
            }
            eprintln!(
                "callmux did not start on {addr}; its output:\n{}",
                binary.output()
            );
        }
        panic!("callmux failed to start three times; config:\n{config}");
    }

    /// Runs `command` (the binary) as `serve --config <config> <args>` with `fixed` and then
    /// `env` set, its output read as it comes; the address it logs is sent on the channel.
    fn spawn(
        mut command: Command,
        config: ConfigFile<'_>,
        fixed: &[(&str, &str)],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (Binary, std::sync::mpsc::Receiver<SocketAddr>) {
        let (config, dir) = match config {
            ConfigFile::Toml(toml) => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("providers.toml");
                std::fs::write(&path, toml).unwrap();
                (path, Some(dir))
            }
            ConfigFile::Path(path) => (path.to_path_buf(), None),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config)
            .args(args)
            .envs(fixed.iter().copied())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("callmux starts");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let into = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                into.lock().unwrap().push(line);
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().unwrap();
        let into = stdout.clone();
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            into.lock().unwrap().push_str(&text);
        });

        let binary = Binary {
            child,
            app: TestApp {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                http: reqwest::Client::new(),
            },
            config,
            stderr,
            stdout,
            readers: vec![err_reader, out_reader],
            _dir: dir,
        };
        (binary, rx)
    }

    /// Whether it accepts a connection within `bound`; `false` at once if it exits.
    #[allow(dead_code, reason = "for `start_quiet`")]
    fn accepts_within(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if self.try_wait().is_some() {
                return false;
            }
            if TcpStream::connect_timeout(&self.app.addr, Duration::from_millis(100)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// The config file it was started on: rewrite it to test reloads.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} {} failed", self.pid());
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child can be waited on")
    }

    /// Waits (polling, without blocking the runtime) up to `bound` for it to exit.
    pub async fn exit_within(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every line it has written to stderr (its log), so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything it has written so far: its stderr lines, then its stdout.
    pub fn output(&self) -> String {
        let mut all = String::new();
        for line in self.stderr.lock().unwrap().iter() {
            all.push_str(line);
            all.push('\n');
        }
        all.push_str(&self.stdout.lock().unwrap());
        all
    }

    /// Waits (bounded) until some stderr line satisfies `pred`, and returns it.
    pub async fn log_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.stderr_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {what}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it with SIGTERM (SIGKILL if it lingers) and returns everything it wrote.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        while self.try_wait().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in callmux's `callmux listening on http://ADDR` line, in either log format.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    const MARK: &str = "listening on http://";
    let at = line.find(MARK)? + MARK.len();
    let addr: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || ".:".contains(*c))
        .collect();
    addr.parse().ok()
}
