//! Kafka helpers for tests: topics, producing with acks=all, reading a topic to its end.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, replication: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let results = runtime
        .block_on(
            admin
                .create_topics([&new], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))),
        )
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Whether `topic` exists with at least one partition (false while it does not yet).
pub fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map(|md| md.topics().first().is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()))
        .unwrap_or(false)
}

/// Replica broker ids of each partition of `topic`.
pub fn replicas(bootstrap: &str, topic: &str) -> Vec<Vec<i32>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    md.topics()[0].partitions().iter().map(|p| p.replicas().to_vec()).collect()
}

/// Produces `values` with acks=all and idempotence, in order, to one partition; panics on any failure.
pub fn produce_all(bootstrap: &str, topic: &str, partition: i32, values: &[String]) {
    let records: Vec<TestRecord> = values
        .iter()
        .map(|v| TestRecord { value: Some(v.as_bytes().to_vec()), ..Default::default() })
        .collect();
    produce_records(bootstrap, topic, partition, &records);
}

/// Reads one partition from the beginning to its current end through `bootstrap` only.
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", super::unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(20)).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Under read_committed the last offsets may be transaction markers or aborted records, which
    // are never delivered: the consumer's position, not the last record, says when we are done.
    let position = |c: &BaseConsumer| -> i64 {
        let Ok(list) = c.position() else { return 0 };
        match list.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        }
    };
    while position(&consumer) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic}/{partition}: stuck at {} of {high}",
            position(&consumer)
        );
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("consume");
            out.push(String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

/// In-sync replica ids of each partition of `topic`.
pub fn in_sync_replicas(bootstrap: &str, topic: &str) -> Vec<Vec<i32>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    md.topics()[0].partitions().iter().map(|p| p.isr().to_vec()).collect()
}

/// Deletes `topic` if it exists and waits until the cluster no longer lists it.
pub fn delete_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _ = runtime.block_on(
        admin.delete_topics(&[topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))),
    );
    let probe = ClientConfig::new().set("bootstrap.servers", bootstrap).clone();
    super::wait_for(&format!("topic {topic} deleted"), Duration::from_secs(60), || {
        matches!(macklake::kafka::admin::topic_partitions(&probe, topic, Duration::from_secs(5)), Ok(None))
            .then_some(())
    });
}

/// Every record of every partition of `topic` (read_committed), partition by partition.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<String> {
    let partitions = replicas(bootstrap, topic).len() as i32;
    (0..partitions).flat_map(|p| read_partition(bootstrap, topic, p)).collect()
}

/// Partition 0 of `topic` from the beginning to its end, with each record's headers.
pub fn read_with_headers(
    bootstrap: &str,
    topic: &str,
) -> Vec<(Vec<u8>, std::collections::HashMap<String, String>)> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", super::unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(20)).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // As in `read_partition`: transaction markers are never delivered, so the position says when
    // the end is reached.
    let position = |c: &BaseConsumer| -> i64 {
        let Ok(list) = c.position() else { return 0 };
        match list.find_partition(topic, 0).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        }
    };
    while position(&consumer) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic}: stuck at {} of {high}",
            position(&consumer)
        );
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("consume");
            let mut headers = std::collections::HashMap::new();
            if let Some(h) = msg.headers() {
                for header in h.iter() {
                    let value =
                        header.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
                    headers.insert(header.key.to_string(), value);
                }
            }
            out.push((msg.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}

/// The offset `group` has committed for one partition (-1 if none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let back = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    match back.find_partition(topic, partition).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => o,
        _ => -1,
    }
}

/// A record with everything a producer can set (for sink formats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub value: Option<Vec<u8>>,
}

/// Produces `records` (keys, headers, null values allowed) with acks=all and idempotence, in
/// order, to one partition; panics on any failure. Returns each record's timestamp (ms).
pub fn produce_records(bootstrap: &str, topic: &str, partition: i32, records: &[TestRecord]) -> Vec<i64> {
    use rdkafka::message::{Header, OwnedHeaders};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut timestamps = Vec::new();
    runtime.block_on(async {
        let mut pending = Vec::new();
        for r in records {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis();
            let ts = now as i64;
            timestamps.push(ts);
            let mut headers = OwnedHeaders::new();
            for (name, value) in &r.headers {
                headers = headers.insert(Header { key: name, value: value.as_ref() });
            }
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
                .partition(partition)
                .headers(headers)
                .timestamp(ts);
            if let Some(k) = &r.key {
                record = record.key(k);
            }
            if let Some(v) = &r.value {
                record = record.payload(v);
            }
            pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
        }
        for (i, delivery) in pending.into_iter().enumerate() {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => panic!("record {i} was not acknowledged: {e}"),
                Err(_) => panic!("record {i}: delivery future cancelled"),
            }
        }
    });
    timestamps
}

/// Produces `(timestamp ms, value)` records with those producer-set timestamps, acks=all, in
/// order, to one partition; panics on any failure.
pub fn produce_at(bootstrap: &str, topic: &str, partition: i32, records: &[(i64, String)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut pending = Vec::new();
        for (ts, value) in records {
            let record =
                FutureRecord::<(), String>::to(topic).partition(partition).timestamp(*ts).payload(value);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
        }
        for (i, delivery) in pending.into_iter().enumerate() {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => panic!("record {i} was not acknowledged: {e}"),
                Err(_) => panic!("record {i}: delivery future cancelled"),
            }
        }
    });
}

/// Produces one record whose only header has the name `name` as raw bytes (rdkafka's API takes
/// names as `&str`; any other client may send a name that is not UTF-8).
pub fn produce_with_raw_header_name(bootstrap: &str, topic: &str, name: &[u8], value: &[u8], payload: &[u8]) {
    use rdkafka::message::OwnedHeaders;
    let headers = OwnedHeaders::new_with_capacity(1);
    // SAFETY: `as_borrowed` is the live native header list `headers` owns (rdkafka's own
    // representation); `rd_kafka_header_add` copies the name and value.
    let err = unsafe {
        let hdrs = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
            as *mut rdkafka::bindings::rd_kafka_headers_t;
        rdkafka::bindings::rd_kafka_header_add(
            hdrs,
            name.as_ptr() as *const std::ffi::c_char,
            name.len() as isize,
            value.as_ptr() as *const std::ffi::c_void,
            value.len() as isize,
        )
    };
    assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR, "header added");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let record = FutureRecord::<(), [u8]>::to(topic).partition(0).headers(headers).payload(payload);
        producer.send(record, Duration::from_secs(60)).await.map_err(|(e, _)| e).expect("acknowledged");
    });
}

/// Deletes the records of `topic`/`partition` below `before` (as retention would); returns the
/// new log start.
pub fn delete_records(bootstrap: &str, topic: &str, partition: i32, before: i64) -> i64 {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(before)).expect("offset");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = runtime
        .block_on(
            admin.delete_records(&tpl, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))),
        )
        .expect("delete records");
    let e = result.find_partition(topic, partition).expect("the partition in the answer");
    e.error().expect("records deleted");
    match e.offset() {
        Offset::Offset(o) => o,
        other => panic!("unexpected log start {other:?}"),
    }
}
