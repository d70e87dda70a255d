//! `learned`: the router `ipw route train` writes: a logistic regression per cheaper model over
//! hashed features of the prompt, carried in this component's own memory. This crate is the
//! generic part; `ipw route train` copies it with the trained parameters placed in [`AREA`] (a
//! data segment it adds) and their length in [`IPW_LEARNED_SLOT`], so the trained router is one
//! `.wasm` file that runs in any ipw sandbox.
//!
//! Parameter: `threshold` (default 0.5): a query goes to the cheapest model whose probability
//! of answering as well as the reference reaches it, else to the reference. Lower saves more.

use ipw_guest::{export_router, Candidate, Choice, Params, RouteQuery, Router};
use ipw_router_model::{featurize, Model};

/// Room for the parameters: 32 MiB (2^16 buckets x 128 models of f32 weights). Zero-initialised,
/// so it costs nothing in the file or in a fresh instance until parameters are placed in it.
const CAPACITY: usize = 32 << 20;

#[repr(C, align(16))]
struct Area([u8; CAPACITY]);

/// Where `ipw route train` places the parameters.
static mut AREA: Area = Area([0; CAPACITY]);

/// What `ipw route train` finds (by its magic) and fills in: where the parameters go, how much
/// room there is, and how many bytes it placed there.
#[repr(C)]
pub struct Slot {
    magic: [u8; 16],
    area: *const u8,
    capacity: u32,
    len: u32,
}

// SAFETY: the slot is read-only after instantiation (the trainer writes it in the file).
unsafe impl Sync for Slot {}

/// The slot the trainer patches. Its `len` is read volatile: the compiler must not fold the 0
/// it sees here into the code.
#[no_mangle]
#[used]
pub static IPW_LEARNED_SLOT: Slot = Slot {
    magic: *b"ipw-learned-slot",
    area: (&raw const AREA).cast(),
    capacity: CAPACITY as u32,
    len: 0,
};

fn params_bytes() -> &'static [u8] {
    // SAFETY: the slot's fields are plain data; `area` points at `AREA`, which lives as long as
    // the instance and is never written, and the trainer keeps `len` within `capacity`.
    unsafe {
        let len = std::ptr::read_volatile(&raw const IPW_LEARNED_SLOT.len) as usize;
        let area = std::ptr::read_volatile(&raw const IPW_LEARNED_SLOT.area);
        std::slice::from_raw_parts(area, len.min(CAPACITY))
    }
}

struct Learned;

impl Router for Learned {
    fn route(query: RouteQuery, candidates: Vec<Candidate>, params: Params) -> Result<Choice, String> {
        let bytes = params_bytes();
        if bytes.is_empty() {
            return Err("this is the untrained learned router: train one with `ipw route train`".into());
        }
        let model = Model::decode(bytes).map_err(|e| e.to_string())?;
        let threshold = match params.get("threshold") {
            None => 0.5,
            Some(v) => v
                .as_f64()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or("threshold must be a number in [0, 1]")?,
        };
        let index = |name: &str| candidates.iter().position(|c| c.name == name);
        let trained = model.models();
        let missing: Vec<&str> = trained.iter().copied().filter(|n| index(n).is_none()).collect();
        let extra: Vec<&str> = candidates
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !trained.contains(n))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "trained on {}; the candidates lack {} and add {}",
                trained.join(", "),
                list(&missing),
                list(&extra)
            ));
        }
        let mut x = Vec::new();
        featurize(
            &model.features,
            &query.prompt,
            &query.dataset,
            query.subject.as_deref(),
            query.prompt_tokens,
            &mut x,
        );
        let z = model.logits(&x);
        let reference = index(model.reference).expect("checked above");
        Ok(match model.choose(&z, threshold as f32) {
            Some((j, pj)) => Choice::model(index(model.cheaper[j].name).expect("checked above"))
                .with_confidence(f64::from(pj)),
            None => {
                // How sure it is that no cheaper model will do: one minus the best chance.
                let best = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                Choice::model(reference).with_confidence(f64::from(1.0 - ipw_router_model::sigmoid(best)))
            }
        })
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

export_router!(Learned);
