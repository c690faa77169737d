//! Kafka: clients configured the same way everywhere, the routes from
//! topics to import targets, DLQ headers, and the embedded broker.

pub mod embedded;

use rdkafka::ClientConfig;
use regex_lite::Regex;

use crate::settings::{KafkaSettings, RouteSettings};

/// Headers a dead letter carries besides its original ones.
pub mod dlq_headers {
    pub const ERROR: &str = "ferry-error";
    pub const REASON: &str = "ferry-reason";
    pub const SOURCE_TOPIC: &str = "ferry-source-topic";
    pub const SOURCE_PARTITION: &str = "ferry-source-partition";
    pub const SOURCE_OFFSET: &str = "ferry-source-offset";
    /// Milliseconds since the Unix epoch.
    pub const FAILED_AT: &str = "ferry-failed-at-ms";
    /// `true` when the dead letter is a cut-down copy: the original did not
    /// fit the broker's limit.
    pub const TRUNCATED: &str = "ferry-truncated";
    pub const ORIGINAL_KEY_BYTES: &str = "ferry-original-key-bytes";
    pub const ORIGINAL_VALUE_BYTES: &str = "ferry-original-value-bytes";
}

/// Whether a send failed for good: trying the same message again cannot
/// help (too large, invalid, not allowed). Anything else (a broker away, a
/// timeout, a leader moving) is worth another try.
pub fn is_permanent(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::MessageBatchTooLarge
                | C::InvalidRecord
                | C::InvalidMessage
                | C::TopicAuthorizationFailed
        )
    )
}

/// Room kept for a message's headers and the record's own framing.
pub const FRAMING_BYTES: usize = 16 * 1024;

/// A client config for `brokers` with the configured extra properties.
pub fn client_config(settings: &KafkaSettings, brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

/// The idempotent producer of status events and dead letters: retried
/// sends are neither lost nor duplicated, and keep their order.
pub fn producer_config(settings: &KafkaSettings, brokers: &str) -> ClientConfig {
    let mut config = client_config(settings, brokers);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.max.bytes", settings.max_message_bytes.to_string())
        .set(
            "message.timeout.ms",
            settings.send_timeout.as_millis().to_string(),
        );
    config
}

/// Which route a topic belongs to.
pub struct Router {
    routes: Vec<(Regex, RouteSettings)>,
    /// Topics ferry writes to, never read as requests.
    own: Vec<String>,
}

impl Router {
    pub fn new(settings: &KafkaSettings) -> Result<Self, String> {
        let routes = settings
            .routes
            .iter()
            .map(|r| {
                Regex::new(&r.pattern)
                    .map(|re| (re, r.clone()))
                    .map_err(|e| format!("kafka.routes pattern {:?}: {e}", r.pattern))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut own: Vec<String> = settings
            .routes
            .iter()
            .map(|r| r.status_topic.clone())
            .collect();
        own.push(settings.dlq_topic.clone());
        Ok(Self { routes, own })
    }

    /// The same router, told of more topics ferry writes (the users
    /// export's, the exports' events), which a route's pattern may match.
    pub fn also_writing(mut self, topics: &[String]) -> Self {
        for topic in topics {
            if !topic.is_empty() && !self.own.contains(topic) {
                self.own.push(topic.clone());
            }
        }
        self
    }

    /// Whether ferry writes `topic`: its messages are ferry's own output
    /// (a route's pattern may match it, `flairbit-users` for one), never a
    /// request.
    pub fn is_own(&self, topic: &str) -> bool {
        self.own.iter().any(|t| t == topic)
    }

    pub fn route(&self, topic: &str) -> Option<&RouteSettings> {
        if self.is_own(topic) {
            return None;
        }
        self.routes
            .iter()
            .find(|(re, _)| re.is_match(topic))
            .map(|(_, route)| route)
    }

    /// The subscription: librdkafka reads a topic that starts with `^` as
    /// a regex.
    pub fn subscription(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(_, r)| match r.pattern.starts_with('^') {
                true => r.pattern.clone(),
                false => format!("^.*{}", r.pattern),
            })
            .collect()
    }

    /// Every topic ferry writes to.
    pub fn own_topics(&self) -> &[String] {
        &self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_route_by_pattern_and_our_own_topics_never_do() {
        let settings = KafkaSettings::default();
        let router = Router::new(&settings).unwrap();
        let target = |t: &str| router.route(t).map(|r| r.target);
        assert_eq!(target("acme-users"), Some(crate::vocab::Target::Nodes));
        assert_eq!(target("acme-matches"), Some(crate::vocab::Target::Matches));
        assert_eq!(target("users"), None);
        assert_eq!(target(&settings.dlq_topic), None);
        assert_eq!(router.subscription(), vec!["^.+-users$", "^.+-matches$"]);
    }
}
