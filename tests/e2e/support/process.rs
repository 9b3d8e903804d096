//! Running `tooltrail up` as a real child process on 127.0.0.1:0 and talking HTTP to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::Deadline;

/// A running `tooltrail up`.
pub struct Tooltrail {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
    stderr: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Tooltrail {
    /// Starts `tooltrail up` in a fresh temporary data directory.
    pub async fn up(env: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut up = Self::up_in(dir.path(), env).await?;
        up._owned = Some(dir);
        Ok(up)
    }

    /// Starts `tooltrail up` on an existing data directory.
    pub async fn up_in(data_dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        Self::start(
            &[
                "up",
                "--data-dir",
                path_str(data_dir)?,
                "--listen",
                "127.0.0.1:0",
            ],
            data_dir,
            env,
        )
        .await
    }

    /// Starts `tooltrail --config CONFIG up` on `data_dir`, with `extra` flags
    /// after `up`'s own.
    pub async fn up_with_config(config: &Path, data_dir: &Path, extra: &[&str]) -> Result<Self> {
        let mut args = vec![
            "--config",
            path_str(config)?,
            "up",
            "--data-dir",
            path_str(data_dir)?,
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::start(&args, data_dir, &[]).await
    }

    /// Starts the binary with `args`; waits until it prints the address it listens on.
    pub async fn start(args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tooltrail"));
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().context("start tooltrail")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr is piped")?).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let deadline = Deadline::after(Duration::from_secs(60));
        let addr = loop {
            let left = deadline.remaining("tooltrail to print its listening address")?;
            let line = match tokio::time::timeout(left, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => {
                    let status = child.wait().await?;
                    bail!(
                        "tooltrail exited ({status}) before listening:\n{}",
                        stderr.lock().unwrap()
                    );
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => bail!(
                    "tooltrail did not start listening:\n{}",
                    stderr.lock().unwrap()
                ),
            };
            stderr.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.trim().parse::<SocketAddr>()?;
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Ok(Self {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            _owned: None,
            stderr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    pub fn lake(&self) -> PathBuf {
        self.data_dir.join("lake")
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Where it listens, for clients that speak HTTP by hand.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs an NDJSON body to /v1/events; the status and the JSON reply.
    pub async fn post_events(
        &self,
        body: String,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let mut request = self
            .client
            .post(self.url("/v1/events"))
            .header("content-type", "application/x-ndjson")
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.context("POST /v1/events")?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.context("a JSON reply")?))
    }

    /// POSTs a JSON array body to /v1/events.
    pub async fn post_json(&self, body: String) -> Result<(u16, Value)> {
        let response = self
            .client
            .post(self.url("/v1/events"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self.client.get(self.url(path)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    pub async fn get_text(&self, path: &str) -> Result<String> {
        let response = self.client.get(self.url(path)).send().await?;
        ensure!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub async fn kill_9(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(mut self) -> Result<ExitStatus> {
        let pid = self.child.id().context("the child is running")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .with_context(|| {
                format!("tooltrail did not exit after SIGTERM:\n{}", self.stderr())
            })??;
        Ok(exit)
    }

    /// SIGTERM, and a clean exit expected.
    /// [`Tooltrail::stop`], returning everything it wrote to stderr.
    pub async fn stop_with_stderr(self) -> Result<String> {
        let stderr = self.stderr.clone();
        self.stop().await?;
        let text = stderr.lock().unwrap().clone();
        Ok(text)
    }

    pub async fn stop(self) -> Result<()> {
        let stderr = self.stderr.clone();
        let status = self.terminate().await?;
        ensure!(
            status.success(),
            "tooltrail exited with {status}:\n{}",
            stderr.lock().unwrap()
        );
        Ok(())
    }
}

pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Runs the binary to completion with extra environment; fails with its stderr unless it exits 0.
pub async fn run_tooltrail_env(
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<std::process::Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tooltrail"));
    command.args(args).kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| {
            format!(
                "`tooltrail {}` did not finish within {limit:?}",
                args.join(" ")
            )
        })??;
    ensure!(
        output.status.success(),
        "`tooltrail {}` failed with {}:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// `tooltrail sql --lake LAKE --format csv SQL`: the CSV it prints.
pub async fn sql_csv(lake: &Path, sql: &str) -> Result<String> {
    let out = run_tooltrail_env(
        &["sql", "--lake", path_str(lake)?, "--format", "csv", sql],
        &[],
        Duration::from_secs(60),
    )
    .await?;
    Ok(String::from_utf8(out.stdout)?)
}
