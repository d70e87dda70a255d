//! The end-to-end tests of the `ipw` binary, one test binary of modules (like ripgrep's
//! `tests/tests.rs`): the world is linked once, not once per file. Each module tests one
//! capability through the binary as a user runs it; `support` holds what they share.

mod support;

mod bad_input;
mod bench;
mod busy_machine;
mod classify;
mod crash_energy;
mod crash_resume;
mod device_check;
mod embedded_e2e;
mod export;
mod footprint;
mod gpu_offload;
mod graders_e2e;
mod hf_datasets;
mod import;
mod init;
mod learned_router;
mod managed_server;
mod metrics;
mod pairwise_coverage;
mod pairwise_e2e;
mod power_e2e;
mod remote_faults;
mod report;
mod routing;
mod run_dir;
mod sampler_check;
mod scale_out;
mod server_e2e;
mod study;
mod study_real;
mod watch;
