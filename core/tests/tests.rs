//! ipw-core's integration tests through its public API, one test binary of modules: real WASM
//! graders, routers and classifiers in the real sandbox, hostile fixtures included.

mod classifiers;
mod graders;
mod pairwise;
mod routers;
