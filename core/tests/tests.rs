//! ipw-core's integration tests through its public API, one test binary of modules: real WASM
//! graders and routers in the real sandbox, hostile fixtures included.

mod graders;
mod pairwise;
mod routers;
