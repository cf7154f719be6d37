//! Validated CloudEvents 1.0, carried as their structured-mode JSON text.

use std::{borrow::Cow, sync::Arc};

use serde::Deserialize;
use serde_json::{value::RawValue, Map, Value};

use crate::error::EventError;

/// A CloudEvent 1.0 that passed validation.
///
/// The event is kept as its structured-mode JSON (the form the CloudEvents JSON format defines),
/// so extensions, `datacontenttype`, `time` and `data` travel exactly as the producer wrote them.
/// Validation checks the required attributes (`id`, `source`, `type`, `specversion` = `"1.0"`)
/// itself, so the error names what is wrong, and then with `cloudevents-sdk` (attribute types,
/// `time` format, `data`/`data_base64`).
///
/// ```
/// use broker::CloudEvent;
/// let ev = CloudEvent::builder("orders", "created")
///     .id("o-1")
///     .data(serde_json::json!({"total": 12}))
///     .build()
///     .unwrap();
/// assert_eq!(ev.id(), "o-1");
/// assert_eq!(ev.data(), Some(serde_json::json!({"total": 12})));
///
/// let err = CloudEvent::from_json(r#"{"specversion":"1.0","source":"s","type":"t"}"#).unwrap_err();
/// assert!(err.to_string().contains("'id'"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudEvent {
    json: Arc<str>,
}

impl CloudEvent {
    /// Parse and validate a structured-mode CloudEvent (a JSON object).
    ///
    /// The producer's text is kept as it is (no re-encoding) unless it spans several lines or
    /// repeats a member name; then it is re-encoded as compact JSON (the last of repeated
    /// members wins, as in any JSON object parser here).
    pub fn from_json(text: &str) -> Result<CloudEvent, EventError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if !text.starts_with('{') {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => EventError::NotAnObject,
                Err(e) => EventError::NotJson(e.to_string()),
            });
        }
        let members: RawMembers<'_> =
            serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
        let mut names: Vec<&str> = members.0.iter().map(|(k, _)| k.as_ref()).collect();
        names.sort_unstable();
        let repeated = names.windows(2).any(|w| w[0] == w[1]);
        if repeated || text.contains(['\n', '\r']) {
            let value: Value =
                serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
            return Self::from_value(value);
        }
        let view: Vec<(&str, Member<'_>)> = members
            .0
            .iter()
            .map(|(k, v)| (k.as_ref(), Member::from_raw(v)))
            .collect();
        if validate(&view)? == Check::Sdk {
            sdk_check(serde_json::from_str::<cloudevents::Event>(text))?;
        }
        Ok(CloudEvent { json: text.into() })
    }

    /// Validate a structured-mode CloudEvent already parsed as JSON.
    pub fn from_value(value: Value) -> Result<CloudEvent, EventError> {
        let Value::Object(map) = value else {
            return Err(EventError::NotAnObject);
        };
        let view: Vec<(&str, Member<'_>)> = map
            .iter()
            .map(|(k, v)| (k.as_str(), Member::from_value(v)))
            .collect();
        let check = validate(&view)?;
        drop(view);
        let value = Value::Object(map);
        if check == Check::Sdk {
            sdk_check(cloudevents::Event::deserialize(&value))?;
        }
        let json = serde_json::to_string(&value).map_err(|e| EventError::Invalid(e.to_string()))?;
        Ok(CloudEvent { json: json.into() })
    }

    /// A builder for an event with a JSON payload; `id` defaults to a fresh unique id and
    /// `datacontenttype` to `application/json` when there is data.
    pub fn builder(source: impl Into<String>, ty: impl Into<String>) -> CloudEventBuilder {
        CloudEventBuilder {
            map: {
                let mut m = Map::new();
                m.insert("specversion".into(), "1.0".into());
                m.insert("source".into(), Value::String(source.into()));
                m.insert("type".into(), Value::String(ty.into()));
                m
            },
        }
    }

    /// Events that came from another broker (validated where they entered the cluster).
    pub(crate) fn trusted(json: Arc<str>) -> CloudEvent {
        CloudEvent { json }
    }

    /// The structured-mode JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        self.json.clone()
    }

    /// Parse as a JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    /// A string attribute or extension by name.
    pub fn attr(&self, name: &str) -> Option<String> {
        match self.to_value().get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// This event with the extension `name` set to `value` when it has no such attribute yet
    /// (e.g. the distributed-tracing extension `traceparent`); unchanged otherwise.
    ///
    /// ```
    /// use broker::CloudEvent;
    /// let e = CloudEvent::from_json(r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#).unwrap();
    /// let e = e.with_extension_if_absent("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert_eq!(e.attr("traceparent").unwrap(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// let kept = e.with_extension_if_absent("traceparent", "other");
    /// assert!(kept.attr("traceparent").unwrap().starts_with("00-4bf9"));
    /// ```
    pub fn with_extension_if_absent(self, name: &str, value: &str) -> CloudEvent {
        let Value::Object(mut map) = self.to_value() else {
            return self;
        };
        if map.contains_key(name) {
            return self;
        }
        map.insert(name.to_string(), Value::String(value.to_string()));
        CloudEvent::from_value(Value::Object(map)).unwrap_or(self)
    }

    /// The `id` attribute.
    pub fn id(&self) -> String {
        self.attr("id").unwrap_or_default()
    }

    /// The `source` attribute.
    pub fn source(&self) -> String {
        self.attr("source").unwrap_or_default()
    }

    /// The `type` attribute.
    pub fn ty(&self) -> String {
        self.attr("type").unwrap_or_default()
    }

    /// The `data` member, if any.
    pub fn data(&self) -> Option<Value> {
        self.to_value().get("data").cloned()
    }

    /// The event as a `cloudevents-sdk` event.
    pub fn to_sdk(&self) -> Result<cloudevents::Event, EventError> {
        serde_json::from_str(&self.json).map_err(|e| EventError::Invalid(e.to_string()))
    }
}

