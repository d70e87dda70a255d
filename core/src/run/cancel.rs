//! A cancellation signal shared by the CLI's Ctrl-C handler and the runner.

use tokio::sync::watch;

/// Cloneable stop signal: once cancelled, stays cancelled.
#[derive(Clone)]
pub struct Cancel {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }
}

impl Cancel {
    /// Ask everything to stop.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    /// Whether stop was asked.
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once stop is asked.
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}
