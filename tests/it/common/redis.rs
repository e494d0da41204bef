//! A real `redis-server` for the tests of shared state: started on a free loopback port in a
//! temporary folder, with nothing saved to disk, stopped and restarted on the same port at
//! will, and killed when the test ends; plus a raw client, for tests that look into Redis or
//! write to it as a stranger would.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variables a config made by [`RedisServer::state_toml`] reads.
pub const REDIS_URL_VAR: &str = "TEST_REDIS_URL";
pub const STATE_SECRET_VAR: &str = "TEST_STATE_SECRET";
/// The fleet's MAC secret in these tests.
pub const STATE_SECRET: &str = "test-fleet-secret-0123456789abcdef";

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// `[state]` for a fleet on Redis, reading the URL and the secret from the test variables.
/// Its timeout is generous, so a machine busy with the other tests does not degrade it.
pub fn state_toml() -> String {
    format!(
        "[state]\nbackend = \"redis\"\nredis_url_env = \"{REDIS_URL_VAR}\"\nsecret_env = \"{STATE_SECRET_VAR}\"\ntimeout_ms = 1000\n"
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// A fresh `redis-server` on a free port. Fails the test, saying how to install it, if
    /// there is none.
    pub async fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The variables a replica over this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (REDIS_URL_VAR, self.url()),
            (STATE_SECRET_VAR, STATE_SECRET.to_string()),
        ]
    }

    /// Starts it (again) on its port, empty, and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): the shared-state tests need a real one; \
                     `bash tests/setup.sh` installs it (Debian's redis-server)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = self.try_client().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it (as a crash would); its data is gone with it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen server would not die of SIGKILL any later, but be sure it runs.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing is answered, as with a Redis
    /// that hangs; [`RedisServer::resume`] lets it go on.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    async fn try_client(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// A raw client, as anyone with access to this Redis has.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        self.try_client().await.expect("redis-server is reachable")
    }

    /// Every key it holds.
    pub async fn keys(&self) -> Vec<String> {
        let mut c = self.client().await;
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    /// The value of `key` as stored (`GET`), if it is a string.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.client().await)
            .await
            .unwrap()
    }

    /// Writes `value` under `key`, as a stranger with access to Redis could.
    pub async fn set(&self, key: &str, value: &[u8]) {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.client().await)
            .await
            .unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
