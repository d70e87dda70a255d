//! A trained router as one `.wasm` file: the generic learned-router component (built in, see
//! `plugins/routers/learned`) with the trained parameters placed in its memory as a data
//! segment of its own, and what it was trained on in a custom section.
//!
//! The generic component has a slot (found by its magic) that says where in its memory the
//! parameters go and how much room there is; writing the parameters' length into the slot and
//! adding one active data segment at that address is all a trained router differs by. No
//! compiler runs at training time, and the result runs under the same sandbox as any router.

/// The custom section holding a trained router's metadata (JSON).
pub const METADATA_SECTION: &str = "ipw-learned-router";
const SLOT_MAGIC: &[u8; 16] = b"ipw-learned-slot";
const CORE_MODULE: u8 = 1;
const CUSTOM: u8 = 0;
const DATA: u8 = 11;
const DATA_COUNT: u8 = 12;

/// Why a trained router could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("learned router component: {0}")]
pub struct ComponentError(pub String);

fn err(message: impl Into<String>) -> ComponentError {
    ComponentError(message.into())
}

fn read_leb(bytes: &[u8], at: &mut usize) -> Result<u32, ComponentError> {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let b = *bytes
            .get(*at)
            .ok_or_else(|| err("a number runs past the end"))?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| err("a number is over 32 bits"));
        }
        shift += 7;
        if shift > 35 {
            return Err(err("a number is over 5 bytes"));
        }
    }
}

fn put_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A section: its id and the range of its contents.
struct Section {
    id: u8,
    start: usize,
    end: usize,
}

/// The sections of a module or component (`bytes` starts with its 8-byte header).
fn sections(bytes: &[u8]) -> Result<Vec<Section>, ComponentError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(err("not a WebAssembly binary"));
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = read_leb(bytes, &mut at)? as usize;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| err("a section runs past the end"))?;
        out.push(Section { id, start: at, end });
        at = end;
    }
    Ok(out)
}

fn put_section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    put_leb(out, contents.len() as u32);
    out.extend_from_slice(contents);
}

fn custom_name(contents: &[u8]) -> Option<(&str, &[u8])> {
    let mut at = 0;
    let n = read_leb(contents, &mut at).ok()? as usize;
    let name = std::str::from_utf8(contents.get(at..at + n)?).ok()?;
    Some((name, &contents[at + n..]))
}

