//! One memory budget for all of an instance's linear memories and tables, and the caps on how
//! many of each an instance may create: wasmtime asks the store's [`ResourceLimiter`] before
//! every creation and growth.

use wasmtime::ResourceLimiter;

/// What one table element counts for against the memory budget: a `funcref` slot is one
/// host pointer (`externref` slots are smaller), so 8 bytes is the host's real cost or more.
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// Core instances one plugin instance may create (a Rust component has a handful: the
/// program, the WASI adapter and the glue modules between them).
pub(super) const MAX_INSTANCES: usize = 64;
/// Tables one plugin instance may create.
pub(super) const MAX_TABLES: usize = 64;
/// Linear memories one plugin instance may create (a Rust component has two).
pub(super) const MAX_MEMORIES: usize = 16;

/// Why a store refused to grow: carried as the trap's error so the record names the budget.
#[derive(Debug, thiserror::Error)]
#[error("{kind} exceeded its {mib} MiB memory budget ({what} would bring memories and tables to {wanted} bytes)")]
pub(super) struct MemoryBudgetExceeded {
    kind: &'static str,
    mib: u64,
    what: &'static str,
    wanted: usize,
}

/// A memory or table larger than one pooled slot holds: carried as the trap's error so the
/// record says which host cap it met (the pool itself would only fail the growth quietly).
#[derive(Debug, thiserror::Error)]
#[error("{kind} asked for a {what} of {wanted} {unit}, over the host's cap of {cap} per {what}")]
pub(super) struct SlotCapExceeded {
    kind: &'static str,
    what: &'static str,
    wanted: usize,
    cap: usize,
    unit: &'static str,
}

/// The largest single memory and table an instance may have: the pool's slot sizes, or no
/// cap (beyond the memory budget) on the on-demand allocator.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotCaps {
    pub(super) memory_bytes: usize,
    pub(super) table_elements: usize,
}

/// One budget for every linear memory and table of an instance. wasmtime asks before each
/// memory or table is created (current size 0, desired = its minimum) and before each growth,
/// so summing the increments counts everything the guest holds. Growth that fails after it was
/// allowed (past a declared maximum) stays counted: that errs towards refusing, and only the
/// guest that asked for it pays.
pub(super) struct MemoryBudget {
    kind: &'static str,
    mib: u64,
    limit: usize,
    used: usize,
    caps: SlotCaps,
}

impl MemoryBudget {
    pub(super) fn new(kind: &'static str, mib: u64, caps: SlotCaps) -> Self {
        let limit = usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        Self {
            kind,
            mib,
            limit,
            used: 0,
            caps,
        }
    }

    fn charge(&mut self, bytes: usize, what: &'static str) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_add(bytes);
        if wanted > self.limit {
            // An error, not `Ok(false)`: refusing quietly would hand the guest -1 from
            // `memory.grow`, and the record would then show whatever it did next (usually
            // an abort that says nothing about memory).
            return Err(MemoryBudgetExceeded {
                kind: self.kind,
                mib: self.mib,
                what,
                wanted,
            }
            .into());
        }
        self.used = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge(desired.saturating_sub(current), "a linear memory")?;
        // Within the budget but larger than a pooled slot holds: the pool would refuse it
        // quietly (`memory.grow` gives -1); say why instead.
        if desired > self.caps.memory_bytes {
            return Err(SlotCapExceeded {
                kind: self.kind,
                what: "linear memory",
                wanted: desired,
                cap: self.caps.memory_bytes,
                unit: "bytes",
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.charge(elements.saturating_mul(TABLE_ELEMENT_BYTES), "a table")?;
        if desired > self.caps.table_elements {
            return Err(SlotCapExceeded {
                kind: self.kind,
                what: "table",
                wanted: desired,
                cap: self.caps.table_elements,
                unit: "elements",
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
