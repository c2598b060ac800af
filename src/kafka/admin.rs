//! Cluster metadata and topic administration.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

/// Whether the cluster refused the client's credentials (SASL). Waiting does not fix that, so
/// callers give up at once instead of retrying as if Kafka were down.
pub fn authentication_failed(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// What a connector reports when `authentication_failed`: the cause, and what to check.
pub const AUTHENTICATION_FAILED: &str = "Kafka refused the credentials (authentication failed): check \
     sasl.username, sasl.password and sasl.mechanisms in the [kafka] tables (the broker's log says more)";

/// `fetch_metadata`, but an authentication failure ends it early: librdkafka reports that only as
/// an error event (a metadata request just times out), so the events are read between attempts.
fn fetch_metadata(
    consumer: &BaseConsumer,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Metadata, KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let step = deadline.saturating_duration_since(std::time::Instant::now()).min(Duration::from_secs(1));
        match consumer.fetch_metadata(topic, step) {
            Ok(metadata) => return Ok(metadata),
            Err(error) => {
                while let Some(event) = consumer.poll(Duration::ZERO) {
                    if let Err(e) = event
                        && authentication_failed(&e)
                    {
                        return Err(e);
                    }
                }
                if std::time::Instant::now() >= deadline {
                    return Err(error);
                }
            }
        }
    }
}

/// The broker ids the cluster's metadata lists, asked through `bootstrap`.
///
/// Blocking; call from a plain thread or `spawn_blocking`.
/// The cluster's id (for the REST API's root), or None if Kafka does not answer in `timeout`.
pub fn cluster_id(config: &ClientConfig, timeout: Duration) -> Option<String> {
    let consumer: BaseConsumer = config.create().ok()?;
    consumer.client().fetch_cluster_id(timeout)
}

pub fn broker_ids(bootstrap: &str, timeout: Duration) -> Result<Vec<i32>, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "2000")
        // Probing a cluster that is still starting is expected to fail; keep librdkafka quiet.
        .set("log_level", "0")
        .create()?;
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// What `ensure_topic` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Existed { partitions: usize },
    Created,
}

/// Partition count of `topic`, or `None` if the cluster does not know it.
pub fn topic_partitions(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, KafkaError> {
    let consumer: BaseConsumer = config.create()?;
    let metadata = fetch_metadata(&consumer, Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// Creates `topic` if the cluster does not have it (partitions and replication -1 mean the broker's
/// defaults), then waits until its metadata is visible.
pub fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: Option<i32>,
    replication: Option<i32>,
    topic_config: &std::collections::BTreeMap<String, String>,
    timeout: Duration,
) -> Result<TopicState, KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    if let Some(partitions) = topic_partitions(config, topic, timeout)? {
        return Ok(TopicState::Existed { partitions });
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut new =
        NewTopic::new(topic, partitions.unwrap_or(-1), TopicReplication::Fixed(replication.unwrap_or(-1)));
    for (k, v) in topic_config {
        new = new.set(k, v);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::AdminOpCreation(format!("runtime: {e}")))?;
    let results = runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new().operation_timeout(Some(timeout))))?;
    let mut created = true;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    let deadline = std::time::Instant::now() + timeout;
    while topic_partitions(config, topic, timeout)?.is_none() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::AdminOp(RDKafkaErrorCode::RequestTimedOut));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(if created { TopicState::Created } else { TopicState::Existed { partitions: 0 } })
}

/// The value of one configuration entry of `topic` as the cluster reports it (its own setting
/// or the broker default it inherits); `None` if the cluster does not report that entry.
pub fn topic_config(
    config: &ClientConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<String>, KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::AdminOpCreation(format!("runtime: {e}")))?;
    let results = runtime.block_on(admin.describe_configs(
        [&ResourceSpecifier::Topic(topic)],
        &AdminOptions::new().request_timeout(Some(timeout)),
    ))?;
    for result in results {
        let resource = result.map_err(KafkaError::AdminOp)?;
        if let Some(entry) = resource.get(key) {
            return Ok(entry.value.clone());
        }
    }
    Ok(None)
}

