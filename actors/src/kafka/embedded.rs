//! The embedded broker: librdkafka's mock cluster, which speaks the real
//! Kafka protocol on 127.0.0.1, so `kcat` or another ferry can connect. It
//! is not `Send`, so it lives on a thread of its own, and is driven by
//! commands (the tests use them to take the broker down and up).

use std::sync::mpsc;
use std::thread;

use rdkafka::mocking::MockCluster;

enum Command {
    Down,
    Up,
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
                        Command::Down => log_err(cluster.broker_down(-1)),
                        Command::Up => log_err(cluster.broker_up(-1)),
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

    /// Disconnects every client and refuses new connections.
    pub fn down(&self) {
        let _ = self.commands.send(Command::Down);
    }

    pub fn up(&self) {
        let _ = self.commands.send(Command::Up);
    }

    pub fn create_topic(&self, topic: &str) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic(topic.into(), tx))
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    }
}

fn log_err(r: rdkafka::error::KafkaResult<()>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "Embedded broker command failed.");
    }
}
