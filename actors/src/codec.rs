//! The wire codec for user messages: bincode 2 over serde, with errors instead of panics.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Ping { n: u32 }
//! let bytes = actors::codec::encode(&Ping { n: 7 }).unwrap();
//! assert_eq!(actors::codec::decode::<Ping>(&bytes).unwrap(), Ping { n: 7 });
//! assert!(actors::codec::decode::<Ping>(&[0xff, 0xff]).is_err());
//! ```
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// Encoding or decoding a message failed.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    #[error("cannot decode message as {ty}: {reason}")]
    Decode {
        /// The Rust type that was expected.
        ty: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The bytes decoded, but some were left over.
    #[error("cannot decode message as {ty}: {extra} trailing bytes")]
    Trailing {
        /// The Rust type that was expected.
        ty: &'static str,
        /// Number of bytes not consumed.
        extra: usize,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encode a serde value with bincode 2 (standard config, 64 MiB limit).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decode bytes produced by [`encode`]; any malformed input is an error, never a panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let ty = std::any::type_name::<T>();
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| CodecError::Decode {
            ty,
            reason: e.to_string(),
        })?;
    if read != bytes.len() {
        return Err(CodecError::Trailing {
            ty,
            extra: bytes.len() - read,
        });
    }
    Ok(value)
}

/// A serde value carried as bincode-2 bytes inside a remote-capable message.
///
/// ractor_cluster needs every field of a remote message to be [`ractor::BytesConvertable`], whose
/// `from_bytes` cannot fail. `Wire<T>` keeps the bytes as they arrived and decodes them where the
/// value is used, so a malformed payload becomes an error for the handler (and, through the reply,
/// for the caller) instead of a panic in the transport.
///
/// ```
/// use actors::codec::Wire;
/// let w = Wire::new(&(1u32, "two".to_string())).unwrap();
/// assert_eq!(w.decode().unwrap(), (1u32, "two".to_string()));
/// let bad: Wire<(u32, String)> = Wire::from_raw(vec![0xff, 0xff, 0xff]);
/// assert!(bad.decode().is_err());
/// ```
pub struct Wire<T> {
    bytes: Vec<u8>,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Wire<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Wire<{}>({} bytes)",
            std::any::type_name::<T>(),
            self.bytes.len()
        )
    }
}

impl<T> Clone for Wire<T> {
    fn clone(&self) -> Self {
        Wire::from_raw(self.bytes.clone())
    }
}

impl<T: Serialize> Wire<T> {
    /// Encode a value.
    pub fn new(value: &T) -> Result<Self, CodecError> {
        Ok(Wire::from_raw(encode(value)?))
    }
}

impl<T: DeserializeOwned> Wire<T> {
    /// Decode the value; malformed bytes are an error.
    pub fn decode(&self) -> Result<T, CodecError> {
        decode(&self.bytes)
    }
}

impl<T> Wire<T> {
    /// Wrap bytes as they are (e.g. received from elsewhere); nothing is checked until
    /// [`Wire::decode`].
    pub fn from_raw(bytes: Vec<u8>) -> Self {
        Wire {
            bytes,
            _type: std::marker::PhantomData,
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T: Send + 'static> ractor::BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        Wire::from_raw(bytes)
    }
}
