//! An incremental parser for `text/event-stream` (the Server-Sent Events
//! format of the HTML standard), enough for Berth's watch route.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the event names none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Feed it bytes as they arrive; it returns the events completed so far.
/// Lines may be split anywhere across chunks, including inside a UTF-8
/// character or between the `\r` and `\n` of a line break.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` that follows belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                        events.push(event);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            let data = self.data.take()?;
            return Some(SseEvent { event: event.unwrap_or_else(|| "message".to_owned()), data });
        }
        if line.starts_with(':') {
            return None; // a comment: the keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field.trim_start_matches('\u{feff}') {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // id, retry and unknown fields do not matter here
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(data: &str) -> SseEvent {
        SseEvent { event: "lease".into(), data: data.into() }
    }

    #[test]
    fn events_are_dispatched_on_blank_lines_and_comments_ignored() {
        let mut parser = SseParser::new();
        let events = parser.push(b": keep-alive\n\nevent: lease\ndata: {\"a\":1}\n\nevent: lease\ndata:{\"a\":2}\n\n");
        assert_eq!(events, vec![lease("{\"a\":1}"), lease("{\"a\":2}")]);
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut parser = SseParser::new();
        let stream = "event: lease\r\ndata: {\"holder\":\"é\"}\r\n\r\n".as_bytes();
        let mut events = Vec::new();
        for chunk in stream.chunks(1) {
            events.extend(parser.push(chunk));
        }
        assert_eq!(events, vec![lease("{\"holder\":\"é\"}")]);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_break() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: lease\r").is_empty());
        assert!(parser.push(b"\ndata: x\r").is_empty());
        assert_eq!(parser.push(b"\n\r\n"), vec![lease("x")]);
    }

    #[test]
    fn multiline_data_is_joined_and_unnamed_events_are_messages() {
        let mut parser = SseParser::new();
        let events = parser.push(b"data: a\ndata: b\nid: 7\n\n");
        assert_eq!(events, vec![SseEvent { event: "message".into(), data: "a\nb".into() }]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: lease\n\n").is_empty());
        assert_eq!(parser.push(b"data: y\n\n"), vec![SseEvent { event: "message".into(), data: "y".into() }]);
    }
}
