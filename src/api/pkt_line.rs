//! git's pkt-line framing of smart HTTP requests, read here before git sees a byte: a
//! push's command list and a fetch's wants. A request git would read as garbage, or one
//! asking for more than this server serves, is answered by this server, with words,
//! instead of by a git process that stops without any.

/// Why a request was refused before git saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not git's pkt-line framing, or lines git never sends.
    #[error("malformed git request: {0}")]
    Malformed(String),
    /// More commands or wants than this server takes in one request.
    #[error("{0}")]
    TooMany(String),
}

/// One pkt-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pkt<'a> {
    /// `0000`: the end of a section.
    Flush,
    /// `0001`: the end of a v2 command's capabilities.
    Delim,
    /// `0002`: the end of a v2 response (never in a request, but well-formed).
    ResponseEnd,
    /// A line's payload, its trailing newline removed.
    Data(&'a [u8]),
}

/// Reads pkt-lines off the front of a buffer.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next pkt-line, a line's trailing newline removed; `None` at the end of the
    /// buffer.
    fn next(&mut self) -> Result<Option<Pkt<'a>>, RequestError> {
        Ok(self.next_raw()?.map(|pkt| match pkt {
            Pkt::Data(data) => Pkt::Data(data.strip_suffix(b"\n").unwrap_or(data)),
            other => other,
        }))
    }

    /// The next pkt-line, its payload as sent (a side band's payload is a piece of
    /// another pkt-line stream, whose newlines are its own).
    fn next_raw(&mut self) -> Result<Option<Pkt<'a>>, RequestError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let bad = |why: &str| RequestError::Malformed(format!("{why} at byte {at}"));
        let head = self
            .buf
            .get(at..at + 4)
            .ok_or_else(|| bad("a truncated pkt-line length"))?;
        let len = std::str::from_utf8(head)
            .ok()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad("a pkt-line length that is not four hex digits"))?;
        self.pos += 4;
        match len {
            0 => Ok(Some(Pkt::Flush)),
            1 => Ok(Some(Pkt::Delim)),
            2 => Ok(Some(Pkt::ResponseEnd)),
            3 => Err(bad("a pkt-line of impossible length 3")),
            // 65520 is the longest pkt-line git writes or reads.
            n if n > 65520 => Err(bad("a pkt-line longer than 65520 bytes")),
            n => {
                let data = self
                    .buf
                    .get(at + 4..at + n)
                    .ok_or_else(|| bad("a pkt-line cut short"))?;
                self.pos = at + n;
                Ok(Some(Pkt::Data(data)))
            }
        }
    }
}

/// Most shallow commits a push may name (a shallow clone of a merge has a few).
const MAX_SHALLOW: usize = 64;

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One command of a push: move `name` from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCommand {
    /// The ref's id before (all zeros: create it).
    pub old: String,
    /// The ref's id after (all zeros: delete it).
    pub new: String,
    /// The ref's full name.
    pub name: String,
}

/// The command list that opens a push request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// The commands, in order.
    pub commands: Vec<PushCommand>,
    /// The capabilities the client asked for (on the first command).
    pub capabilities: Vec<String>,
}

