//! Managed inference servers: a model whose `[models.server]` says how to start its server
//! (llama-server, vLLM, SGLang, Ollama or any command) is served by a process ipw starts just
//! before the model's session and stops right after it, so one model at a time holds the
//! device and nobody starts, configures or stops servers by hand.
//!
//! The server gets a free port on 127.0.0.1, the measurement-safe settings of its kind
//! ([`launch`]), its own process group (so its workers are stopped with it and its CPU is
//! counted together, [`proctree`]) and a parent-death signal (a `kill -9` of ipw takes it
//! down). It is ready when it answers a first token; its output goes to the run directory's
//! `server.log`; the manifest keeps its command line (secrets redacted), version, PID and
//! settings ([`ServerInfo`]).

mod launch;
mod proctree;
mod served;

pub use launch::{launch, redacted, Launch, HOST};
pub use served::Served;

use crate::backend::{Backend, GenRequest, Message};
use crate::config::{ModelConfig, ServerKind};
pub use crate::records::ServerInfo;
use proctree::ProcessGroup;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The file in the run directory that holds every managed server's output, each start
/// introduced by a line naming the session and command.
pub const LOG_FILE: &str = "server.log";

/// How many of the log's last lines an error quotes.
const TAIL_LINES: usize = 20;

/// A managed server that could not be started, did not become ready, or died.
#[derive(Debug, thiserror::Error)]
#[error("model `{model}`: {message}")]
pub struct ServerError {
    /// The model whose server it is.
    pub model: String,
    /// What happened, with the log's last lines where there are any.
    pub message: String,
}

/// How the server process ended, once it has.
type Exit = Arc<(Mutex<Option<String>>, Condvar)>;

/// A running managed server. Dropping it stops it.
pub struct ManagedServer {
    model: String,
    pid: i32,
    port: u16,
    kind: ServerKind,
    grace: Duration,
    exit: Exit,
    group: ProcessGroup,
    log: PathBuf,
    log_from: u64,
    keeper: Option<std::thread::JoinHandle<()>>,
    info: ServerInfo,
}

impl ManagedServer {
    /// Start `model`'s server, sized for `concurrency` queries at once, logging to
    /// `run_dir/server.log`. Returns once the process runs, not once it is ready
    /// ([`ManagedServer::wait_ready`]).
    pub fn start(
        model: &ModelConfig,
        concurrency: usize,
        run_dir: &Path,
        session: usize,
    ) -> Result<Self, ServerError> {
        let cfg = model.server.as_ref().expect("called for a managed model");
        let err = |message: String| ServerError {
            model: model.name.clone(),
            message,
        };
        let port = match cfg.port {
            Some(p) => {
                // A port someone else holds would have the server fail to bind, or worse, have
                // ipw measure whatever already answers there.
                std::net::TcpListener::bind((HOST, p)).map_err(|e| {
                    err(format!(
                        "server.port {p} is not free on {HOST} ({e}); leave `port` out for ipw to pick a free one"
                    ))
                })?;
                p
            }
            None => free_port().map_err(|e| err(format!("no free port on {HOST}: {e}")))?,
        };
        let l = launch(cfg, model.server_model(), port, concurrency);
        let command = redacted(&l.program, &l.args);
        let version = (cfg.kind != ServerKind::Command)
            .then(|| version_of(cfg.kind, &l.program))
            .flatten();
        let log = run_dir.join(LOG_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| err(format!("{}: {e}", log.display())))?;
        writeln!(
            file,
            "==== ipw: session {session}, model `{}`: {}",
            model.name,
            command.join(" ")
        )
        .map_err(|e| err(format!("{}: {e}", log.display())))?;
        let log_from = file
            .metadata()
            .map_err(|e| err(format!("{}: {e}", log.display())))?
            .len();
        let exit: Exit = Arc::new((Mutex::new(None), Condvar::new()));
        let (pid, keeper) = spawn_kept(&l, file, exit.clone())
            .map_err(|e| err(format!("cannot start `{}`: {e}", l.program)))?;
        let base_url = match cfg.kind {
            ServerKind::Ollama => format!("http://{HOST}:{port}"),
            ServerKind::Command if model.backend == crate::config::BackendKind::Ollama => {
                format!("http://{HOST}:{port}")
            }
            _ => format!("http://{HOST}:{port}/v1"),
        };
        // The experiment's environment values may be tokens: only names are kept.
        let mut env: Vec<String> = l
            .env
            .iter()
            .map(|(k, v)| match cfg.env.contains_key(k) {
                true => format!("{k}=***"),
                false => format!("{k}={v}"),
            })
            .collect();
        env.sort();
        tracing::info!(model = %model.name, pid, port, "started server: {}", command.join(" "));
        Ok(Self {
            model: model.name.clone(),
            pid,
            port,
            kind: cfg.kind,
            grace: Duration::from_secs_f64(cfg.stop_grace_s.unwrap_or(10.0)),
            exit,
            group: ProcessGroup::new(pid),
            log,
            log_from,
            keeper: Some(keeper),
            info: ServerInfo {
                kind: cfg.kind.as_str().into(),
                command,
                env,
                settings: l.settings,
                version,
                pid: pid as u32,
                base_url,
                log: LOG_FILE.into(),
                ready_s: None,
                idle_during_baseline: false,
                cpu_s: None,
                exit: None,
            },
        })
    }

