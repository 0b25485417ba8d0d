//! Topic names and Home Assistant discovery configurations: what a subscriber sees. A board's
//! name becomes one topic level (`svit_mqtt::escape`).

use serde_json::{json, Value};

/// `PREFIX/bridge/availability`: the host's own, set offline by its last will.
pub fn bridge_availability(prefix: &str) -> String {
    format!("{prefix}/bridge/availability")
}

pub use svit_mqtt::{escape, topic as board};

/// Retained discovery configurations for one board: (topic, payload). Sensors read the stats
/// message; the threshold is a number entity that writes `set/threshold`.
pub fn discovery(
    ha: &str,
    prefix: &str,
    board: &str,
    model: &svit_protocol::ModelInfo,
) -> Vec<(String, Value)> {
    let labels = &model.labels;
    let id = escape(board);
    let stats = self::board(prefix, board, "stats");
    let device = json!({
        "identifiers": [format!("svit_{id}")],
        "name": board,
        "manufacturer": "SViT-Edge",
        "model": model.bundle,
        // The bundle's manifest hash: Home Assistant shows it as the device's firmware.
        "sw_version": model.hash,
    });
    let availability = json!([
        {"topic": self::board(prefix, board, "availability")},
        {"topic": bridge_availability(prefix)},
    ]);
    let entity = |kind: &str, key: &str, name: &str, extra: Value| {
        let mut cfg = json!({
            "name": name,
            "unique_id": format!("svit_{id}_{key}"),
            "object_id": format!("svit_{id}_{key}"),
            "state_topic": stats,
            "device": device,
            "availability": availability,
            "availability_mode": "all",
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        (format!("{ha}/{kind}/svit_{id}/{key}/config"), cfg)
    };
    let mut out = vec![
        entity(
            "sensor",
            "fps",
            "Frames per second",
            json!({
            "value_template": "{{ value_json.fps | round(1) }}", "unit_of_measurement": "fps",
            "state_class": "measurement"}),
        ),
        entity(
            "sensor",
            "latency_p50",
            "Latency p50",
            json!({
            "value_template": "{{ value_json.total_ms.p50 | round(1) }}", "unit_of_measurement": "ms",
            "device_class": "duration", "state_class": "measurement"}),
        ),
        entity(
            "sensor",
            "kept_fraction",
            "Kept token fraction",
            json!({
            "value_template": "{{ value_json.kept_fraction | round(3) }}", "state_class": "measurement"}),
        ),
        entity(
            "sensor",
            "temperature",
            "CPU temperature",
            json!({
            "value_template": "{{ value_json.temperature_c }}", "unit_of_measurement": "°C",
            "device_class": "temperature", "state_class": "measurement"}),
        ),
        entity(
            "number",
            "threshold",
            "Pruning threshold",
            json!({
            "value_template": "{{ value_json.threshold }}",
            "command_topic": self::board(prefix, board, "set/threshold"),
            "min": 0, "max": 1, "step": 0.05, "mode": "slider"}),
        ),
    ];
    for label in labels {
        let key = format!("count_{}", escape(label));
        out.push(entity(
            "sensor",
            &key,
            &format!("{label} count"),
            json!({
            "value_template": format!("{{{{ value_json.counts['{label}'] | default(0) }}}}"),
            "state_class": "measurement"}),
        ));
    }
    out
}
