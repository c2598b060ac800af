"""The seed course's own client library, unmodified, against the local cluster.

The seed producer (SEED.md, step 6) does `KafkaProducer(bootstrap_servers='localhost:9092')` and sends
ten messages "Mensagem {i} - Teste de mensagem Kafka" to `macklake-topic`; a KafkaConsumer must read
the ten back, in order. Only the one-second pauses between sends are left out.
"""

import os

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

TOPIC = "macklake-topic"
BOOTSTRAP = os.environ.get("MACKLAKE_SEED_BOOTSTRAP", "localhost:9092")


def ensure_topic():
    """The seed creates the topic with kafka-topics.sh; auto-creation is off on our cluster."""
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def end_offset():
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    tp = TopicPartition(TOPIC, 0)
    end = consumer.end_offsets([tp])[tp]
    consumer.close()
    return end


def test_seed_producer_and_consumer_round_trip():
    ensure_topic()
    start = end_offset()

    # --- the seed's producer, as written (minus time.sleep) ---
    producer = KafkaProducer(bootstrap_servers='localhost:9092')
    sent = []
    for i in range(10):
        mensagem = f"Mensagem {i} - Teste de mensagem Kafka"
        producer.send('macklake-topic', mensagem.encode('utf-8'))
        sent.append(mensagem)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, consumer_timeout_ms=20000)
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek(tp, start)
    received = []
    for message in consumer:
        received.append(message.value.decode("utf-8"))
        if len(received) == len(sent):
            break
    consumer.close()

    assert received == sent
