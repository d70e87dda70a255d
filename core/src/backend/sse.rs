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
        let mut lines = Vec::new();
        self.push_with(chunk, |line| {
            lines.push(String::from_utf8_lossy(line).into_owned())
        });
        lines
    }

    /// Add a chunk and hand each line it completed to `each`, borrowed (no copy per line); the
    /// consumed bytes leave the buffer once per chunk, not once per line.
    pub fn push_with(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(off) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[start..start + off];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            each(line);
            start += off + 1;
        }
        self.pending.drain(..start);
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
    /// The current event's `data:` fields joined by newlines; `None` before the first.
    data: Option<String>,
}

impl SseDecoder {
    /// Add a chunk; returns the data payloads of the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        let data = &mut self.data;
        self.lines.push_with(chunk, |line| {
            if line.is_empty() {
                if let Some(event) = data.take() {
                    events.push(event);
                }
            } else if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = String::from_utf8_lossy(rest.strip_prefix(b" ").unwrap_or(rest));
                match data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&rest);
                    }
                    None => *data = Some(rest.into_owned()),
                }
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing we use.
        });
        events
    }

    /// An event left without its terminating blank line when the stream ended.
    pub fn finish(&mut self) -> Option<String> {
        let tail = String::from_utf8_lossy(self.lines.remainder()).into_owned();
        if let Some(rest) = tail.strip_prefix("data:") {
            let rest = rest.trim_start();
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => self.data = Some(rest.to_string()),
            }
        }
        self.data.take()
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

    #[test]
    fn multi_line_data_joins_and_a_cut_off_event_is_finished() {
        let mut d = SseDecoder::default();
        let out = d.push(b"data: one\ndata:two\r\n\ndata: tail");
        assert_eq!(out, vec!["one\ntwo"]);
        assert_eq!(d.finish().as_deref(), Some("tail"));
        let mut lines = LineBuffer::default();
        assert_eq!(lines.push(b"a\r\nb"), vec!["a"]);
        assert_eq!(lines.push(b"\n"), vec!["b"]);
        assert!(lines.remainder().is_empty());
    }
}