impl PushRequest {
    /// Whether the client asked for `capability`.
    pub fn asked(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// Read the command list at the front of a push request (`head`: the request's first
/// bytes, decompressed), at most `max_commands` of them. What follows the list (the
/// pack) is git's to read.
pub fn push_request(head: &[u8], max_commands: usize) -> Result<PushRequest, RequestError> {
    let mut reader = Reader::new(head);
    let mut commands = Vec::new();
    let mut capabilities = Vec::new();
    let mut shallow = 0usize;
    loop {
        let line = match reader.next()? {
            Some(Pkt::Flush) => break,
            Some(Pkt::Data(line)) => line,
            Some(_) => {
                return Err(RequestError::Malformed(
                    "a push's command list holds a delimiter git never sends".into(),
                ));
            }
            None if head.len() < super::git::REQUEST_HEAD_BYTES => {
                return Err(RequestError::Malformed(
                    "the push's command list does not end (no flush-pkt)".into(),
                ));
            }
            None => {
                return Err(RequestError::TooMany(format!(
                    "the push's command list is longer than {} bytes; push `main` only",
                    super::git::REQUEST_HEAD_BYTES
                )));
            }
        };
        if commands.len() == max_commands {
            return Err(RequestError::TooMany(format!(
                "a push here may carry at most {max_commands} ref updates, and only `refs/heads/main` is taken; push `main` only"
            )));
        }
        let (command, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) if commands.is_empty() => (&line[..nul], Some(&line[nul + 1..])),
            Some(_) => {
                return Err(RequestError::Malformed(
                    "capabilities after the first command".into(),
                ));
            }
            None => (line, None),
        };
        let command = std::str::from_utf8(command)
            .map_err(|_| RequestError::Malformed("a command that is not UTF-8".into()))?;
        // A push from a shallow clone opens with its shallow boundary, one line a
        // commit; receive-pack judges them.
        if let Some(oid) = command.strip_prefix("shallow ") {
            shallow += 1;
            if !commands.is_empty() || !is_oid(oid) || caps.is_some() {
                return Err(RequestError::Malformed("a misplaced `shallow` line".into()));
            }
            if shallow > MAX_SHALLOW {
                return Err(RequestError::TooMany(format!(
                    "a push here may name at most {MAX_SHALLOW} shallow commits; push from a complete clone"
                )));
            }
            continue;
        }
        if command.starts_with("push-cert") {
            return Err(RequestError::Malformed(
                "signed pushes are not taken here".into(),
            ));
        }
        let mut parts = command.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RequestError::Malformed(
                "a command that is not `<old> <new> <ref>`".into(),
            ));
        };
        if !is_oid(old) || !is_oid(new) || name.is_empty() || name.len() > 4096 {
            return Err(RequestError::Malformed(
                "a command that is not `<old> <new> <ref>`".into(),
            ));
        }
        if let Some(caps) = caps {
            capabilities = String::from_utf8_lossy(caps)
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
        }
        commands.push(PushCommand {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
        });
    }
    // No command at all is git's probe before a large push (a lone flush-pkt): fine.
    Ok(PushRequest {
        commands,
        capabilities,
    })
}

/// receive-pack's answer to a push, as read back by this server for the push's record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// `unpack ok` (`None`), or git's error unpacking the pack.
    pub unpack_error: Option<String>,
    /// Each ref git reported on: `None` when it moved, else git's reason (`ng`).
    pub refs: Vec<(String, Option<String>)>,
    /// What git and the hook told the pusher on the progress band (`remote: …` lines).
    pub messages: String,
}

/// Read receive-pack's `answer` (its report-status, inside side band 1 when `sideband`,
/// with messages on band 2 and a fatal error on band 3). An answer cut short yields
/// what was read before the cut.
pub fn push_report(answer: &[u8], sideband: bool) -> PushReport {
    let mut report = PushReport::default();
    let mut inner = Vec::new();
    let status: &[u8] = if sideband {
        let mut reader = Reader::new(answer);
        while let Ok(Some(pkt)) = reader.next_raw() {
            if let Pkt::Data(data) = pkt {
                match data.split_first() {
                    Some((1, rest)) => inner.extend_from_slice(rest),
                    Some((2 | 3, rest)) => report.messages.push_str(&String::from_utf8_lossy(rest)),
                    _ => {}
                }
            }
        }
        &inner
    } else {
        answer
    };
    let mut reader = Reader::new(status);
    while let Ok(Some(pkt)) = reader.next() {
        let Pkt::Data(line) = pkt else { continue };
        let line = String::from_utf8_lossy(line);
        if let Some(rest) = line.strip_prefix("unpack ") {
            report.unpack_error = (rest != "ok").then(|| rest.to_string());
        } else if let Some(name) = line.strip_prefix("ok ") {
            report.refs.push((name.to_string(), None));
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, why) = rest.split_once(' ').unwrap_or((rest, "refused"));
            report.refs.push((name.to_string(), Some(why.to_string())));
        }
        // report-status-v2's `option …` lines add nothing a record keeps.
    }
    report
}

