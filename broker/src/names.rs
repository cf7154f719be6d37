//! Channel and group names.

use crate::error::BrokerError;

/// Check a channel name: 1-200 of `[A-Za-z0-9._-]`.
///
/// ```
/// assert!(broker::valid_channel("orders.eu-1").is_ok());
/// assert!(broker::valid_channel("a/b").is_err());
/// ```
pub fn valid_channel(name: &str) -> Result<(), BrokerError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::BadChannel(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_channel("a").is_ok());
        assert!(valid_channel(&"a".repeat(200)).is_ok());
        assert!(valid_channel(&"a".repeat(201)).is_err());
        assert!(valid_channel("").is_err());
        assert_eq!(
            valid_channel("x y").unwrap_err().to_string(),
            "invalid channel name 'x y': use 1-200 of [A-Za-z0-9._-]"
        );
    }
}
