//! Incremental framing of streamed bodies: complete lines (NDJSON) and Server-Sent Events
//! (`data:` lines up to a blank line), fed with arbitrary chunk boundaries.

/// Splits a byte stream into complete lines (without the line ending).
#[derive(Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Add a chunk; returns the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        lines
    }

    /// Bytes after the last line ending (a line cut off by the end of the stream).
    pub fn remainder(&self) -> &[u8] {
        &self.pending
    }
}

/// Turns lines into SSE event payloads (the joined `data:` fields of each event).
#[derive(Default)]
pub(crate) struct SseDecoder {
    lines: LineBuffer,
    data: Vec<String>,
}

impl SseDecoder {
    /// Add a chunk; returns the data payloads of the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for line in self.lines.push(chunk) {
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                self.data
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing we use.
        }
        events
    }

    /// An event left without its terminating blank line when the stream ended.
    pub fn finish(&mut self) -> Option<String> {
        let tail = String::from_utf8_lossy(self.lines.remainder()).into_owned();
        if let Some(rest) = tail.strip_prefix("data:") {
            self.data.push(rest.trim_start().to_string());
        }
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunk_boundaries() {
        let mut d = SseDecoder::default();
        let mut out = d.push(b"data: {\"a\"");
        out.extend(d.push(b":1}\r\n\r\n: comment\n\ndata: [DO"));
        out.extend(d.push(b"NE]\n\n"));
        assert_eq!(out, vec!["{\"a\":1}", "[DONE]"]);
    }
}
