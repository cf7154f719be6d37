//! The lane's frames as pure functions: writing one into the outgoing buffer, reading one from a
//! stream, and decoding a received frame (everything after its length field).
//!
//! Wire form (big-endian): `u32 len | u8 kind | body`, `len` counting kind and body, at most
//! [`MAX_FRAME`] bytes:
//! `CAST: u64 pid | u16 vlen | variant | args`,
//! `CALL: u64 pid | u64 id | u32 timeout_ms | u16 vlen | variant | args`,
//! `REPLY: u64 id | bytes`, `FAIL: u64 id`. A message with metadata (the W3C `traceparent` of
//! the request it belongs to, see `trace.rs`) travels as `CAST_M` / `CALL_M`: the same fields
//! with `u16 mlen | metadata` right after the fixed header (after `pid`, resp. `timeout_ms`).
//! Both ends run the same build, so a new kind is safe within this version. The encoding is
//! canonical: a frame that decodes encodes back to the same bytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest frame accepted from a peer; a bigger one closes the lane.
pub(crate) const MAX_FRAME: usize = 16 << 20;

const CAST: u8 = 1;
const CALL: u8 = 2;
const REPLY: u8 = 3;
const FAIL: u8 = 4;
const CAST_M: u8 = 5;
const CALL_M: u8 = 6;

/// Bytes of a frame's kind and fixed fields, before its variant name.
const CAST_HEAD: usize = 1 + 8 + 2;
const CALL_HEAD: usize = 1 + 8 + 8 + 4 + 2;
const ID_HEAD: usize = 1 + 8;

/// One received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A one-way message to the actor `pid`.
    Cast {
        pid: u64,
        variant: String,
        args: Vec<u8>,
        metadata: Option<Vec<u8>>,
    },
    /// A call to the actor `pid`, answered with a `Reply` or `Fail` carrying `id`.
    Call {
        pid: u64,
        id: u64,
        /// 0: no timeout.
        timeout_ms: u32,
        variant: String,
        args: Vec<u8>,
        metadata: Option<Vec<u8>>,
    },
    /// The answer to the call `id`.
    Reply { id: u64, data: Vec<u8> },
    /// The call `id` failed (no such actor, or it dropped the reply port).
    Fail { id: u64 },
}

/// Why received bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length field is 0 or above [`MAX_FRAME`].
    #[error("frame of {0} bytes (limit {MAX_FRAME})")]
    BadLength(usize),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Too short for its kind's fixed fields.
    #[error("frame of kind {kind} has only {len} bytes")]
    Short { kind: u8, len: usize },
    /// The variant name runs past the end of the frame.
    #[error("variant longer than its frame")]
    VariantTooLong,
    /// The variant name is not UTF-8.
    #[error("variant is not UTF-8")]
    VariantNotUtf8,
    /// The metadata runs past the end of the frame.
    #[error("metadata longer than its frame")]
    MetadataTooLong,
    /// Bytes after a frame that has no payload.
    #[error("frame of kind {kind} has {extra} bytes after its fields")]
    Trailing { kind: u8, extra: usize },
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

/// A message (variant name and arguments) too large for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// Bytes the metadata takes in a frame (`u16 mlen | metadata`, or nothing).
fn meta_room(meta: Option<&[u8]>) -> usize {
    meta.map_or(0, |m| 2 + m.len())
}

/// The length field of a frame of `head` fixed bytes and this metadata, variant and payload,
/// if it fits.
fn frame_len(
    head: usize,
    meta: Option<&[u8]>,
    variant: &str,
    payload: &[u8],
) -> Result<u32, TooLarge> {
    u16::try_from(variant.len()).map_err(|_| TooLarge)?;
    if let Some(m) = meta {
        u16::try_from(m.len()).map_err(|_| TooLarge)?;
    }
    let len = head + meta_room(meta) + variant.len() + payload.len();
    if len > MAX_FRAME {
        return Err(TooLarge);
    }
    u32::try_from(len).map_err(|_| TooLarge)
}

/// Whether a reply of `data` fits in a frame.
pub(crate) fn reply_fits(data: &[u8]) -> bool {
    ID_HEAD + data.len() <= MAX_FRAME
}

/// Check that a CAST frame fits, before [`put_cast`].
pub(crate) fn cast_fits(meta: Option<&[u8]>, variant: &str, args: &[u8]) -> Result<(), TooLarge> {
    frame_len(CAST_HEAD, meta, variant, args).map(|_| ())
}

/// Check that a CALL frame fits, before [`put_call`].
pub(crate) fn call_fits(meta: Option<&[u8]>, variant: &str, args: &[u8]) -> Result<(), TooLarge> {
    frame_len(CALL_HEAD, meta, variant, args).map(|_| ())
}

fn put_meta(b: &mut Vec<u8>, meta: Option<&[u8]>) {
    if let Some(m) = meta {
        b.extend_from_slice(&(m.len() as u16).to_be_bytes());
        b.extend_from_slice(m);
    }
}

