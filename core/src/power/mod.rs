//! Power and energy: sampler plugins (native libraries), the sampling threads that record their
//! raw readings for the whole run, and attribution of energy to query windows.
//!
//! All integration, interpolation and attribution happen here, once: [`curve`] turns raw
//! readings into cumulative energy, [`attribution`] turns curves and windows into per-query
//! gross/net energy with quality flags.

pub mod attribution;
pub mod conformance;
pub mod curve;
pub mod loader;
pub mod recorder;
pub mod session;
pub mod settle;

pub use recorder::EdgeMarker;
pub use session::{attribute_records, Baseline, PowerSession, SamplerInfo, SessionPower};

pub use ipw_sampler_sdk::{Channel, ChannelKind, Domain, GaugeTiming};
