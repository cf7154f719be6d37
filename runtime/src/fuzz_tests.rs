//! Fuzz targets of the runtime's JSON messages between nodes, the gossip key commands and the
//! keyring file (run with the unit tests; see the `fuzz` crate for long runs). The lane's and
//! the gossip seal's targets are next to them (`lane/fuzz_tests.rs`, `seal/fuzz_tests.rs`).

use std::path::Path;

use ractor::{message::SerializedMessage, Message};
use serde_json::json;

use crate::{
    keyring::{generate_key, Keyring},
    keys::apply_local,
    node::NodeTree,
    sealed_transport::GossipSeal,
    spawn_protocol::{SpawnReply, SpawnRequest},
    JsonMsg,
};

/// A cast to a JSON actor from a peer (`variant \0 args`), and the JSON a node answers a
/// spawn or tree request with: a clean refusal or a value, never a panic; a JSON cast keeps
/// its payload unchanged.
#[test]
fn fuzz_json_messages() {
    let seeds: Vec<Vec<u8>> = [
        json!({"factory": "echo", "name": "e1", "args": {"x": 1}, "restart": "permanent"}),
        json!({"factory": "counter", "name": "c", "supervised_from": "n1/sup"}),
        serde_json::to_value(SpawnReply::Ok {
            actor_id: "1.2".into(),
        })
        .expect("reply"),
        serde_json::to_value(SpawnReply::Err {
            status: 409,
            message: "taken".into(),
        })
        .expect("reply"),
    ]
    .iter()
    .map(|v| {
        let mut b = b"Tell\0".to_vec();
        b.extend(v.to_string().into_bytes());
        b
    })
    .collect();
    fuzz::Target::new("json_messages")
        .seeds(seeds)
        .dict([
            "Tell\0",
            "Call\0",
            "\"factory\"",
            "\"name\"",
            "\"args\"",
            "\"restart\"",
            "\"transient\"",
            "\"tree\"",
            "\"node\"",
        ])
        .run(|b| {
            let (variant, args) = match b.iter().position(|c| *c == 0) {
                Some(i) => (&b[..i], &b[i + 1..]),
                None => (&b[..0], b),
            };
            let variant = String::from_utf8_lossy(variant).into_owned();
            let cast = SerializedMessage::Cast {
                variant: variant.clone(),
                args: args.to_vec(),
                metadata: None,
            };
            match JsonMsg::deserialize(cast) {
                Ok(JsonMsg::Tell(got)) => {
                    assert_eq!(variant, "Tell");
                    assert_eq!(got, args);
                }
                Ok(JsonMsg::Call(..)) => panic!("a cast decoded as a call"),
                Err(_) => assert_ne!(variant, "Tell"),
            }
            let _ = serde_json::from_slice::<SpawnRequest>(args);
            let _ = serde_json::from_slice::<SpawnReply>(args);
            if let Ok(t) = serde_json::from_slice::<NodeTree>(args) {
                let again = serde_json::to_vec(&t).expect("a tree serializes");
                assert_eq!(serde_json::from_slice::<NodeTree>(&again).ok(), Some(t));
            }
        });
}

/// A gossip key command from the admin API or another node: whatever the body, the node keeps
/// a keyring with a primary key, and a failed command changes nothing.
#[test]
fn fuzz_keys_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seal = GossipSeal::new(
        "c-1".into(),
        Keyring::from_cookie("cookie"),
        dir.path().to_path_buf(),
    )
    .expect("seal");
    let k1 = generate_key().expect("key");
    let first = seal.list()[0].clone();
    let seeds = [
        json!({}),
        json!({"op": "install", "key": k1}),
        json!({"op": "use", "key": k1}),
        json!({"op": "remove", "key": first}),
        json!({"op": "remove"}),
    ]
    .map(|v| v.to_string().into_bytes());
    fuzz::Target::new("keys_request")
        .seeds(seeds)
        .dict([
            "\"op\"",
            "\"key\"",
            "\"install\"",
            "\"use\"",
            "\"remove\"",
            &k1,
            &first,
        ])
        .run(|b| {
            let before = seal.list();
            let answer = apply_local("n1", &seal, b);
            let after = seal.list();
            assert!(!after.is_empty(), "no primary key left");
            if answer.error.is_some() || !answer.changed {
                assert_eq!(before, after, "{answer:?}");
            }
        });
}

/// The keyring file as found on disk: refused naming the file, or keys that write back to the
/// same text.
#[test]
fn fuzz_keyring_file() {
    let k1 = generate_key().expect("key");
    let k2 = generate_key().expect("key");
    let path = Path::new("/data/gossip.keys");
    let mut two = Keyring::new(&k1).expect("key");
    two.install(&k2).expect("install");
    let one = Keyring::new(&k2).expect("key");
    fuzz::Target::new("keyring_file")
        .seeds([
            two.to_text(),
            format!("{}\n", one.to_text()),
            format!("{k1}\n{k2}"),
        ])
        .dict([k1.as_str(), "\n", "=", "\r\n", "sha256:"])
        .run(|b| {
            let Ok(text) = std::str::from_utf8(b) else {
                return;
            };
            match Keyring::from_text(path, text) {
                Ok(k) => {
                    let again = Keyring::from_text(path, &k.to_text()).expect("written keys read");
                    assert_eq!(again, k);
                    assert!(!k.list().is_empty());
                }
                Err(e) => assert!(e.to_string().contains("/data/gossip.keys"), "{e}"),
            }
        });
}