/// The one place `needle` occurs in `hay`.
fn find_once(hay: &[u8], needle: &[u8]) -> Result<usize, ComponentError> {
    let mut hits = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let first = hits
        .next()
        .ok_or_else(|| err("the generic router has no parameter slot"))?;
    if hits.next().is_some() {
        return Err(err("the parameter slot's magic occurs twice"));
    }
    Ok(first.0)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The generic component `generic` carrying `params` (placed in its memory) and `metadata`
/// (a custom section, [`METADATA_SECTION`]).
pub fn embed(generic: &[u8], params: &[u8], metadata: &str) -> Result<Vec<u8>, ComponentError> {
    let slot = find_once(generic, SLOT_MAGIC)?;
    let top = sections(generic)?;
    let holder = top
        .iter()
        .find(|s| s.id == CORE_MODULE && (s.start..s.end).contains(&slot))
        .ok_or_else(|| err("the parameter slot is not in a core module"))?;
    let mut module = generic[holder.start..holder.end].to_vec();
    let slot = slot - holder.start + SLOT_MAGIC.len();
    let (area, capacity) = (u32_at(&module, slot), u32_at(&module, slot + 4));
    if params.len() > capacity as usize {
        return Err(err(format!(
            "the parameters are {} bytes, over the router's room of {capacity}: train with a smaller --dim-log2 or fewer models",
            params.len()
        )));
    }
    module[slot + 8..slot + 12].copy_from_slice(&(params.len() as u32).to_le_bytes());
    let mut new_module = module[..8].to_vec();
    let mut has_data = false;
    for s in sections(&module)? {
        let contents = &module[s.start..s.end];
        match s.id {
            DATA => {
                has_data = true;
                let mut at = 0;
                let count = read_leb(contents, &mut at)?;
                let mut data = Vec::with_capacity(contents.len() + params.len() + 16);
                put_leb(&mut data, count + 1);
                data.extend_from_slice(&contents[at..]);
                // An active segment of memory 0 at `area`: flags 0, `i32.const area`, `end`.
                data.push(0);
                data.push(0x41);
                put_sleb(&mut data, i64::from(area as i32));
                data.push(0x0b);
                put_leb(&mut data, params.len() as u32);
                data.extend_from_slice(params);
                put_section(&mut new_module, DATA, &data);
            }
            DATA_COUNT => {
                let mut at = 0;
                let count = read_leb(contents, &mut at)?;
                let mut c = Vec::new();
                put_leb(&mut c, count + 1);
                put_section(&mut new_module, DATA_COUNT, &c);
            }
            id => put_section(&mut new_module, id, contents),
        }
    }
    if !has_data {
        return Err(err("the generic router's module has no data section"));
    }
    let mut out = generic[..8].to_vec();
    for s in &top {
        if s.start == holder.start {
            put_section(&mut out, CORE_MODULE, &new_module);
        } else {
            put_section(&mut out, s.id, &generic[s.start..s.end]);
        }
    }
    let mut custom = Vec::new();
    put_leb(&mut custom, METADATA_SECTION.len() as u32);
    custom.extend_from_slice(METADATA_SECTION.as_bytes());
    custom.extend_from_slice(metadata.as_bytes());
    put_section(&mut out, CUSTOM, &custom);
    Ok(out)
}

/// A trained router's metadata (JSON text) and parameters, read back from its component;
/// `None` for a component that is not a trained learned router.
pub fn read(component: &[u8]) -> Option<(String, Vec<u8>)> {
    let top = sections(component).ok()?;
    let metadata = top.iter().filter(|s| s.id == CUSTOM).find_map(|s| {
        let (name, data) = custom_name(&component[s.start..s.end])?;
        (name == METADATA_SECTION).then(|| String::from_utf8_lossy(data).into_owned())
    })?;
    let slot = find_once(component, SLOT_MAGIC).ok()?;
    let holder = top
        .iter()
        .find(|s| s.id == CORE_MODULE && (s.start..s.end).contains(&slot))?;
    let module = &component[holder.start..holder.end];
    let slot = slot - holder.start + SLOT_MAGIC.len();
    let (area, len) = (u32_at(module, slot), u32_at(module, slot + 8) as usize);
    let data = sections(module).ok()?.into_iter().find(|s| s.id == DATA)?;
    let d = &module[data.start..data.end];
    let mut at = 0;
    let count = read_leb(d, &mut at).ok()?;
    // The segment the trainer added is the last; walk to it. Segments before it are the
    // component's own (flags 0: active, memory 0, an `i32.const` offset).
    for i in 0..count {
        let flags = read_leb(d, &mut at).ok()?;
        let mut offset = None;
        if flags == 0 {
            if d.get(at) != Some(&0x41) {
                return None;
            }
            at += 1;
            let (mut v, mut shift) = (0i64, 0);
            loop {
                let b = *d.get(at)?;
                at += 1;
                v |= i64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    if b & 0x40 != 0 && shift < 64 {
                        v |= -1 << shift;
                    }
                    break;
                }
            }
            if d.get(at) != Some(&0x0b) {
                return None;
            }
            at += 1;
            offset = Some(v as i32 as u32);
        } else if flags != 1 {
            return None;
        }
        let n = read_leb(d, &mut at).ok()? as usize;
        let bytes = d.get(at..at + n)?;
        at += n;
        if i + 1 == count && offset == Some(area) && n == len {
            return Some((metadata, bytes.to_vec()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb_round_trips() {
        for v in [0u32, 1, 127, 128, 300, 1 << 20, u32::MAX] {
            let mut b = Vec::new();
            put_leb(&mut b, v);
            let mut at = 0;
            assert_eq!(read_leb(&b, &mut at).unwrap(), v);
            assert_eq!(at, b.len());
        }
        let mut b = Vec::new();
        put_sleb(&mut b, 1074736);
        assert_eq!(b, [0xb0, 0xcc, 0xc1, 0x00]);
    }
}
