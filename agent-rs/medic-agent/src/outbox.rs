//! Where messages for the server go: the stream that is open now, if any.
//!
//! A [`Link`] is the sending half of one stream. The [`Outbox`] holds the link of the stream
//! that has been welcomed; executions send through the outbox and never need to know whether,
//! or which, stream is open. While none is, messages are dropped: state changes are in the
//! journal and replayed after the next `Welcome`, and output chunks are lost by design (the
//! final update counts them).
//!
//! State changes, `Hello`s and heartbeats are queued without limit: they are few and small.
//! Output is not: each chunk in the queue holds one of a fixed number of credits, returned when
//! the stream takes the chunk, so a slow server slows the script's output down (through its
//! pipe) instead of growing the agent's memory. Closing a link returns every waiter at once.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::proto::{AgentMessage, OutputChunk, agent_message::Body};

/// How many output chunks (16 KiB each at most) may wait for the stream.
const CHUNK_CREDITS: usize = 64;

/// One queued message, with the output credit it holds, if any.
#[derive(Debug)]
pub struct Outgoing {
    message: AgentMessage,
    _credit: Option<OwnedSemaphorePermit>,
}

/// The sending half of one stream.
#[derive(Debug, Clone)]
pub struct Link {
    id: u64,
    queue: mpsc::UnboundedSender<Outgoing>,
    credits: Arc<Semaphore>,
}

impl Link {
    /// A new link numbered `id`, and the stream of messages to put on the wire.
    pub fn new(id: u64) -> (Self, impl Stream<Item = AgentMessage> + Send + 'static) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let link = Self {
            id,
            queue,
            credits: Arc::new(Semaphore::new(CHUNK_CREDITS)),
        };
        // Mapping drops the credit: the chunk has left the queue.
        let stream = UnboundedReceiverStream::new(receiver).map(|outgoing| outgoing.message);
        (link, stream)
    }

    /// Which link this is.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queue a message; false when the stream is gone.
    pub fn send(&self, body: Body) -> bool {
        self.queue
            .send(Outgoing {
                message: AgentMessage { body: Some(body) },
                _credit: None,
            })
            .is_ok()
    }

    /// Queue an output chunk once a credit is free; false when the link closed meanwhile.
    pub async fn send_chunk(&self, chunk: OutputChunk) -> bool {
        let Ok(credit) = Arc::clone(&self.credits).acquire_owned().await else {
            return false;
        };
        self.queue
            .send(Outgoing {
                message: AgentMessage {
                    body: Some(Body::OutputChunk(chunk)),
                },
                _credit: Some(credit),
            })
            .is_ok()
    }

    /// Stop accepting output; whoever waits for a credit gives up.
    pub fn close(&self) {
        self.credits.close();
    }
}

/// The link of the welcomed stream, shared by everything that sends.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    current: Arc<Mutex<Option<Link>>>,
}

impl Outbox {
    /// Send through `link` from now on.
    pub fn attach(&self, link: &Link) {
        *self.lock() = Some(link.clone());
    }

    /// Stop sending through the link numbered `id` (if it is still the current one).
    pub fn detach(&self, id: u64) {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|link| link.id == id)
            && let Some(link) = current.take()
        {
            link.close();
        }
    }

    /// Whether a stream is attached.
    pub fn is_attached(&self) -> bool {
        self.lock().is_some()
    }

    /// Queue a message on the current stream; false when there is none.
    pub fn send(&self, body: Body) -> bool {
        self.lock().as_ref().is_some_and(|link| link.send(body))
    }

    /// Send an output chunk on the current stream, waiting for a credit; false when it was
    /// dropped (no stream, or the stream ended).
    pub async fn send_chunk(&self, chunk: OutputChunk) -> bool {
        let link = self.lock().clone();
        match link {
            Some(link) => link.send_chunk(chunk).await,
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Link>> {
        // Nothing panics while holding the lock; recover rather than spread a poison.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::Heartbeat;

    fn chunk(sequence: u64) -> OutputChunk {
        OutputChunk {
            execution_id: "e".into(),
            sequence,
            ..OutputChunk::default()
        }
    }

    #[tokio::test]
    async fn messages_reach_the_attached_stream_in_order() {
        let outbox = Outbox::default();
        assert!(!outbox.send(Body::Heartbeat(Heartbeat::default())));
        let (link, stream) = Link::new(1);
        outbox.attach(&link);
        assert!(outbox.send(Body::Heartbeat(Heartbeat::default())));
        assert!(outbox.send_chunk(chunk(0)).await);
        outbox.detach(1);
        assert!(!outbox.is_attached());
        drop(link);
        let messages: Vec<AgentMessage> = stream.collect().await;
        assert_eq!(messages.len(), 2);
        assert!(matches!(messages[0].body, Some(Body::Heartbeat(_))));
        assert!(matches!(messages[1].body, Some(Body::OutputChunk(_))));
    }

    #[tokio::test]
    async fn output_waits_for_credit_and_gives_up_when_the_link_closes() {
        let outbox = Outbox::default();
        let (link, stream) = Link::new(7);
        outbox.attach(&link);
        for sequence in 0..CHUNK_CREDITS as u64 {
            assert!(outbox.send_chunk(chunk(sequence)).await);
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), outbox.send_chunk(chunk(99)));
        assert!(blocked.await.is_err(), "no credit left: the sender waits");

        // Taking a chunk off the stream returns its credit.
        let mut stream = Box::pin(stream);
        assert!(stream.next().await.is_some());
        assert!(outbox.send_chunk(chunk(100)).await);

        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.send_chunk(chunk(101)).await })
        };
        tokio::task::yield_now().await;
        outbox.detach(7);
        assert!(
            !waiting.await.unwrap(),
            "closing the link releases the waiter"
        );
    }

    #[tokio::test]
    async fn detaching_another_link_leaves_the_current_one() {
        let outbox = Outbox::default();
        let (link, _stream) = Link::new(2);
        outbox.attach(&link);
        outbox.detach(1);
        assert!(outbox.is_attached());
    }
}
