//! Splitting a Server-Sent Events stream into events as its bytes arrive.
//!
//! The network cuts a stream wherever it likes: inside a UTF-8 character, between the
//! `\r` and `\n` of a line end, inside a blank line. The splitter therefore works on
//! bytes and decodes a line only once its end has arrived, so a character or a line end
//! split across chunks reads the same as one that is not.

/// The most bytes one event may take before its end arrives: a stream that never ends
/// an event must not grow the client's memory without bound.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// One event: its `event:` name (`message` when none) and its `data:` lines joined by
/// `\n`. Comment lines and fields other than those two are ignored, and a block with no
/// `data:` line is no event, as the SSE standard says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's name.
    pub name: String,
    /// Its data.
    pub data: String,
}

/// An event grew past [`MAX_EVENT_BYTES`] without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTooLarge;

/// The stream's state between chunks.
#[derive(Debug, Default)]
pub struct EventSplitter {
    /// Bytes of the line not yet ended.
    partial: Vec<u8>,
    /// The lines of the event not yet ended.
    lines: Vec<String>,
    /// Bytes held in `lines`.
    held: usize,
}

impl EventSplitter {
    /// Take the next chunk; the events it completes are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), EventTooLarge> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                out.extend(self.end_event());
            } else {
                self.held += line.len();
                self.lines.push(String::from_utf8_lossy(&line).into_owned());
            }
        }
        self.partial.extend_from_slice(rest);
        if self.held + self.partial.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// The stream has ended: the event left open, if any.
    pub fn finish(mut self) -> Option<Event> {
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            self.lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        self.end_event()
    }

    fn end_event(&mut self) -> Option<Event> {
        let lines = std::mem::take(&mut self.lines);
        self.held = 0;
        let mut name = "message".to_string();
        let mut data = Vec::new();
        for line in &lines {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        (!data.is_empty()).then(|| Event {
            name,
            data: data.join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Event> {
        let mut s = EventSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out).unwrap();
        }
        out.extend(s.finish());
        out
    }

    fn ev(name: &str, data: &str) -> Event {
        Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn a_character_split_across_chunks_reads_whole() {
        let body = "event: progress\ndata: café ✓ 日本\n\n".as_bytes();
        let whole = split(&[body]);
        assert_eq!(whole, vec![ev("progress", "café ✓ 日本")]);
        // Every cut, including the ones inside a character's bytes.
        for cut in 0..body.len() {
            assert_eq!(split(&[&body[..cut], &body[cut..]]), whole, "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(split(&bytes), whole);
    }

    #[test]
    fn crlf_line_ends_split_between_cr_and_lf() {
        let body = b"data: a\r\ndata: b\r\n\r\nevent: done\r\ndata: {}\r\n\r\n";
        let whole = split(&[body]);
        assert_eq!(whole, vec![ev("message", "a\nb"), ev("done", "{}")]);
        for cut in 0..body.len() {
            assert_eq!(split(&[&body[..cut], &body[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn comments_and_unended_last_event() {
        assert_eq!(
            split(&[b": keep-alive\n\n", b"event: x\ndata: 1"]),
            vec![ev("x", "1")]
        );
        assert_eq!(split(&[b": only a comment\n\n"]), vec![]);
    }

    #[test]
    fn an_event_that_never_ends_is_refused() {
        let mut s = EventSplitter::default();
        let mut out = Vec::new();
        let line = vec![b'x'; 64 << 10];
        let mut refused = false;
        for _ in 0..(MAX_EVENT_BYTES / line.len() + 2) {
            if s.push(&line, &mut out).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        let mut s = EventSplitter::default();
        let mut lines = Vec::new();
        for _ in 0..(MAX_EVENT_BYTES / 1024 + 2) {
            lines.extend_from_slice(b"data: ");
            lines.extend(std::iter::repeat_n(b'y', 1018));
            lines.push(b'\n');
        }
        assert_eq!(s.push(&lines, &mut out), Err(EventTooLarge));
        assert!(out.is_empty());
    }
}