/// The ids a fetch request wants (protocol v0, or every command of a v2 request),
/// at most `max_wants`. A v2 request may only list refs and fetch.
pub fn fetch_wants(
    request: &[u8],
    v2: bool,
    max_wants: usize,
) -> Result<Vec<String>, RequestError> {
    let mut reader = Reader::new(request);
    let mut wants = Vec::new();
    // v2: whether the next data line opens a command.
    let mut at_command = v2;
    while let Some(pkt) = reader.next()? {
        let line = match pkt {
            Pkt::Flush => {
                at_command = v2;
                continue;
            }
            Pkt::Delim | Pkt::ResponseEnd => continue,
            Pkt::Data(line) => line,
        };
        if at_command {
            at_command = false;
            match line {
                b"command=fetch" | b"command=ls-refs" => continue,
                other => {
                    return Err(RequestError::Malformed(format!(
                        "`{}` is not served here (only `ls-refs` and `fetch`)",
                        crate::text::one_line(&String::from_utf8_lossy(
                            &other[..other.len().min(80)]
                        ))
                    )));
                }
            }
        }
        let Some(rest) = line.strip_prefix(b"want ") else {
            continue;
        };
        let oid = std::str::from_utf8(&rest[..rest.len().min(64)])
            .ok()
            .map(|s| s.split([' ', '\0']).next().unwrap_or(s))
            .filter(|s| is_oid(s))
            .ok_or_else(|| RequestError::Malformed("a `want` without an object id".into()))?;
        if wants.len() == max_wants {
            return Err(RequestError::TooMany(format!(
                "a fetch here may want at most {max_wants} objects; only `main` is served"
            )));
        }
        wants.push(oid.to_string());
    }
    Ok(wants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt_bytes(data: &[u8]) -> Vec<u8> {
        [format!("{:04x}", data.len() + 4).as_bytes(), data].concat()
    }

    #[test]
    fn a_push_report_is_read_inside_and_outside_the_side_band() {
        let status = [
            pkt_bytes(b"unpack ok\n"),
            pkt_bytes(b"ng refs/heads/main pre-receive hook declined\n"),
            b"0000".to_vec(),
        ]
        .concat();
        let plain = push_report(&status, false);
        assert_eq!(plain.unpack_error, None);
        assert_eq!(
            plain.refs,
            vec![(
                "refs/heads/main".into(),
                Some("pre-receive hook declined".into())
            )]
        );
        // Band 1 split mid-line, right after a newline; band 2 carries the hook's words.
        let (a, b) = status.split_at(14);
        let banded = [
            pkt_bytes(b"\x02push refused, nothing changed: no\n"),
            pkt_bytes(&[b"\x01", a].concat()),
            pkt_bytes(&[b"\x01", b].concat()),
            b"0000".to_vec(),
        ]
        .concat();
        let report = push_report(&banded, true);
        assert_eq!(report.refs, plain.refs);
        assert_eq!(report.messages, "push refused, nothing changed: no\n");
        let ok = [
            pkt_bytes(b"unpack ok\n"),
            pkt_bytes(b"ok refs/heads/main\n"),
        ]
        .concat();
        assert_eq!(
            push_report(&ok, false).refs,
            vec![("refs/heads/main".into(), None)]
        );
    }

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn a_push_command_list_is_read_up_to_its_flush() {
        let body = format!(
            "{}0000PACK...",
            pkt(&format!(
                "{A} {B} refs/heads/main\0report-status side-band-64k\n"
            ))
        );
        let r = push_request(body.as_bytes(), 4).unwrap();
        assert_eq!(r.commands.len(), 1);
        assert_eq!(r.commands[0].name, "refs/heads/main");
        assert!(r.asked("side-band-64k"));
    }

    #[test]
    fn malformed_or_long_command_lists_are_refused() {
        assert!(matches!(
            push_request(b"zzzz", 4),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            push_request(pkt("hello").as_bytes(), 4),
            Err(RequestError::Malformed(_))
        ));
        let many: String = (0..5)
            .map(|_| pkt(&format!("{A} {B} refs/heads/main")))
            .collect();
        assert!(matches!(
            push_request(format!("{many}0000").as_bytes(), 4),
            Err(RequestError::TooMany(_))
        ));
    }

    #[test]
    fn wants_of_both_protocols_are_found() {
        let v0 = format!(
            "{}{}00000009done\n",
            pkt(&format!("want {A} ofs-delta\n")),
            pkt(&format!("want {B}\n"))
        );
        assert_eq!(fetch_wants(v0.as_bytes(), false, 8).unwrap(), [A, B]);
        let v2 = format!(
            "{}{}0001{}0000",
            pkt("command=fetch\n"),
            pkt("agent=git/2\n"),
            pkt(&format!("want {A}\n"))
        );
        assert_eq!(fetch_wants(v2.as_bytes(), true, 8).unwrap(), [A]);
        let info = format!(
            "{}0001{}0000",
            pkt("command=object-info\n"),
            pkt(&format!("oid {A}\n"))
        );
        assert!(fetch_wants(info.as_bytes(), true, 8).is_err());
    }
}
