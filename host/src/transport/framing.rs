//! Newline-delimited JSON-RPC framing, as stdio MCP uses it.
//!
//! Reading yields one [`Frame`] per line. A line longer than the limit is not
//! buffered: its first bytes are kept (to find its id), the rest is skipped up
//! to the next newline, and a [`Frame::TooLarge`] tells the relay to answer it.
//!
//! A codec made with [`LineCodec::streaming`] hands over a long line in pieces
//! as it arrives ([`Frame::Start`], [`Frame::More`], [`Frame::End`]) instead of
//! holding it whole: the relay then forwards a message no plugin wants while
//! it is still coming in (cut-through), and gathers the others itself. Limits
//! on such lines are the relay's to enforce.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use crate::jsonrpc;

/// Bytes of an oversized line kept to look for its id.
const SNIFF_BYTES: usize = 4096;
/// The most a partial line grows the read buffer by at once.
const READ_AHEAD: usize = 4 << 20;

/// One unit read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its newline.
    Line(Bytes),
    /// The first bytes of a long line whose end has not arrived yet.
    Start(Bytes),
    /// More bytes of that line.
    More(Bytes),
    /// Its last bytes, without the newline.
    End(Bytes),
    /// A line longer than the limit, skipped.
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// Its id, if one could be read from its first bytes.
        id: Option<String>,
    },
}

/// Splits a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineCodec {
    max: usize,
    /// Where to resume the newline search.
    scanned: usize,
    /// Set while skipping an oversized line: its length so far and the sniffed id.
    skipping: Option<(usize, Option<String>)>,
    /// Lines that reach this many bytes unfinished are handed over in pieces.
    stream_from: usize,
    /// Set while handing over a line in pieces.
    streaming: bool,
}

impl LineCodec {
    /// A codec that accepts lines up to `max` bytes.
    pub fn new(max: usize) -> LineCodec {
        LineCodec { max, scanned: 0, skipping: None, stream_from: usize::MAX, streaming: false }
    }

