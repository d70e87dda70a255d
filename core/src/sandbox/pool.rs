//! Admission to the instance pool: a call waits until its instance, memories and tables all
//! fit in the pool's free slots, so a busy pool delays a call instead of failing it.

use std::sync::{Arc, Condvar, Mutex};

/// Pool slots still free, and how many callers wait for some.
#[derive(Debug, Clone, Copy)]
pub(super) struct Free {
    pub(super) instances: usize,
    pub(super) memories: usize,
    pub(super) tables: usize,
    pub(super) waiting: usize,
}

/// What one call of a plugin takes from the pool: one component instance and its memories and
/// tables (known from the component before it is instantiated).
#[derive(Debug, Clone, Copy)]
pub(super) struct Needs {
    pub(super) memories: usize,
    pub(super) tables: usize,
}

/// Admission to the pool: a call waits here until its instance, memories and tables all fit,
/// so a busy pool delays a call instead of failing it, and a plugin with many memories can
/// never crowd out another plugin's call.
pub(super) struct SlotGate {
    free: Mutex<Free>,
    freed: Condvar,
    total: Free,
}

impl SlotGate {
    pub(super) fn new(total: Free) -> Self {
        Self {
            free: Mutex::new(total),
            freed: Condvar::new(),
            total,
        }
    }

    /// Whether a call needing `needs` can ever be admitted.
    pub(super) fn fits(&self, needs: Needs) -> bool {
        needs.memories <= self.total.memories && needs.tables <= self.total.tables
    }

    pub(super) fn acquire(self: &Arc<Self>, needs: Needs) -> SlotPermit {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while free.instances == 0 || free.memories < needs.memories || free.tables < needs.tables {
            free.waiting += 1;
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
            free.waiting -= 1;
        }
        free.instances -= 1;
        free.memories -= needs.memories;
        free.tables -= needs.tables;
        SlotPermit {
            gate: self.clone(),
            needs,
        }
    }
}

/// A call's place in the pool; dropped after the call's store, which hands the slots back.
pub(super) struct SlotPermit {
    gate: Arc<SlotGate>,
    needs: Needs,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let mut free = self.gate.free.lock().unwrap_or_else(|p| p.into_inner());
        free.instances += 1;
        free.memories += self.needs.memories;
        free.tables += self.needs.tables;
        // Waking costs a system call; most of the time nobody waits.
        if free.waiting > 0 {
            self.gate.freed.notify_all();
        }
    }
}