/// Append a CAST frame (a CAST_M one with metadata); the caller checked [`cast_fits`].
pub(crate) fn put_cast(b: &mut Vec<u8>, pid: u64, meta: Option<&[u8]>, variant: &str, args: &[u8]) {
    let len = (CAST_HEAD + meta_room(meta) + variant.len() + args.len()) as u32;
    b.extend_from_slice(&len.to_be_bytes());
    b.push(if meta.is_some() { CAST_M } else { CAST });
    b.extend_from_slice(&pid.to_be_bytes());
    put_meta(b, meta);
    b.extend_from_slice(&(variant.len() as u16).to_be_bytes());
    b.extend_from_slice(variant.as_bytes());
    b.extend_from_slice(args);
}

/// Append a CALL frame (a CALL_M one with metadata); the caller checked [`call_fits`].
pub(crate) fn put_call(
    b: &mut Vec<u8>,
    pid: u64,
    id: u64,
    timeout_ms: u32,
    meta: Option<&[u8]>,
    variant: &str,
    args: &[u8],
) {
    let len = (CALL_HEAD + meta_room(meta) + variant.len() + args.len()) as u32;
    b.extend_from_slice(&len.to_be_bytes());
    b.push(if meta.is_some() { CALL_M } else { CALL });
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&timeout_ms.to_be_bytes());
    put_meta(b, meta);
    b.extend_from_slice(&(variant.len() as u16).to_be_bytes());
    b.extend_from_slice(variant.as_bytes());
    b.extend_from_slice(args);
}

/// Append a REPLY frame; the caller checked [`reply_fits`].
pub(crate) fn put_reply(b: &mut Vec<u8>, id: u64, data: &[u8]) {
    let len = (ID_HEAD + data.len()) as u32;
    b.extend_from_slice(&len.to_be_bytes());
    b.push(REPLY);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(data);
}

/// Append a FAIL frame.
pub(crate) fn put_fail(b: &mut Vec<u8>, id: u64) {
    b.extend_from_slice(&(ID_HEAD as u32).to_be_bytes());
    b.push(FAIL);
    b.extend_from_slice(&id.to_be_bytes());
}

impl Frame {
    /// Append this frame's wire form (for tests; senders use the `put_*` functions on borrowed
    /// data). Frames too large are not written.
    #[cfg(test)]
    pub(crate) fn encode(&self, b: &mut Vec<u8>) -> Result<(), TooLarge> {
        match self {
            Frame::Cast {
                pid,
                variant,
                args,
                metadata,
            } => {
                cast_fits(metadata.as_deref(), variant, args)?;
                put_cast(b, *pid, metadata.as_deref(), variant, args);
            }
            Frame::Call {
                pid,
                id,
                timeout_ms,
                variant,
                args,
                metadata,
            } => {
                call_fits(metadata.as_deref(), variant, args)?;
                put_call(
                    b,
                    *pid,
                    *id,
                    *timeout_ms,
                    metadata.as_deref(),
                    variant,
                    args,
                );
            }
            Frame::Reply { id, data } => {
                if !reply_fits(data) {
                    return Err(TooLarge);
                }
                put_reply(b, *id, data);
            }
            Frame::Fail { id } => put_fail(b, *id),
        }
        Ok(())
    }

    /// Decode a frame from the bytes after its length field (its kind and body). Takes the
    /// bytes so a payload is handed on without another allocation.
    pub(crate) fn decode(mut b: Vec<u8>) -> Result<Frame, FrameError> {
        let len = b.len();
        if len == 0 || len > MAX_FRAME {
            return Err(FrameError::BadLength(len));
        }
        let kind = b[0];
        let head = match kind {
            CAST => CAST_HEAD,
            CALL => CALL_HEAD,
            CAST_M => CAST_HEAD + 2,
            CALL_M => CALL_HEAD + 2,
            REPLY | FAIL => ID_HEAD,
            other => return Err(FrameError::UnknownKind(other)),
        };
        if len < head {
            return Err(FrameError::Short { kind, len });
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let variant_at = |i: usize| -> Result<(String, usize), FrameError> {
            let vlen = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
            let end = i + 2 + vlen;
            let v = b.get(i + 2..end).ok_or(FrameError::VariantTooLong)?;
            let v = std::str::from_utf8(v).map_err(|_| FrameError::VariantNotUtf8)?;
            Ok((v.to_string(), end))
        };
        // `u16 mlen | metadata` at `i`, leaving room for the variant's length after it.
        let meta_at = |i: usize| -> Result<(Vec<u8>, usize), FrameError> {
            let mlen = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
            let end = i + 2 + mlen;
            if end + 2 > len {
                return Err(FrameError::MetadataTooLong);
            }
            Ok((b[i + 2..end].to_vec(), end))
        };
        match kind {
            CAST | CAST_M => {
                let pid = u64_at(1);
                let (metadata, at) = if kind == CAST_M {
                    let (m, at) = meta_at(9)?;
                    (Some(m), at)
                } else {
                    (None, 9)
                };
                let (variant, end) = variant_at(at)?;
                b.drain(..end);
                Ok(Frame::Cast {
                    pid,
                    variant,
                    args: b,
                    metadata,
                })
            }
            CALL | CALL_M => {
                let pid = u64_at(1);
                let id = u64_at(9);
                let timeout_ms = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
                let (metadata, at) = if kind == CALL_M {
                    let (m, at) = meta_at(21)?;
                    (Some(m), at)
                } else {
                    (None, 21)
                };
                let (variant, end) = variant_at(at)?;
                b.drain(..end);
                Ok(Frame::Call {
                    pid,
                    id,
                    timeout_ms,
                    variant,
                    args: b,
                    metadata,
                })
            }
            REPLY => {
                let id = u64_at(1);
                b.drain(..ID_HEAD);
                Ok(Frame::Reply { id, data: b })
            }
            _ => {
                if len > ID_HEAD {
                    return Err(FrameError::Trailing {
                        kind,
                        extra: len - ID_HEAD,
                    });
                }
                Ok(Frame::Fail { id: u64_at(1) })
            }
        }
    }
}

/// Read one frame: its length field, then that many bytes (refused before reading when the
/// length is out of bounds), decoded. Returns the frame and its size on the wire.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(Frame, usize)> {
    let len = r.read_u32().await? as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::BadLength(len).into());
    }
    let body = read_exact_vec(r, len).await?;
    Ok((Frame::decode(body)?, 4 + len))
}