    /// A codec that hands over lines still unfinished at `stream_from` bytes in
    /// pieces, whatever their length; shorter lines are whole [`Frame::Line`]s
    /// of at most `max` bytes.
    pub fn streaming(max: usize, stream_from: usize) -> LineCodec {
        LineCodec { stream_from: stream_from.min(max), ..LineCodec::new(max) }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if self.streaming {
            return Ok(match memchr(&buf[..]) {
                Some(pos) => {
                    self.streaming = false;
                    let mut end = buf.split_to(pos + 1);
                    end.truncate(pos);
                    if end.last() == Some(&b'\r') {
                        end.truncate(pos - 1);
                    }
                    Some(Frame::End(end.freeze()))
                }
                None if buf.is_empty() => None,
                // A CR last may be the first half of the line's CRLF: it waits
                // for the next byte, so the line never ends with it.
                None if buf.last() == Some(&b'\r') && buf.len() == 1 => None,
                None if buf.last() == Some(&b'\r') => Some(Frame::More(buf.split_to(buf.len() - 1).freeze())),
                None => Some(Frame::More(buf.split().freeze())),
            });
        }
        loop {
            if let Some((len, _)) = self.skipping.as_mut() {
                match memchr(&buf[..]) {
                    Some(pos) => {
                        *len += pos;
                        buf.advance(pos + 1);
                        let (len, id) = self.skipping.take().unwrap_or_default();
                        return Ok(Some(Frame::TooLarge { len, id }));
                    }
                    None => {
                        *len += buf.len();
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            match memchr(&buf[self.scanned..]) {
                Some(offset) => {
                    let pos = self.scanned + offset;
                    self.scanned = 0;
                    if pos > self.max {
                        let id = jsonrpc::sniff_id(&buf[..SNIFF_BYTES.min(pos)]);
                        buf.advance(pos + 1);
                        return Ok(Some(Frame::TooLarge { len: pos, id }));
                    }
                    let mut line = buf.split_to(pos + 1);
                    line.truncate(pos);
                    if line.last() == Some(&b'\r') {
                        line.truncate(pos - 1);
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(Some(Frame::Line(line.freeze())));
                }
                None if buf.len() >= self.stream_from => {
                    self.streaming = true;
                    self.scanned = 0;
                    // A CR last waits for the next piece (see `More`).
                    let keep = usize::from(buf.last() == Some(&b'\r'));
                    return Ok(Some(Frame::Start(buf.split_to(buf.len() - keep).freeze())));
                }
                None if buf.len() > self.max => {
                    let id = jsonrpc::sniff_id(&buf[..SNIFF_BYTES.min(buf.len())]);
                    self.skipping = Some((buf.len(), id));
                    self.scanned = 0;
                    buf.clear();
                }
                None => {
                    self.scanned = buf.len();
                    // A long line is on its way: let the next read take as much
                    // again in one go, rather than 64 KiB at a time.
                    if buf.capacity() - buf.len() < buf.len() {
                        buf.reserve(buf.len().min(READ_AHEAD));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if let Some((len, id)) = self.skipping.take() {
            return Ok(Some(Frame::TooLarge { len, id }));
        }
        if self.streaming {
            // The stream ended inside a line: what came of it still ends it.
            self.streaming = false;
            let mut end = buf.split();
            if end.last() == Some(&b'\r') {
                end.truncate(end.len() - 1);
            }
            return Ok(Some(Frame::End(end.freeze())));
        }
        // A last line without a newline still counts (a CR ending it is its CRLF's).
        self.scanned = 0;
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        let line = line.freeze();
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(Frame::Line(line)))
    }
}

fn memchr(hay: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', hay)
}

/// What a writer is handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A whole message, or the last piece of one sent in pieces: written, then a newline.
    Message(Bytes),
    /// A piece of a message still arriving: written as it is.
    Part(Bytes),
}

/// Writes each message followed by a newline, flushing whenever the queue runs
/// dry so that pipelined messages share syscalls. Returns when every sender is
/// gone (then shuts the stream down, closing the peer's input) or on a write error.
pub async fn write_lines<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Outgoing>, out: W) -> std::io::Result<()> {
    let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, out);
    while let Some(item) = rx.recv().await {
        write_one(&mut out, item).await?;
        while let Ok(item) = rx.try_recv() {
            write_one(&mut out, item).await?;
        }
        out.flush().await?;
    }
    out.shutdown().await
}

async fn write_one<W: AsyncWrite + Unpin>(out: &mut W, item: Outgoing) -> std::io::Result<()> {
    match item {
        Outgoing::Message(message) => {
            out.write_all(&message).await?;
            out.write_all(b"\n").await
        }
        Outgoing::Part(part) => out.write_all(&part).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(codec: &mut LineCodec, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_lines_and_skips_blanks() {
        let mut c = LineCodec::new(100);
        let got = frames(&mut c, b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}");
        let lines: Vec<Frame> = ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]
            .iter()
            .map(|s| Frame::Line(Bytes::from_static(s.as_bytes())))
            .collect();
        assert_eq!(got, lines);
    }

    #[test]
    fn oversized_lines_are_skipped_with_their_id() {
        let mut c = LineCodec::new(16);
        let mut input = br#"{"id":9,"method":"x","params":""#.to_vec();
        input.extend(std::iter::repeat_n(b'a', 100));
        input.extend(b"\"}\n{\"ok\":1}\n");
        let got = frames(&mut c, &input);
        assert!(matches!(&got[0], Frame::TooLarge { id: Some(id), .. } if id == "9"), "{got:?}");
        assert_eq!(got[1], Frame::Line(Bytes::from_static(b"{\"ok\":1}")));
    }

    #[test]
    fn long_lines_come_in_pieces_when_streaming() {
        let mut c = LineCodec::streaming(1000, 8);
        let mut buf = BytesMut::from(&b"{\"id\":1,\"x\":"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Start(Bytes::from_static(b"{\"id\":1,\"x\":"))));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\"abc");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::More(Bytes::from_static(b"\"abc"))));
        buf.extend_from_slice(b"\"}\r\n{}\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::End(Bytes::from_static(b"\"}"))));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line(Bytes::from_static(b"{}"))));
        buf.extend_from_slice(b"{\"unfinished\"");
        assert!(matches!(c.decode(&mut buf).unwrap(), Some(Frame::Start(_))));
        assert_eq!(c.decode_eof(&mut buf).unwrap(), Some(Frame::End(Bytes::new())));
    }

    #[test]
    fn oversized_lines_split_across_reads() {
        let mut c = LineCodec::new(8);
        let mut buf = BytesMut::from(&b"{\"id\":\"q\",\"x\":"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"12345678901234}\n{}\n");
        assert!(matches!(c.decode(&mut buf).unwrap(), Some(Frame::TooLarge { id: Some(_), .. })));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line(Bytes::from_static(b"{}"))));
    }
}