/// Builds a [`CloudEvent`]; see [`CloudEvent::builder`].
#[derive(Debug, Clone)]
pub struct CloudEventBuilder {
    map: Map<String, Value>,
}

impl CloudEventBuilder {
    /// Set the `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.map.insert("id".into(), Value::String(id.into()));
        self
    }

    /// Set the JSON `data` (and `datacontenttype: application/json` unless set).
    pub fn data(mut self, data: Value) -> Self {
        self.map.insert("data".into(), data);
        self.map
            .entry("datacontenttype")
            .or_insert_with(|| "application/json".into());
        self
    }

    /// Set any other attribute or extension.
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.map.insert(name.into(), value.into());
        self
    }

    /// Validate and build.
    pub fn build(mut self) -> Result<CloudEvent, EventError> {
        self.map
            .entry("id")
            .or_insert_with(|| Value::String(fresh_id()));
        CloudEvent::from_value(Value::Object(self.map))
    }
}

/// A unique-enough id: time in nanoseconds, process id and a counter.
pub fn fresh_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{t:x}-{:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The members of a JSON object, unparsed (names decoded, values as raw JSON text).
struct RawMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(Name(k)) = m.next_key()? {
                    let v: &'de RawValue = m.next_value()?;
                    out.push((k, v));
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A member name, borrowed from the text unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Name<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}

/// What validation needs to know about one member's value.
enum Member<'a> {
    /// A string: its JSON text (with quotes) or its decoded value.
    Str {
        raw: Option<&'a str>,
        decoded: Option<&'a str>,
    },
    Null,
    Bool,
    /// An integer that fits an `i64`.
    Int,
    /// Any other number, an array or an object.
    Other(Cow<'a, str>),
}

impl<'a> Member<'a> {
    fn from_raw(v: &'a RawValue) -> Member<'a> {
        let t = v.get();
        match t.as_bytes().first() {
            Some(b'"') => Member::Str {
                raw: Some(t),
                decoded: None,
            },
            Some(b'n') => Member::Null,
            Some(b't' | b'f') => Member::Bool,
            Some(b'-' | b'0'..=b'9') if t.parse::<i64>().is_ok() => Member::Int,
            _ => Member::Other(Cow::Borrowed(t)),
        }
    }

    fn from_value(v: &'a Value) -> Member<'a> {
        match v {
            Value::String(s) => Member::Str {
                raw: None,
                decoded: Some(s),
            },
            Value::Null => Member::Null,
            Value::Bool(_) => Member::Bool,
            Value::Number(n) if n.is_i64() => Member::Int,
            other => Member::Other(Cow::Owned(other.to_string())),
        }
    }

    /// The decoded string (`None`: not a string).
    fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            Member::Str {
                decoded: Some(s), ..
            } => Some(Cow::Borrowed(s)),
            Member::Str { raw: Some(r), .. } => match serde_json::from_str::<&str>(r) {
                Ok(s) => Some(Cow::Borrowed(s)),
                Err(_) => serde_json::from_str::<String>(r).ok().map(Cow::Owned),
            },
            _ => None,
        }
    }

    fn is_empty_string(&self) -> bool {
        match self {
            Member::Str { raw: Some(r), .. } => *r == "\"\"",
            Member::Str {
                decoded: Some(s), ..
            } => s.is_empty(),
            _ => false,
        }
    }

    /// As JSON text (for error messages).
    fn json(&self) -> String {
        match self {
            Member::Str { raw: Some(r), .. } => r.to_string(),
            Member::Str {
                decoded: Some(s), ..
            } => Value::String(s.to_string()).to_string(),
            Member::Str { .. } => String::new(),
            Member::Null => "null".into(),
            Member::Bool => "a boolean".into(),
            Member::Int => "an integer".into(),
            Member::Other(t) => t.to_string(),
        }
    }
}

/// Whether the checks done here were complete.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// The event is valid.
    Done,
    /// Valid so far; `dataschema`, `time` or `data_base64` still need the SDK's parsers.
    Sdk,
}

