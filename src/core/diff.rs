//! What a change does to each column it writes, old → new: the rule of what
//! differs between a row as stored and as the plan writes it, by meaning (the
//! planner's own comparison, so `5` and `5.0` are no difference here either).
//!
//! Values are JSON: `services` and `decky_config` as the JSON their text
//! holds (text that is not JSON as a string), `decky_ip` and `state` as
//! strings, and a row or column that is not there as `null`. An insert's
//! values are all new, a deletion's all old; an update has only the columns it
//! changes.

use serde_json::Value;

use super::plan::{equivalent, Change, ChangeKind};

/// One column of a change: its value before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// `state`, `services`, `decky_ip` or `decky_config`.
    pub field: &'static str,
    pub old: Value,
    pub new: Value,
}

impl FieldDiff {
    fn new(field: &'static str, old: Value, new: Value) -> Self {
        FieldDiff { field, old, new }
    }
}

impl Change {
    /// Each column this change writes, old → new, in the order `state`,
    /// `services`, `decky_ip`, `decky_config`.
    pub fn diff(&self) -> Vec<FieldDiff> {
        let text = |text: &str| Value::String(text.to_owned());
        let maybe_text = |maybe: Option<&str>| maybe.map_or(Value::Null, text);
        match (&self.kind, &self.stored) {
            (ChangeKind::Insert { state, columns }, _) => vec![
                FieldDiff::new("state", Value::Null, text(state.as_str())),
                FieldDiff::new("services", Value::Null, column(&columns.services_json)),
                FieldDiff::new("decky_ip", Value::Null, text(&columns.decky_ip)),
                FieldDiff::new("decky_config", Value::Null, column(&columns.config_json)),
            ],
            (ChangeKind::Delete { previous_state, .. }, stored) => {
                let mut diff = vec![FieldDiff::new("state", text(previous_state), Value::Null)];
                if let Some(stored) = stored {
                    diff.extend([
                        FieldDiff::new("services", column(&stored.services), Value::Null),
                        FieldDiff::new(
                            "decky_ip",
                            maybe_text(stored.decky_ip.as_deref()),
                            Value::Null,
                        ),
                        FieldDiff::new(
                            "decky_config",
                            stored.decky_config.as_deref().map_or(Value::Null, column),
                            Value::Null,
                        ),
                    ]);
                }
                diff
            }
            (ChangeKind::Update { state, config, .. }, stored) => {
                let mut diff = Vec::new();
                if let Some(transition) = state {
                    diff.push(FieldDiff::new(
                        "state",
                        text(&transition.from),
                        text(transition.to.as_str()),
                    ));
                }
                let (Some(update), Some(stored)) = (config, stored) else {
                    return diff;
                };
                let columns = &update.columns;
                for &field in &update.changed_fields {
                    let (old, new) = match field {
                        "services" => (column(&stored.services), column(&columns.services_json)),
                        "decky_ip" => (
                            maybe_text(stored.decky_ip.as_deref()),
                            text(&columns.decky_ip),
                        ),
                        _ => (
                            stored.decky_config.as_deref().map_or(Value::Null, column),
                            column(&columns.config_json),
                        ),
                    };
                    diff.push(FieldDiff::new(field, old, new));
                }
                diff
            }
        }
    }
}

/// A JSON column's value: what its text holds, or the text itself when it is
/// not JSON (another writer's garbage is shown as it is).
fn column(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// One key of `decky_config` whose value differs: its path from the top
/// (`["service_config", "ssh", "port"]`; empty when the whole value is not
/// an object on one side), and its values (`None`: the key is absent).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange<'a> {
    pub path: Vec<&'a str>,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Value>,
}

/// The keys whose values differ between two JSON objects, down to the
/// leaves of nested objects (lists and scalars are compared whole, by
/// meaning): the new object's keys in its order, then the keys it dropped.
pub fn changed_keys<'a>(old: &'a Value, new: &'a Value) -> Vec<KeyChange<'a>> {
    let mut changes = Vec::new();
    let mut path = Vec::new();
    compare(&mut path, Some(old), Some(new), &mut changes);
    changes
}

fn compare<'a>(
    path: &mut Vec<&'a str>,
    old: Option<&'a Value>,
    new: Option<&'a Value>,
    changes: &mut Vec<KeyChange<'a>>,
) {
    match (old, new) {
        (Some(Value::Object(old)), Some(Value::Object(new))) => {
            for (key, value) in new {
                path.push(key);
                compare(path, old.get(key), Some(value), changes);
                path.pop();
            }
            for (key, value) in old.iter().filter(|(key, _)| !new.contains_key(*key)) {
                path.push(key);
                compare(path, Some(value), None, changes);
                path.pop();
            }
        }
        (Some(old), Some(new)) if equivalent(old, new) => {}
        _ => changes.push(KeyChange {
            path: path.clone(),
            old,
            new,
        }),
    }
}

/// A change of a list of services, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesDelta<'a> {
    /// In both lists, in the new list's order.
    pub kept: Vec<&'a str>,
    /// Only in the new list, in its order.
    pub added: Vec<&'a str>,
    /// Only in the old list, in its order.
    pub removed: Vec<&'a str>,
}

/// What was added to and removed from a list of services; `None` when either
/// value is not a list of strings (text another writer left in the column).
pub fn services_delta<'a>(old: &'a Value, new: &'a Value) -> Option<ServicesDelta<'a>> {
    let names = |value: &'a Value| -> Option<Vec<&'a str>> {
        value.as_array()?.iter().map(Value::as_str).collect()
    };
    let (old, new) = (names(old)?, names(new)?);
    let (kept, added) = new.iter().partition(|name| old.contains(name));
    let removed = old.into_iter().filter(|name| !new.contains(name)).collect();
    Some(ServicesDelta {
        kept,
        added,
        removed,
    })
}

#[cfg(test)]
mod tests;
