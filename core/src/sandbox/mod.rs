//! The WASM sandbox every plugin kind runs in: graders ([`crate::grade`]), routers
//! ([`crate::routing::wasm`]) and whatever kind comes next. A plugin is a component anyone
//! can share as a `.wasm` file; nobody has to trust it.
//!
//! What the sandbox guarantees, for every call of every plugin:
//! - **a fresh instance**: nothing a call leaves behind is seen by the next (instances come
//!   from a pre-linked `InstancePre` into wasmtime's pooling allocator, whose slots, stacks
//!   and copy-on-write memory images are reset and reused, so this is cheap; a call waits for
//!   free slots instead of failing);
//! - **limits** ([`Limits`], each kind with its own defaults): fuel (a deterministic
//!   instruction budget), a wall-clock deadline that holds whatever the guest calls (a
//!   blocking WASI sleep included; time waiting for the judge does not count), one memory
//!   budget for all of an instance's memories and tables, and caps on the `judge` host call;
//! - **nothing from the machine**: WASI is linked (Rust's std needs it) with no preopened
//!   files, no environment, no arguments, no sockets and no name lookups; the guest gets only
//!   the `ipw:plugins/host` calls (`log`, `judge` when the plugin is given one,
//!   `regex-captures`);
//! - **a failure stays a value**: a trap, a limit or a malformed result is a
//!   [`SandboxError`] for that call, naming the limit it met; the caller goes on.
//!
//! Compiled components are kept on disk (`$IPW_CACHE/wasm`), verified before use.
//!
//! A new plugin kind: add its world to `sdk/wit` (importing `host`), generate its bindings
//! with `with:` pointing `ipw:plugins/types` and `ipw:plugins/host` at this module's
//! bindings (as `grade::wasm` and `routing::wasm` do), implement its own interface's `Host`
//! trait for [`CallState`] if it has one, then [`Host::load`] it with its kind's name, its
//! limits and its world's `add_to_linker`, wrap [`Loaded::pre`] in the world's `...Pre`, and
//! make each call with [`Sandbox::run`]:
//!
//! ```ignore
//! let loaded = host.load("router", id, &bytes, Limits::router(), None, |l| {
//!     bindings::Router::add_to_linker::<CallState, HasSelf<CallState>>(l, |s| s)
//! })?;
//! let pre = bindings::RouterPre::new(loaded.pre)?;
//! let choice = loaded.sandbox.run(async |store| {
//!     let instance = pre.instantiate_async(&mut *store).await?;
//!     instance.call_route(store, &query, &candidates, params).await
//! })?;
//! ```

mod cache;
mod call;
mod deadline;
mod engine;
mod error;
mod host;
pub(crate) mod host_calls;
mod limits;
mod memory;
mod patterns;
mod pool;

pub use call::Sandbox;
pub use error::SandboxError;
pub use host::{Host, Loaded};
pub use host_calls::{cut, CallState, JudgeFn, JudgeFuture, MAX_TEXT};
pub use limits::{Limits, ROUTER_FUEL, ROUTER_TIMEOUT_MS};
pub use memory::TABLE_ELEMENT_BYTES;