    /// The model config the backend connects with: the server's address filled in.
    pub fn model_config(&self, model: &ModelConfig) -> ModelConfig {
        let mut m = model.clone();
        m.base_url = Some(self.info.base_url.clone());
        m
    }

    /// Wait until the server answers a first token through `backend`, at most `timeout`. An
    /// exit before that, or the timeout, is an error quoting the log's last lines.
    pub async fn wait_ready(
        &mut self,
        backend: &dyn Backend,
        timeout: Duration,
    ) -> Result<(), ServerError> {
        let started = Instant::now();
        let probe = GenRequest {
            messages: vec![Message {
                role: "user".into(),
                content: "Say OK.".into(),
            }],
            max_tokens: 1,
            temperature: 0.0,
            seed: 0,
            stop: Vec::new(),
        };
        loop {
            if let Some(status) = self.exited() {
                return Err(self.error(format!("its server exited before it was ready ({status})")));
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(self.error(format!(
                    "its server did not answer a first token within {} s (server.ready_timeout_s)",
                    timeout.as_secs_f64()
                )));
            }
            let listening = std::net::TcpStream::connect_timeout(
                &(std::net::Ipv4Addr::LOCALHOST, self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok();
            if listening {
                if let Ok(Ok(_)) = tokio::time::timeout(left, backend.generate(&probe)).await {
                    self.info.ready_s = Some(started.elapsed().as_secs_f64());
                    tracing::info!(model = %self.model, "server ready after {:.1} s", started.elapsed().as_secs_f64());
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(250).min(left)).await;
        }
    }

    /// How the process ended, once it has.
    pub fn exited(&self) -> Option<String> {
        self.exit
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// CPU seconds the server's process group has used so far.
    pub fn cpu_s(&self) -> Option<f64> {
        self.group.cpu_s()
    }

    /// What the manifest keeps about it.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Mark that the idle baseline was taken with this server up and idle.
    pub fn note_idle_baseline(&mut self) {
        self.info.idle_during_baseline = true;
    }

    /// Record the server's CPU over the session (`cpu_s` at the session's start).
    pub fn note_session_cpu(&mut self, from: Option<f64>) {
        self.info.cpu_s = from.zip(self.cpu_s()).map(|(a, b)| (b - a).max(0.0));
    }

    /// An error naming the model, with the log's last lines.
    pub fn error(&self, what: String) -> ServerError {
        ServerError {
            model: self.model.clone(),
            message: format!(
                "{what}; last lines of {}:\n{}",
                self.log.display(),
                self.tail()
            ),
        }
    }

    /// The last lines this server wrote to the log.
    pub fn tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            if f.seek(SeekFrom::Start(self.log_from)).is_ok() {
                let mut bytes = Vec::new();
                let _ = f.take(1 << 20).read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return "  (nothing)".into();
        }
        lines[lines.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(|l| format!("  {}", l.chars().take(300).collect::<String>()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stop it: SIGTERM to its process group, SIGKILL after the grace period, and whatever
    /// of the group is left then. Returns the manifest's record of it, how it ended included.
    pub fn stop(mut self) -> ServerInfo {
        self.shut_down();
        self.info.clone()
    }

    fn shut_down(&mut self) {
        let Some(keeper) = self.keeper.take() else {
            return;
        };
        let already = self.exited();
        if already.is_none() {
            signal_group(self.pid, libc::SIGTERM);
            if !self.wait_exit(self.grace) {
                tracing::warn!(model = %self.model, "server did not stop within {} s of SIGTERM: killing it", self.grace.as_secs_f64());
                signal_group(self.pid, libc::SIGKILL);
                self.wait_exit(Duration::from_secs(5));
            }
        }
        // Workers the server started and left behind share its group.
        signal_group(self.pid, libc::SIGKILL);
        let _ = keeper.join();
        self.info.exit = Some(match already {
            Some(status) => format!("exited by itself: {status}"),
            None => format!("stopped by ipw: {}", self.exited().unwrap_or_default()),
        });
        tracing::info!(model = %self.model, kind = self.kind.as_str(), "server {}", self.info.exit.as_deref().unwrap_or(""));
    }

    fn wait_exit(&self, within: Duration) -> bool {
        let (lock, cv) = &*self.exit;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, within, |e| e.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.is_some()
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill() with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((HOST, 0))?.local_addr()?.port())
}

/// Start the server from a thread of its own that then waits for it. The parent-death signal
/// fires when the thread that forked the child ends, so that thread must outlive the server:
/// this one does, and when ipw dies (even by `kill -9`) the kernel kills the server.
fn spawn_kept(
    l: &Launch,
    log: std::fs::File,
    exit: Exit,
) -> std::io::Result<(i32, std::thread::JoinHandle<()>)> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let mut cmd = std::process::Command::new(&l.program);
    cmd.args(&l.args)
        .envs(&l.env)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    // SAFETY: getpid is async-signal-safe; read before the fork, compared in the child.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // ipw died between the fork and the prctl: nobody would stop this server.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let keeper = std::thread::Builder::new()
        .name("ipw-server-keeper".into())
        .spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(child.id() as i32));
            let status = match child.wait() {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => format!("exit status {c}"),
                    (None, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
                    _ => s.to_string(),
                },
                Err(e) => format!("could not be waited for: {e}"),
            };
            let (lock, cv) = &*exit;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
            cv.notify_all();
        })?;
    match rx.recv() {
        Ok(Ok(pid)) => Ok((pid, keeper)),
        Ok(Err(e)) => {
            let _ = keeper.join();
            Err(e)
        }
        Err(_) => Err(std::io::Error::other(
            "the server's keeper thread ended early",
        )),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

/// The server's version as it reports it (`--version`), within 10 s; `None` if it says
/// nothing usable.
fn version_of(kind: ServerKind, program: &str) -> Option<String> {
    ask_version(kind, program).map(|(_, line)| line)
}

/// Whether a server kind can be started here as the experiment would without `program`: its
/// default program on `PATH` (and, for SGLang, the `sglang` module importable), with the version
/// it reports. For `ipw doctor`.
pub fn installed(kind: ServerKind) -> Result<String, String> {
    let program = launch::default_program(kind);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("`{program}` is not on PATH (or give `program` in [models.server])")
        })?;
    match ask_version(kind, &found.to_string_lossy()) {
        Some((true, line)) => Ok(format!("{} ({line})", found.display())),
        Some((false, line)) if kind == ServerKind::Sglang => {
            Err(format!("python3 cannot import sglang: {line}"))
        }
        Some((false, line)) => Ok(format!("{} ({line})", found.display())),
        None => Ok(format!("{} (no version reported)", found.display())),
    }
}

/// Run the version query: whether it exited 0, and its most telling line.
fn ask_version(kind: ServerKind, program: &str) -> Option<(bool, String)> {
    let args: &[&str] = match kind {
        ServerKind::Sglang => &["-c", "import sglang; print('sglang', sglang.__version__)"],
        _ => &["--version"],
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().ok()?;
    let ok = out.status.success();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("version"))
        .or(if ok { lines.first() } else { lines.last() })
        .map(|l| (ok, l.chars().take(200).collect()))
}
