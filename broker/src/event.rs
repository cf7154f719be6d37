//! Validated CloudEvents 1.0, carried as their structured-mode JSON text.

use std::sync::Arc;

use serde_json::{Map, Value};

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
    pub fn from_json(text: &str) -> Result<CloudEvent, EventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validate a structured-mode CloudEvent already parsed as JSON.
    pub fn from_value(value: Value) -> Result<CloudEvent, EventError> {
        let Value::Object(map) = value else {
            return Err(EventError::NotAnObject);
        };
        validate(&map)?;
        let json = serde_json::to_string(&Value::Object(map))
            .map_err(|e| EventError::Invalid(e.to_string()))?;
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

fn validate(map: &Map<String, Value>) -> Result<(), EventError> {
    match map.get("specversion") {
        None => return Err(EventError::Missing("specversion")),
        Some(Value::String(v)) if v == "1.0" => {}
        Some(other) => return Err(EventError::SpecVersion(other.to_string())),
    }
    for attr in ["id", "source", "type"] {
        match map.get(attr) {
            None | Some(Value::Null) => return Err(EventError::Missing(attr)),
            Some(Value::String(s)) if s.is_empty() => return Err(EventError::Empty(attr)),
            Some(Value::String(_)) => {}
            Some(_) => return Err(EventError::NotString(attr)),
        }
    }
    for (name, _) in map.iter() {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(EventError::BadName(name.clone()));
        }
    }
    if map.contains_key("data") && map.contains_key("data_base64") {
        return Err(EventError::Invalid(
            "'data' and 'data_base64' are both set".into(),
        ));
    }
    // The SDK checks the rest (time format, attribute types, data_base64).
    serde_json::from_value::<cloudevents::Event>(Value::Object(map.clone()))
        .map(|_| ())
        .map_err(|e| EventError::Invalid(e.to_string()))
}
