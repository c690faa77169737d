//! The embedded broker: librdkafka's mock cluster, which speaks the real
//! Kafka protocol on 127.0.0.1, so `kcat` or another ferry can connect. It
//! is not `Send`, so it lives on a thread of its own, and is driven by
//! commands (the tests use them to make the broker refuse writes).

use std::sync::mpsc;
use std::thread;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// How many produce requests one `refuse_writes` drops: more than a
/// client sends in any outage a test waits out.
const REFUSALS: usize = 100_000;

enum Command {
    RefuseWrites,
    AcceptWrites,
    RefuseForGood(usize),
    CreateTopic(String, mpsc::Sender<Result<(), String>>),
}

/// A running mock cluster; it stops when this is dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
}

impl EmbeddedBroker {
    /// Starts one broker with `topics` created, `partitions` each.
    pub fn start(topics: &[String], partitions: i32) -> Result<Self, String> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, rx) = mpsc::channel::<Command>();
        let topics = topics.to_vec();
        thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for topic in &topics {
                    if let Err(e) = cluster.create_topic(topic, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("creating topic {topic}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Until every sender is dropped.
                while let Ok(command) = rx.recv() {
                    match command {
                        Command::RefuseWrites => cluster.request_errors(
                            RDKafkaApiKey::Produce,
                            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT; REFUSALS],
                        ),
                        Command::AcceptWrites => {
                            cluster.clear_request_errors(RDKafkaApiKey::Produce)
                        }
                        Command::RefuseForGood(n) => cluster.request_errors(
                            RDKafkaApiKey::Produce,
                            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; n],
                        ),
                        Command::CreateTopic(topic, reply) => {
                            let _ = reply.send(
                                cluster
                                    .create_topic(&topic, partitions, 1)
                                    .map_err(|e| e.to_string()),
                            );
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let bootstrap = ready_rx.recv().map_err(|e| e.to_string())??;
        Ok(Self {
            bootstrap,
            commands,
        })
    }

    /// `host:port` to connect to.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// An outage for producers: the broker hangs up on every produce
    /// request until `accept_writes`; consumers go on reading. (Taking the
    /// mock broker down instead re-binds its port, which aborts the whole
    /// process when another socket has taken the port meanwhile.)
    pub fn refuse_writes(&self) {
        let _ = self.commands.send(Command::RefuseWrites);
    }

    pub fn accept_writes(&self) {
        let _ = self.commands.send(Command::AcceptWrites);
    }

    /// The next `n` produce requests are refused for good, as too large
    /// (a broker whose limit is below ferry's).
    pub fn refuse_for_good(&self, n: usize) {
        let _ = self.commands.send(Command::RefuseForGood(n));
    }

    pub fn create_topic(&self, topic: &str) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic(topic.into(), tx))
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    }
}
