"""Kafka through aiokafka: topics, codec, producer, and the consumer loop with a graceful drain."""
