//! Reading a rescue's JSON report in tests: a filesystem by device, a warning by its words.

use serde_json::Value;

/// The report's filesystem on `device` (panics with the report when there is none).
pub fn filesystem<'a>(report: &'a Value, device: &str) -> &'a Value {
    report["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["device"] == device)
        .unwrap_or_else(|| panic!("{device} not in {report:#}"))
}

/// Whether a warning names `device` and says `words`.
pub fn warned_about(report: &Value, device: &str, words: &str) -> bool {
    report["warnings"].as_array().unwrap().iter().any(|w| {
        w["message"]
            .as_str()
            .is_some_and(|m| m.contains(device) && m.contains(words))
    })
}
