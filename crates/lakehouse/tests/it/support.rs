//! Spawning and killing the real `lakehouse` binary, alone or as a split
//! deployment (six processes behind a gateway), with role tokens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `lakehouse serve` child process on an ephemeral port.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// `lakehouse serve --bind 127.0.0.1:0 --data-dir DIR ARGS…`, waiting until
    /// it answers `/health`.
    pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_at("127.0.0.1:0", data_dir, args, env)
    }

    /// Like [`Server::start`] on a given address (a restart on the same port).
    pub fn start_at(bind: &str, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_logged(bind, data_dir, args, env, Stdio::inherit())
    }

    /// Like [`Server::start_at`] with the server's log (stderr) sent to `stderr`.
    pub fn start_logged(
        bind: &str,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lakehouse"));
        cmd.arg("serve")
            .arg("--bind")
            .arg(bind)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("LAKEHOUSE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lakehouse");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("lakehouse did not report its address (exit: {status:?})");
            }
        };
        let url = line
            .strip_prefix("lakehouse listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_string();
        // The address is printed after the listener is bound, so requests
        // from here on queue in its backlog: no polling needed.
        Server {
            child: Some(child),
            url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the child is still running; an exited one is reaped.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("server did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `lakehouse ARGS…` to completion and returns (status, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lakehouse"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run lakehouse");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub const READER: &str = "reader-token-0123456789abcdef";
pub const WRITER: &str = "writer-token-0123456789abcdef";
pub const ADMIN: &str = "admin-token-0123456789abcdef";

/// The environment that configures the three role tokens.
pub fn token_env() -> (String, String) {
    (
        "LAKEHOUSE__AUTH__TOKENS".to_string(),
        format!("reader:read:{READER},writer:write:{WRITER},admin:admin:{ADMIN}"),
    )
}

/// One process of a deployment, restartable on its own address.
pub struct Proc {
    pub name: &'static str,
    pub server: Option<Server>,
    pub bind: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Proc {
    pub fn start(
        name: &'static str,
        data: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Proc {
        let mut p = Proc {
            name,
            server: None,
            bind: "127.0.0.1:0".to_string(),
            args,
            env,
        };
        p.spawn(data);
        p.bind = p.url().trim_start_matches("http://").to_string();
        p
    }

    pub fn spawn(&mut self, data: &Path) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.server = Some(Server::start_at(&self.bind, data, &args, &env));
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("running").url.clone()
    }

    /// Whether the process is still running (reaps it when it is not).
    pub fn alive(&mut self) -> bool {
        self.server.as_mut().is_some_and(Server::alive)
    }
}

/// A running deployment with auth on; `front` is where users connect.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub procs: Vec<Proc>,
    pub split: bool,
}

impl Cluster {
    /// `lakehouse serve` with the tokens (and vectord snapshots every 150 adds).
    pub fn all_in_one() -> Cluster {
        Self::all_in_one_with(&[("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "150")])
    }

    /// storaged, catalogd, ingestd, queryd, vectord and the gateway, each its
    /// own process, wired through environment overrides.
    pub fn split() -> Cluster {
        Self::split_with(&[("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "150")])
    }

    /// `lakehouse serve` with the tokens and `extra` in its environment.
    pub fn all_in_one_with(extra: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let p = Proc::start(
            "lakehouse",
            &dir.path().join("data"),
            vec![],
            env_with(extra, &[]),
        );
        Cluster {
            dir,
            procs: vec![p],
            split: false,
        }
    }

    /// The split deployment with the tokens and `extra` in every process's
    /// environment (each reads only its own sections).
    pub fn split_with(extra: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let only = |s: &str| vec!["--only".to_string(), s.to_string()];
        let start = |name: &'static str, wiring: &[(&str, &str)]| {
            Proc::start(name, &data, only(name), env_with(extra, wiring))
        };
        let storaged = start("storaged", &[]);
        let s_url = storaged.url();
        let catalogd = start("catalogd", &[("LAKEHOUSE__CATALOGD__STORAGED_URL", &s_url)]);
        let c_url = catalogd.url();
        let spool = dir.path().join("spool");
        let ingestd = start(
            "ingestd",
            &[
                ("LAKEHOUSE__INGESTD__STORAGED_URL", &s_url),
                ("LAKEHOUSE__INGESTD__CATALOGD_URL", &c_url),
                ("LAKEHOUSE__INGESTD__SPOOL_DIR", spool.to_str().unwrap()),
            ],
        );
        let vectord = start(
            "vectord",
            &[
                ("LAKEHOUSE__VECTORD__STORAGED_URL", &s_url),
                ("LAKEHOUSE__VECTORD__CATALOGD_URL", &c_url),
            ],
        );
        let queryd = start(
            "queryd",
            &[
                ("LAKEHOUSE__QUERYD__STORAGED_URL", &s_url),
                ("LAKEHOUSE__QUERYD__CATALOGD_URL", &c_url),
                ("LAKEHOUSE__QUERYD__VECTORD_URL", &vectord.url()),
            ],
        );
        let gateway = start(
            "gateway",
            &[
                ("LAKEHOUSE__GATEWAY__STORAGED_URL", &s_url),
                ("LAKEHOUSE__GATEWAY__CATALOGD_URL", &c_url),
                ("LAKEHOUSE__GATEWAY__INGESTD_URL", &ingestd.url()),
                ("LAKEHOUSE__GATEWAY__QUERYD_URL", &queryd.url()),
                ("LAKEHOUSE__GATEWAY__VECTORD_URL", &vectord.url()),
            ],
        );
        Cluster {
            dir,
            procs: vec![storaged, catalogd, ingestd, queryd, vectord, gateway],
            split: true,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn front(&self) -> String {
        self.procs.last().unwrap().url()
    }

    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    pub fn kill9(&mut self, name: &str) {
        self.proc(name).server.as_mut().unwrap().kill9();
    }

    /// Starts `name` again on its old address (blocking; no readiness wait).
    pub fn respawn(&mut self, name: &str) {
        let data = self.data();
        self.proc(name).spawn(&data);
    }
}

/// The token list, then `extra`, then `wiring`, as owned pairs.
fn env_with(extra: &[(&str, &str)], wiring: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![token_env()];
    env.extend(
        extra
            .iter()
            .chain(wiring)
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env
}

/// A Parquet file of `rows` rows of one u64 column, padded with footer
/// metadata to exactly `size` bytes.
pub fn parquet_file(rows: u64, size: usize) -> Vec<u8> {
    use arrow::array::{RecordBatch, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    let write = |pad: usize| -> Vec<u8> {
        let schema =
            std::sync::Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)]));
        let column = std::sync::Arc::new(UInt64Array::from_iter_values(0..rows));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new("pad".into(), "p".repeat(pad))]))
            .build();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        buf
    };
    let mut pad = size.saturating_sub(write(0).len());
    for _ in 0..8 {
        let b = write(pad);
        if b.len() == size {
            return b;
        }
        pad = (pad + size).checked_sub(b.len()).expect("size too small");
    }
    panic!("cannot pad a Parquet file to {size} bytes");
}

/// Held by the tests that load the machine on purpose (the adversarial
/// suite, the soak, hundreds of slow connections) and by the browser suite
/// (it times the console's first load), so they run one at a time: each
/// measures timings that another one beside it would distort.
/// (`HEAVY.blocking_lock()` in a plain test, `HEAVY.lock().await` in an
/// async one.)
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
