//! Request bodies (RFC 9112 section 6): how a body is framed, and a
//! reader that skips it as it arrives (Content-Length or chunked) without
//! buffering it.

use super::*;

/// How a request's body is framed (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// This many bytes (Content-Length; 0 without one).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// Longest chunk-size line (size and extensions) accepted.
pub(super) const MAX_CHUNK_LINE: usize = 4 * 1024;

/// The rest of one request body, read and dropped as its bytes arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyReader {
    /// Bytes left of a Content-Length body.
    Length(u64),
    /// A chunked body (RFC 9112 section 7.1).
    Chunked(ChunkedBody),
}

impl BodyReader {
    /// The reader of a body framed so; None when there is no body.
    pub fn new(framing: BodyFraming) -> Option<BodyReader> {
        match framing {
            BodyFraming::Length(0) => None,
            BodyFraming::Length(n) => Some(BodyReader::Length(n)),
            BodyFraming::Chunked => Some(BodyReader::Chunked(ChunkedBody::default())),
        }
    }

    /// Takes the body's bytes at the start of `buf`: how many it took, and
    /// whether the body is complete; the status to answer with when the
    /// body is malformed.
    pub fn skip(&mut self, buf: &[u8]) -> Result<(usize, bool), Status> {
        match self {
            BodyReader::Length(left) => {
                let n = (buf.len() as u64).min(*left);
                *left -= n;
                Ok((n as usize, *left == 0))
            }
            BodyReader::Chunked(c) => c.skip(buf),
        }
    }
}

/// Where a chunked body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chunk {
    /// In a chunk-size line's hex digits (`digits`: at least one seen).
    Size { size: u64, digits: bool },
    /// In the chunk extensions after the size.
    Ext { size: u64 },
    /// A CR ended the size line: its LF must follow.
    SizeLf { size: u64 },
    /// Chunk data bytes still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    /// The LF of that CRLF.
    DataLf,
    /// The trailer section, at the start of a line or inside one.
    Trailer { line_start: bool },
    /// A CR at the start of a trailer line: the last LF must follow.
    EndLf,
    /// The body is complete.
    Done,
}

/// The framing of a chunked body, found incrementally: chunk-size lines
/// (hex, at most 64 bits, extensions allowed, at most
/// [`MAX_CHUNK_LINE`] bytes), data, CRLF, ..., the last chunk, trailer
/// fields (at most [`MAX_HEAD`] bytes in all), a blank line. Lines may end
/// in a bare LF, as request heads may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedBody {
    state: Chunk,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        ChunkedBody {
            state: Chunk::Size {
                size: 0,
                digits: false,
            },
            line: 0,
        }
    }
}

impl ChunkedBody {
    /// See [`BodyReader::skip`].
    fn skip(&mut self, buf: &[u8]) -> Result<(usize, bool), Status> {
        let mut i = 0;
        while i < buf.len() && self.state != Chunk::Done {
            if let Chunk::Data(left) = self.state {
                let n = ((buf.len() - i) as u64).min(left);
                i += n as usize;
                self.state = if n == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - n)
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.line += 1;
            let size_line_end = |size: u64| {
                if size == 0 {
                    Chunk::Trailer { line_start: true }
                } else {
                    Chunk::Data(size)
                }
            };
            self.state = match (self.state, b) {
                (Chunk::Size { size, .. }, b) if b.is_ascii_hexdigit() => {
                    let d = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(Status::BadRequest)?;
                    Chunk::Size { size, digits: true }
                }
                (Chunk::Size { size, digits: true }, b';' | b' ' | b'\t') => Chunk::Ext { size },
                (Chunk::Size { size, digits: true } | Chunk::Ext { size }, b'\r') => {
                    Chunk::SizeLf { size }
                }
                (
                    Chunk::Size { size, digits: true }
                    | Chunk::Ext { size }
                    | Chunk::SizeLf { size },
                    b'\n',
                ) => {
                    self.line = 0;
                    size_line_end(size)
                }
                (Chunk::Ext { size }, _) => Chunk::Ext { size },
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr | Chunk::DataLf, b'\n') => {
                    self.line = 0;
                    Chunk::Size {
                        size: 0,
                        digits: false,
                    }
                }
                (Chunk::Trailer { line_start: true }, b'\r') => Chunk::EndLf,
                (Chunk::Trailer { line_start: true } | Chunk::EndLf, b'\n') => Chunk::Done,
                (Chunk::Trailer { .. }, b'\n') => Chunk::Trailer { line_start: true },
                (Chunk::Trailer { .. }, _) => Chunk::Trailer { line_start: false },
                _ => return Err(Status::BadRequest),
            };
            match self.state {
                Chunk::Size { .. } | Chunk::Ext { .. } | Chunk::SizeLf { .. }
                    if self.line > MAX_CHUNK_LINE =>
                {
                    return Err(Status::BadRequest)
                }
                Chunk::Trailer { .. } | Chunk::EndLf if self.line > MAX_HEAD => {
                    return Err(Status::HeaderFieldsTooLarge)
                }
                _ => {}
            }
        }
        Ok((i, self.state == Chunk::Done))
    }
}