/// The ids of `topics` (base64, as Kafka's tools print them), read with librdkafka's DescribeTopics
/// over `client`'s connections, in one request (rdkafka has no wrapper for it). A topic that does
/// not exist, or a cluster without topic ids (before Kafka 2.8), is left out. A topic deleted and
/// re-created keeps its name but gets a new id: what tells two histories apart when offsets alone
/// do not.
pub fn topic_ids<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<std::collections::HashMap<String, String>, String> {
    use rdkafka::bindings as rd;
    use std::ffi::{CStr, CString, c_char};
    const OK: rd::rd_kafka_resp_err_t = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;

    /// Destroys what librdkafka allocated, however the function returns.
    struct Owned {
        queue: *mut rd::rd_kafka_queue_t,
        options: *mut rd::rd_kafka_AdminOptions_t,
        topics: *mut rd::rd_kafka_TopicCollection_t,
        event: *mut rd::rd_kafka_event_t,
    }
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: each pointer is null or was returned by its librdkafka constructor and is
            // destroyed exactly once, here.
            unsafe {
                if !self.event.is_null() {
                    rd::rd_kafka_event_destroy(self.event);
                }
                if !self.topics.is_null() {
                    rd::rd_kafka_TopicCollection_destroy(self.topics);
                }
                if !self.options.is_null() {
                    rd::rd_kafka_AdminOptions_destroy(self.options);
                }
                if !self.queue.is_null() {
                    rd::rd_kafka_queue_destroy(self.queue);
                }
            }
        }
    }
    let mut ids = std::collections::HashMap::new();
    if topics.is_empty() {
        return Ok(ids);
    }
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(t.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client for the duration of the call; the collection copies the
    // names; every result pointer below borrows from `owned.event`, which outlives its use.
    unsafe {
        let mut owned = Owned {
            queue: rd::rd_kafka_queue_new(rk),
            options: rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            topics: rd::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len()),
            event: std::ptr::null_mut(),
        };
        let mut errstr = [0 as c_char; 256];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        if rd::rd_kafka_AdminOptions_set_request_timeout(owned.options, ms, errstr.as_mut_ptr(), errstr.len())
            != OK
        {
            return Err(CStr::from_ptr(errstr.as_ptr()).to_string_lossy().into_owned());
        }
        rd::rd_kafka_DescribeTopics(rk, owned.topics, owned.options, owned.queue);
        owned.event = rd::rd_kafka_queue_poll(owned.queue, ms.saturating_add(1000));
        if owned.event.is_null() {
            return Err(format!("no answer to DescribeTopics within {timeout:?}"));
        }
        if rd::rd_kafka_event_error(owned.event) != OK {
            return Err(CStr::from_ptr(rd::rd_kafka_event_error_string(owned.event))
                .to_string_lossy()
                .into_owned());
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(owned.event);
        if result.is_null() {
            return Err("DescribeTopics answered with another event".into());
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        for i in 0..count {
            let description = *descriptions.add(i);
            let error = rd::rd_kafka_TopicDescription_error(description);
            if !error.is_null() && rd::rd_kafka_error_code(error) != OK {
                continue; // missing (UNKNOWN_TOPIC_OR_PART) or not describable: no id to check
            }
            let id = rd::rd_kafka_TopicDescription_topic_id(description);
            let name = rd::rd_kafka_TopicDescription_name(description);
            if id.is_null()
                || name.is_null()
                || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                    && rd::rd_kafka_Uuid_least_significant_bits(id) == 0)
            {
                continue;
            }
            let text = rd::rd_kafka_Uuid_base64str(id);
            if !text.is_null() {
                ids.insert(
                    CStr::from_ptr(name).to_string_lossy().into_owned(),
                    CStr::from_ptr(text).to_string_lossy().into_owned(),
                );
            }
        }
        Ok(ids)
    }
}
