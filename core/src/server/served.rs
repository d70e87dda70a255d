//! A backend whose server ipw manages: queries go to the inner backend; a query that fails
//! because the server died says so, with its exit status and the log's last lines, and the
//! server's CPU is read for each window.

use super::ManagedServer;
use crate::backend::{Backend, BackendError, ErrorKind, GenRequest, Generation};
use crate::config::BackendKind;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A model served by a [`ManagedServer`].
pub struct Served {
    inner: Arc<dyn Backend>,
    server: Arc<ManagedServer>,
}

impl Served {
    /// `inner` talks to `server`.
    pub fn new(inner: Arc<dyn Backend>, server: Arc<ManagedServer>) -> Self {
        Self { inner, server }
    }

    fn died(&self, status: String, attempts: u32, what: &str) -> BackendError {
        BackendError {
            kind: ErrorKind::ServerExited,
            message: self
                .server
                .error(format!("the model server exited ({status}){what}"))
                .message,
            attempts,
        }
    }
}

#[async_trait]
impl Backend for Served {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn generate(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        if let Some(status) = self.server.exited() {
            return Err(self.died(status, 1, ""));
        }
        match self.inner.generate(req).await {
            Ok(g) => Ok(g),
            Err(e) if matches!(e.kind, ErrorKind::Connect | ErrorKind::StreamClosed) => {
                // The connection drops a moment before the exit is reaped.
                for _ in 0..20 {
                    if let Some(status) = self.server.exited() {
                        let what = format!(" while the query was in flight: {e}");
                        return Err(self.died(status, e.attempts, &what));
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> serde_json::Value {
        self.inner.describe()
    }

    fn server_cpu_s(&self) -> Option<f64> {
        self.server.cpu_s()
    }

    fn gone(&self) -> Option<String> {
        self.server
            .exited()
            .map(|status| format!("the model server exited ({status})"))
    }
}
