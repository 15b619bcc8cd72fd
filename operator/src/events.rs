//! Events on the objects the controllers act on, written to `events.k8s.io/v1` in the
//! background.
//!
//! Not kube's `Recorder`: it keeps every Event it published for six minutes, to aggregate
//! repeats into series, and scans that cache under a lock on each publish. The controllers
//! publish on transitions only, so there is nothing to aggregate, and with a 10,000-Machine
//! fleet the scan was a tenth of the operator's CPU. Like client-go's event broadcaster,
//! publishing never holds up a reconcile: Events queue (bounded) and a worker writes them; when
//! the API cannot keep up, Events are dropped with a log line rather than memory growing.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::PostParams;
use kube::{Api, Client};
pub use machinist_crds::events::Notice;
use tokio::sync::mpsc;

/// Events waiting to be written; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Events written at once.
const IN_FLIGHT: usize = 16;

/// Queues Events for the background writer.
#[derive(Clone, Debug)]
pub struct Publisher {
    queue: mpsc::Sender<Event>,
    controller: String,
    instance: String,
}

impl Publisher {
    /// A publisher whose writer (a task on the current runtime) ends when the last clone of it
    /// is dropped.
    pub fn start(client: Client, controller: &str, instance: Option<String>) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(write(client, events));
        Self { queue, instance: instance.unwrap_or_else(|| controller.to_owned()), controller: controller.to_owned() }
    }

    /// Queues an Event about `regarding`.
    pub fn publish(&self, regarding: &ObjectReference, notice: Notice) {
        let event =
            machinist_crds::events::event(regarding, notice, &self.controller, &self.instance, jiff::Timestamp::now());
        let (event, why) = match self.queue.try_send(event) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(event)) => (event, "too many waiting to be written"),
            Err(mpsc::error::TrySendError::Closed(event)) => (event, "the writer stopped"),
        };
        tracing::warn!(
            object = regarding.name.as_deref().unwrap_or_default(),
            reason = event.reason.as_deref().unwrap_or_default(),
            "Event dropped: {why}"
        );
    }
}

async fn write(client: Client, mut events: mpsc::Receiver<Event>) {
    futures::stream::poll_fn(move |cx| events.poll_recv(cx))
        .for_each_concurrent(IN_FLIGHT, |event| {
            let client = client.clone();
            async move {
                let namespace = event.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
                let api: Api<Event> = Api::namespaced(client, &namespace);
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(
                        object = event.regarding.as_ref().and_then(|r| r.name.as_deref()).unwrap_or_default(),
                        reason = event.reason.as_deref().unwrap_or_default(),
                        %error,
                        "failed to publish an Event"
                    );
                }
            }
        })
        .await;
}
