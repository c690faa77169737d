//! The status outbox's events as the broker takes them: an event too large
//! for the broker's limit is cut down to fit, never refused forever.

/// An event's JSON cut down to `max` bytes: its id lists (`successList`,
/// `failedList`, an export's `files`) halved until it fits, each cut list's
/// `…Truncated` flag set; then long texts (`failureReason`, `error`,
/// `rejectsPath`) shortened. `None` when even that does not fit. An event
/// within `max` comes back as it is.
pub fn fit(payload: &str, max: usize) -> Option<String> {
    if payload.len() <= max {
        return Some(payload.to_string());
    }
    let mut event: serde_json::Value = serde_json::from_str(payload).ok()?;
    let lists = [
        ("successList", "successListTruncated"),
        ("failedList", "failedListTruncated"),
        ("files", "filesTruncated"),
    ];
    loop {
        let mut cut_any = false;
        for (list, flag) in lists {
            if let Some(items) = event.get_mut(list).and_then(|v| v.as_array_mut()) {
                if !items.is_empty() {
                    items.truncate(items.len() / 2);
                    event[flag] = serde_json::Value::Bool(true);
                    cut_any = true;
                }
            }
        }
        let text = serde_json::to_string(&event).ok()?;
        if text.len() <= max {
            return Some(text);
        }
        if !cut_any {
            break;
        }
    }
    for field in ["failureReason", "error", "rejectsPath"] {
        if let Some(serde_json::Value::String(s)) = event.get_mut(field) {
            if s.len() > 1024 {
                let mut end = 1024;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push('…');
            }
        }
    }
    serde_json::to_string(&event)
        .ok()
        .filter(|t| t.len() <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_cut_to_fit_and_says_so() {
        let big = serde_json::json!({
            "jobId": "j", "status": "FAILED",
            "successList": (0..100).map(|i| format!("ok-{i}")).collect::<Vec<_>>(),
            "failedList": (0..40).map(|_| "x".repeat(60_000)).collect::<Vec<_>>(),
            "successListTruncated": false, "failedListTruncated": false,
            "failureReason": "r".repeat(5000),
        })
        .to_string();
        let fitted = fit(&big, 100_000).unwrap();
        assert!(fitted.len() <= 100_000);
        let v: serde_json::Value = serde_json::from_str(&fitted).unwrap();
        assert_eq!(v["failedListTruncated"], true);
        assert!(v["failedList"].as_array().unwrap().len() <= 1);
        let tiny = fit(&big, 2_000).unwrap();
        let v: serde_json::Value = serde_json::from_str(&tiny).unwrap();
        assert_eq!(v["failedList"], serde_json::json!([]));
        assert!(v["failureReason"].as_str().unwrap().len() < 1100);
        assert_eq!(fit(r#"{"a":1}"#, 100).unwrap(), r#"{"a":1}"#);
        assert_eq!(fit(&big, 10), None);
    }
}
