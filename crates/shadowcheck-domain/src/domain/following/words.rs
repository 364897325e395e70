//! A threat's explanation in words, for people: the panel on the map, the printable report and
//! the push messages say the same sentences. Read from the stored explanation (JSON), so rows
//! scored by an earlier rule version are described too.

use serde_json::Value;

/// A tracker class as people name it.
fn class_name(class: &str) -> &str {
    match class {
        "apple_find_my" => "an Apple Find My tracker (AirTag or similar)",
        "tile" => "a Tile tracker",
        "chipolo" => "a Chipolo tracker",
        "samsung_smarttag" => "a Samsung SmartTag",
        "google_find_my" => "a Google Find My Device tracker",
        "pebblebee" => "a Pebblebee tracker",
        "apple_device" => "an Apple device (not a tracker tag)",
        other => other,
    }
}

fn component<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    ["components", "penalties"]
        .iter()
        .filter_map(|k| e[*k].as_array())
        .flatten()
        .find(|c| c["component"] == name)
        .map(|c| &c["inputs"])
}

fn gate_value<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    e["gates"]
        .as_array()?
        .iter()
        .find(|g| g["gate"] == name)
        .map(|g| &g["value"])
}

/// A number as people write it: no `.0` on whole numbers.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{f:.0}"),
        Some(f) => format!("{f:.1}"),
        None => v.to_string(),
    }
}

fn distance(metres: f64) -> String {
    if metres >= 1000.0 {
        format!("{:.1} km", metres / 1000.0)
    } else {
        format!("{metres:.0} m")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Why the detector ranks this pair where it does, in a few sentences.
pub fn summary(e: &Value) -> String {
    let mut s = Vec::new();
    if let Some(class) = component(e, "tracker_signature").and_then(|i| i["tracker_class"].as_str())
    {
        s.push(format!("It advertises like {}.", class_name(class)));
    }
    let mut seen = Vec::new();
    if let Some(places) = e["places_count"].as_u64().filter(|n| *n > 0) {
        seen.push(format!(
            "at {}",
            plural(places, "place", "different places")
        ));
    }
    if let Some(m) = component(e, "distance_together").and_then(|i| i["metres"].as_f64()) {
        if m > 0.0 {
            seen.push(format!("over {} travelled together", distance(m)));
        }
    }
    if let Some(min) = gate_value(e, "minutes_moving_together").and_then(Value::as_f64) {
        if min >= 1.0 {
            seen.push(format!(
                "moving with you for {}",
                plural(min.round() as u64, "minute", "minutes")
            ));
        }
    }
    if let Some(days) =
        component(e, "recurrence").and_then(|i| i["days_at_two_or_more_places"].as_array())
    {
        if days.len() > 1 {
            seen.push(format!("on {} days", days.len()));
        }
    }
    if !seen.is_empty() {
        s.push(format!(
            "Seen with this capture device {}.",
            seen.join(", ")
        ));
    }
    if let Some(w) = component(e, "windows_heard").and_then(|i| i["windows"].as_u64()) {
        let minutes = component(e, "windows_heard")
            .and_then(|i| i["window_minutes"].as_u64())
            .unwrap_or(0);
        s.push(format!(
            "Heard by this capture device in {} of {minutes} minutes, without positions (time \
             evidence only).",
            plural(w, "window", "windows")
        ));
    }
    if let Some(stops) = gate_value(e, "stops_together")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        s.push(format!(
            "It stayed with you at {} (5 minutes or more in one place).",
            plural(stops, "stop", "stops")
        ));
    }
    if let Some(crowd) = component(e, "crowd").and_then(|i| i["co_travellers"].as_u64()) {
        s.push(format!(
            "{} travelled the same way at the same time, as in a train or bus: that lowers the score.",
            plural(crowd, "other transmitter", "other transmitters")
        ));
    }
    let missing: Vec<String> = e["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["passed"] == false)
        .filter_map(|g| {
            let (value, needed) = (number(&g["value"]), number(&g["threshold"]));
            let text = match g["gate"].as_str()? {
                "sightings" => format!("sightings {value} of {needed}"),
                "distinct_places" => format!("places {value} of {needed}"),
                "place_span_m" => format!("places {value} m apart of {needed} m"),
                "minutes_moving_together" => format!("minutes moving together {value} of {needed}"),
                "stops_together" => format!("stops together {value} of {needed}"),
                "not_allowlisted" => "it is on the allow-list (yours)".into(),
                "not_a_cell" => "cell towers are never followers".into(),
                other => format!("{other} {value} of {needed}"),
            };
            Some(text)
        })
        .collect();
    if !missing.is_empty() {
        s.push(format!(
            "Not enough for a warning yet: {}.",
            missing.join("; ")
        ));
    }
    if let Some(verdict) = e["feedback"]["verdict"].as_str() {
        s.push(match verdict {
            "false_alarm" => "Marked a false alarm: it stays below suspicious.".to_owned(),
            "confirmed" => "Confirmed by an operator.".to_owned(),
            other => format!("Operator verdict: {other}."),
        });
    }
    let score = e["score"].as_f64().unwrap_or(0.0);
    let level = e["level"].as_str().unwrap_or("none");
    s.push(format!("Score {score:.0} of 100: {level}."));
    s.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_alert_reads_as_sentences_with_its_evidence() {
        let e = json!({
            "score": 81.5, "level": "alert", "places_count": 4,
            "gates": [{"gate": "stops_together", "value": 2, "threshold": 1, "passed": true},
                      {"gate": "minutes_moving_together", "value": 35.0, "threshold": 30.0, "passed": true}],
            "components": [
                {"component": "tracker_signature", "inputs": {"tracker_class": "apple_find_my"}},
                {"component": "distance_together", "inputs": {"metres": 6200.0}},
                {"component": "recurrence", "inputs": {"days_at_two_or_more_places": ["2026-12-01", "2026-12-02"]}}
            ],
            "penalties": []
        });
        let words = summary(&e);
        assert_eq!(
            words,
            "It advertises like an Apple Find My tracker (AirTag or similar). Seen with this \
             capture device at 4 different places, over 6.2 km travelled together, moving with \
             you for 35 minutes, on 2 days. It stayed with you at 2 stops (5 minutes or more in \
             one place). Score 82 of 100: alert."
        );
    }

    #[test]
    fn a_watch_says_what_is_missing_and_the_verdict() {
        let e = json!({
            "score": 40.0, "level": "watch", "places_count": 2,
            "gates": [{"gate": "distinct_places", "value": 2, "threshold": 3, "passed": false},
                      {"gate": "minutes_moving_together", "value": 37.0, "threshold": 60.0, "passed": false}],
            "components": [], "penalties": [{"component": "crowd", "inputs": {"co_travellers": 6}}],
            "feedback": {"verdict": "false_alarm"}
        });
        let words = summary(&e);
        assert!(
            words.contains(
                "Not enough for a warning yet: places 2 of 3; minutes moving together 37 of 60."
            ),
            "{words}"
        );
        assert!(
            words.contains("6 other transmitters travelled the same way"),
            "{words}"
        );
        assert!(words.contains("Marked a false alarm"), "{words}");
    }
}