/// The CloudEvents SDK's own context attributes (everything else is an extension).
const SDK_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// The SDK's rule for JSON `data` (anything else must be a string).
fn is_json_content_type(ct: &str) -> bool {
    ct.starts_with("application/json") || ct.starts_with("text/json") || ct.ends_with("+json")
}

fn sdk_check<E: std::fmt::Display>(r: Result<cloudevents::Event, E>) -> Result<(), EventError> {
    r.map(|_| ())
        .map_err(|e| EventError::Invalid(e.to_string()))
}

/// The checks of CloudEvents 1.0 (JSON format) that `cloudevents-sdk` makes when it parses an
/// event, done without building the event; `Check::Sdk` when the SDK must still parse it.
fn validate(members: &[(&str, Member<'_>)]) -> Result<Check, EventError> {
    let get = |name: &str| members.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    match get("specversion") {
        None => return Err(EventError::Missing("specversion")),
        Some(v) if v.text().as_deref() == Some("1.0") => {}
        Some(other) => return Err(EventError::SpecVersion(other.json())),
    }
    for attr in ["id", "source", "type"] {
        match get(attr) {
            None | Some(Member::Null) => return Err(EventError::Missing(attr)),
            Some(v) if v.is_empty_string() => return Err(EventError::Empty(attr)),
            Some(Member::Str { .. }) => {}
            Some(_) => return Err(EventError::NotString(attr)),
        }
    }
    for (name, _) in members {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(EventError::BadName(name.to_string()));
        }
    }
    if get("data").is_some() && get("data_base64").is_some() {
        return Err(EventError::Invalid(
            "'data' and 'data_base64' are both set".into(),
        ));
    }
    for attr in ["datacontenttype", "subject"] {
        match get(attr) {
            None | Some(Member::Null | Member::Str { .. }) => {}
            Some(v) => {
                return Err(EventError::Invalid(format!(
                    "attribute '{attr}' must be a string, not {}",
                    v.json()
                )))
            }
        }
    }
    let ct = match get("datacontenttype") {
        Some(v @ Member::Str { .. }) => v.text().unwrap_or_default(),
        _ => Cow::Borrowed("application/json"),
    };
    match get("data") {
        Some(Member::Str { .. }) | None => {}
        Some(v) if !is_json_content_type(&ct) => {
            return Err(EventError::Invalid(format!(
                "'data' must be a string for datacontenttype '{ct}', not {}",
                v.json()
            )))
        }
        Some(_) => {}
    }
    for (name, v) in members {
        if SDK_ATTRIBUTES.contains(name) {
            continue;
        }
        match v {
            Member::Str { .. } | Member::Null | Member::Bool | Member::Int => {}
            Member::Other(t) => {
                return Err(EventError::Invalid(format!(
                    "extension '{name}' must be a string, a boolean or an integer, not {t}"
                )))
            }
        }
    }
    let parsed = ["dataschema", "time", "data_base64"];
    if parsed
        .iter()
        .any(|a| !matches!(get(a), None | Some(Member::Null)))
        || get("data_base64").is_some()
    {
        return Ok(Check::Sdk);
    }
    Ok(Check::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validation before the fast path: our checks, then the SDK parsing a copy of the map.
    fn reference(text: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(map) = v else {
            return Err("not an object".into());
        };
        let view: Vec<(&str, Member<'_>)> = map
            .iter()
            .map(|(k, v)| (k.as_str(), Member::from_value(v)))
            .collect();
        validate(&view).map_err(|e| e.to_string())?;
        serde_json::from_value::<cloudevents::Event>(Value::Object(map.clone()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn mutated_events_are_accepted_or_refused_never_a_panic() {
        let valid = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2024-01-02T03:04:05Z","datacontenttype":"application/json","data":{"a":[1,2]}}"#;
        let mut rng = 0x853c49e6748fea9bu64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..5_000 {
            let mut b = valid.to_vec();
            let at = (next() as usize) % b.len();
            match next() % 3 {
                0 => b[at] ^= 1 << (next() % 8),
                1 => b.truncate(at),
                _ => b.insert(at, b"{}[]\":,0e-"[(next() % 10) as usize]),
            }
            if let Ok(text) = std::str::from_utf8(&b) {
                if let Ok(ev) = CloudEvent::from_json(text) {
                    // Accepted: it carries the required attributes.
                    assert!(!ev.id().is_empty());
                }
            }
        }
    }

    #[test]
    fn fast_validation_agrees_with_the_sdk() {
        let base = r#""specversion":"1.0","id":"1","source":"/s","type":"t""#;
        let cases = [
            format!("{{{base}}}"),
            format!(r#"{{{base},"data":{{"a":[1,2]}}}}"#),
            format!(r#"{{{base},"datacontenttype":"application/json","data":null}}"#),
            format!(r#"{{{base},"datacontenttype":"text/plain","data":"hi"}}"#),
            format!(r#"{{{base},"datacontenttype":"text/plain","data":{{"a":1}}}}"#),
            format!(r#"{{{base},"datacontenttype":"text/plain","data":null}}"#),
            format!(r#"{{{base},"datacontenttype":"application/cloudevents+json","data":5}}"#),
            format!(r#"{{{base},"datacontenttype":7}}"#),
            format!(r#"{{{base},"subject":"x"}}"#),
            format!(r#"{{{base},"subject":["x"]}}"#),
            format!(r#"{{{base},"time":"2024-01-02T03:04:05Z"}}"#),
            format!(r#"{{{base},"time":"yesterday"}}"#),
            format!(r#"{{{base},"time":null}}"#),
            format!(r#"{{{base},"dataschema":"https://example.com/s"}}"#),
            format!(r#"{{{base},"dataschema":"not a url"}}"#),
            format!(r#"{{{base},"data_base64":"aGVsbG8="}}"#),
            format!(r#"{{{base},"data_base64":"%%%"}}"#),
            format!(r#"{{{base},"data_base64":null}}"#),
            format!(r#"{{{base},"data":1,"data_base64":"aGk="}}"#),
            format!(r#"{{{base},"ext":"v","flag":true,"n":-42,"none":null}}"#),
            format!(r#"{{{base},"n":1.5}}"#),
            format!(r#"{{{base},"n":1e3}}"#),
            format!(r#"{{{base},"n":18446744073709551615}}"#),
            format!(r#"{{{base},"obj":{{}}}}"#),
            format!(r#"{{{base},"Bad":"x"}}"#),
            r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#.to_string(),
            r#"{"specversion":"1.0","id":1,"source":"/s","type":"t"}"#.to_string(),
            r#"{"specversion":"1.0","id":null,"source":"/s","type":"t"}"#.to_string(),
            r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#.to_string(),
            r#"{"specversion":"1\u002e0","id":"\u0031","source":"/s","type":"t"}"#.to_string(),
            r#"{"id":"1","source":"/s","type":"t"}"#.to_string(),
        ];
        for text in &cases {
            let fast = CloudEvent::from_json(text);
            let slow = reference(text);
            assert_eq!(fast.is_ok(), slow.is_ok(), "{text}: {fast:?} vs {slow:?}");
            if let Ok(ev) = fast {
                assert_eq!(ev.as_json(), text.as_str(), "kept as the producer wrote it");
            }
        }
    }

    #[test]
    fn text_is_kept_unless_multiline_or_repeated() {
        let pretty = "{\n  \"specversion\": \"1.0\",\n  \"id\": \"1\",\n  \"source\": \"/s\",\n  \"type\": \"t\"\n}";
        let ev = CloudEvent::from_json(pretty).unwrap();
        assert!(!ev.as_json().contains('\n'));
        assert_eq!(ev.id(), "1");
        let twice = r#"{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}"#;
        let ev = CloudEvent::from_json(twice).unwrap();
        assert_eq!(ev.id(), "2");
        assert_eq!(ev.as_json().matches("\"id\"").count(), 1);
        assert!(matches!(
            CloudEvent::from_json("[1]"),
            Err(EventError::NotAnObject)
        ));
        assert!(matches!(
            CloudEvent::from_json("{oops"),
            Err(EventError::NotJson(_))
        ));
    }
}
