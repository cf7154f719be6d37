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