/// Read exactly `n` bytes into a new vector, filled straight from the reader without zeroing
/// it first.
async fn read_exact_vec<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut b = Vec::with_capacity(n);
    while b.len() < n {
        let left = (n - b.len()) as u64;
        if (&mut *r).take(left).read_buf(&mut b).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Cast {
                pid: 7,
                variant: "Tell".into(),
                args: b"{\"x\":1}".to_vec(),
                metadata: None,
            },
            Frame::Call {
                pid: u64::MAX,
                id: 3,
                timeout_ms: 5000,
                variant: "Call".into(),
                args: vec![],
                metadata: None,
            },
            Frame::Cast {
                pid: 8,
                variant: "Tell".into(),
                args: b"{}".to_vec(),
                metadata: Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
            },
            Frame::Call {
                pid: 9,
                id: 4,
                timeout_ms: 0,
                variant: "Call".into(),
                args: b"[1]".to_vec(),
                metadata: Some(vec![]),
            },
            Frame::Reply {
                id: 3,
                data: vec![1, 2, 3],
            },
            Frame::Fail { id: 9 },
        ]
    }

    #[test]
    fn every_frame_round_trips_through_a_stream() {
        let mut wire = Vec::new();
        for f in all() {
            f.encode(&mut wire).unwrap();
        }
        let mut r = &wire[..];
        for f in all() {
            let (got, _) = futures::executor::block_on(read_frame(&mut r)).unwrap();
            assert_eq!(got, f);
        }
        let end = futures::executor::block_on(read_frame(&mut r)).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn malformed_frames_are_named() {
        let d = |b: &[u8]| Frame::decode(b.to_vec()).unwrap_err();
        assert_eq!(d(&[]), FrameError::BadLength(0));
        assert_eq!(d(&[9, 0, 0]), FrameError::UnknownKind(9));
        assert_eq!(d(&[CAST, 0, 0]), FrameError::Short { kind: CAST, len: 3 });
        // CAST_M whose metadata length runs past the frame
        let cast_m = [CAST_M, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9, 0, 0];
        assert_eq!(d(&cast_m), FrameError::MetadataTooLong);
        let mut cast = vec![CAST, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, b'a'];
        assert_eq!(d(&cast), FrameError::VariantTooLong);
        cast.splice(9..11, [0, 1]);
        cast[11] = 0xff;
        assert_eq!(d(&cast), FrameError::VariantNotUtf8);
        assert_eq!(
            d(&[FAIL, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            FrameError::Trailing {
                kind: FAIL,
                extra: 1
            }
        );
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let e = futures::executor::block_on(read_frame(&mut &huge[..])).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }

    #[test]
    fn a_message_too_large_for_a_frame_is_refused_when_sent() {
        assert_eq!(cast_fits(None, &"v".repeat(70_000), b""), Err(TooLarge));
        assert_eq!(call_fits(None, "v", &vec![0; MAX_FRAME]), Err(TooLarge));
        assert!(cast_fits(None, "v", &vec![0; MAX_FRAME - CAST_HEAD - 1]).is_ok());
        assert_eq!(
            cast_fits(Some(&[0; 70_000]), "v", b""),
            Err(TooLarge),
            "metadata over u16"
        );
        assert_eq!(
            cast_fits(Some(b"m"), "v", &vec![0; MAX_FRAME - CAST_HEAD - 1]),
            Err(TooLarge)
        );
        assert!(!reply_fits(&vec![0; MAX_FRAME]));
    }
}
