"""Kafka through aiokafka: connection settings (client), topics, codec, producer, and the
consumer loop with a graceful drain."""
