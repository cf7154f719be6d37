//! Fuzz target of typed-message decoding (run with the unit tests; see the `fuzz` crate for
//! long runs): bytes from a peer as a message of a protocol, or as a call's outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{decode, encode, Outcome, Protocol};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Orders {
    Place {
        id: String,
        lines: Vec<(String, u32)>,
        note: Option<String>,
    },
    Cancel(u64),
    Tag(BTreeMap<String, i64>),
    Ping,
}

impl Protocol for Orders {
    type Reply = Vec<u64>;
    type Error = String;

    fn protocol() -> &'static str {
        "orders/1"
    }
}

#[test]
fn fuzz_typed_message() {
    let seeds = [
        Orders::Place {
            id: "o-1".into(),
            lines: vec![("apple".into(), 3), ("pear".into(), 70_000)],
            note: Some("é".into()),
        },
        Orders::Cancel(1 << 40),
        Orders::Tag([("k".to_string(), -5)].into()),
        Orders::Ping,
    ]
    .map(|m| encode(&m).expect("seed encodes"));
    fuzz::Target::new("typed_message")
        .seeds(seeds)
        .dict(["orders/1", "\u{0}\u{8}orders/1"])
        .run(|b| {
            if let Ok(m) = decode::<Orders>(b) {
                let again = encode(&m).expect("a decoded message encodes");
                assert_eq!(decode::<Orders>(&again).as_ref(), Ok(&m));
            }
            if let Ok(o) = actors::codec::decode::<Outcome<Vec<u64>, String>>(b) {
                let again = actors::codec::encode(&o).expect("an outcome encodes");
                assert_eq!(
                    actors::codec::decode::<Outcome<Vec<u64>, String>>(&again).ok(),
                    Some(o)
                );
            }
        });
}
