//! Incremental framing of streamed bodies: complete lines (NDJSON) and Server-Sent Events
//! (`data:` lines up to a blank line), fed with arbitrary chunk boundaries. Frames are handed
//! to a callback borrowed, so a streamed token costs no allocation here.

use super::BackendError;

/// How a streamed body is cut into messages.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    /// Server-Sent Events (OpenAI-compatible servers).
    Sse,
    /// Newline-delimited JSON (Ollama).
    Lines,
}

/// What a frame handler wants next.
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The response is complete; stop reading.
    Done,
}

/// What a frame callback sees and returns.
pub(crate) type FrameFn<'a> = dyn FnMut(&str) -> Result<Flow, BackendError> + 'a;

/// Splits a byte stream into complete lines (without the line ending).
#[derive(Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Add a chunk and hand each line it completed to `each`, borrowed; stops at the first
    /// line `each` answers `Done` or an error to (the rest is never needed: reading stops).
    /// The consumed bytes leave the buffer once per chunk, not once per line.
    fn push_with(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<Flow, BackendError>,
    ) -> Result<Flow, BackendError> {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        let mut flow = Flow::Continue;
        while let Some(off) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[start..start + off];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            start += off + 1;
            flow = each(line)?;
            if let Flow::Done = flow {
                break;
            }
        }
        self.pending.drain(..start);
        Ok(flow)
    }

    /// Bytes after the last line ending (a line cut off by the end of the stream).
    fn remainder(&self) -> &[u8] {
        &self.pending
    }
}

/// Turns lines into SSE event payloads (the joined `data:` fields of each event).
#[derive(Default)]
pub(crate) struct SseDecoder {
    lines: LineBuffer,
    /// The current event's `data:` fields joined by newlines (reused from event to event).
    data: String,
    /// Whether the current event has a `data:` field yet (an empty one counts).
    has_data: bool,
}

impl SseDecoder {
    /// Add a chunk; each event it completes goes to `each`.
    fn push_with(&mut self, chunk: &[u8], each: &mut FrameFn) -> Result<Flow, BackendError> {
        let (data, has_data) = (&mut self.data, &mut self.has_data);
        self.lines.push_with(chunk, |line| {
            if line.is_empty() {
                if std::mem::take(has_data) {
                    let flow = each(data);
                    data.clear();
                    return flow;
                }
            } else if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = String::from_utf8_lossy(rest.strip_prefix(b" ").unwrap_or(rest));
                if std::mem::replace(has_data, true) {
                    data.push('\n');
                }
                data.push_str(&rest);
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing we use.
            Ok(Flow::Continue)
        })
    }

    /// An event left without its terminating blank line when the stream ended.
    fn finish(&mut self) -> Option<&str> {
        let tail = String::from_utf8_lossy(self.lines.remainder()).into_owned();
        if let Some(rest) = tail.strip_prefix("data:") {
            if std::mem::replace(&mut self.has_data, true) {
                self.data.push('\n');
            }
            self.data.push_str(rest.trim_start());
        }
        std::mem::take(&mut self.has_data).then_some(self.data.as_str())
    }
}

/// Cuts a streamed body into frames, as its [`Framing`] says.
pub(crate) enum Framer {
    /// Server-Sent Events.
    Sse(SseDecoder),
    /// Newline-delimited JSON; blank lines are skipped.
    Lines(LineBuffer),
}

impl Framer {
    /// A framer with nothing buffered.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Sse => Self::Sse(SseDecoder::default()),
            Framing::Lines => Self::Lines(LineBuffer::default()),
        }
    }

    /// Add body bytes; every frame they complete goes to `each`, until it answers `Done`.
    pub fn push(&mut self, chunk: &[u8], each: &mut FrameFn) -> Result<Flow, BackendError> {
        match self {
            Self::Sse(sse) => sse.push_with(chunk, each),
            Self::Lines(lines) => lines.push_with(chunk, |line| {
                let line = String::from_utf8_lossy(line);
                if line.trim().is_empty() {
                    return Ok(Flow::Continue);
                }
                each(&line)
            }),
        }
    }

    /// The body ended: a final frame may lack its terminator; it goes to `each` too.
    pub fn finish(&mut self, each: &mut FrameFn) -> Result<Flow, BackendError> {
        let tail = match self {
            Self::Sse(sse) => sse.finish().map(str::to_string),
            Self::Lines(lines) => {
                let rest = String::from_utf8_lossy(lines.remainder())
                    .trim()
                    .to_string();
                (!rest.is_empty()).then_some(rest)
            }
        };
        match tail {
            Some(frame) => each(&frame),
            None => Ok(Flow::Continue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of `chunks`, then the tail, as owned strings.
    fn frames(framing: Framing, chunks: &[&[u8]]) -> Vec<String> {
        let mut framer = Framer::new(framing);
        let mut out = Vec::new();
        let mut keep = |f: &str| {
            out.push(f.to_string());
            Ok(Flow::Continue)
        };
        for c in chunks {
            framer.push(c, &mut keep).unwrap();
        }
        framer.finish(&mut keep).unwrap();
        out
    }

    #[test]
    fn events_across_chunk_boundaries() {
        let out = frames(
            Framing::Sse,
            &[
                b"data: {\"a\"",
                b":1}\r\n\r\n: comment\n\ndata: [DO",
                b"NE]\n\n",
            ],
        );
        assert_eq!(out, vec!["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn multi_line_data_joins_and_a_cut_off_event_is_finished() {
        let out = frames(Framing::Sse, &[b"data: one\ndata:two\r\n\ndata: tail"]);
        assert_eq!(out, vec!["one\ntwo", "tail"]);
        let out = frames(Framing::Sse, &[b"data:\n\n"]);
        assert_eq!(out, vec![""], "an empty data field is an event");
        let out = frames(Framing::Lines, &[b"a\r\n\nb", b"\n", b" c "]);
        assert_eq!(out, vec!["a", "b", "c"]);
    }

    #[test]
    fn done_stops_at_that_frame() {
        let mut framer = Framer::new(Framing::Sse);
        let mut seen = Vec::new();
        let flow = framer
            .push(b"data: 1\n\ndata: 2\n\ndata: 3\n\n", &mut |f| {
                seen.push(f.to_string());
                Ok(if f == "2" { Flow::Done } else { Flow::Continue })
            })
            .unwrap();
        assert!(matches!(flow, Flow::Done));
        assert_eq!(seen, ["1", "2"]);
    }
}
