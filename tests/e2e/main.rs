//! End-to-end tests: the real `tooltrail` binary and the real Kafka-compatible broker.
//!
//! One test binary for all end-to-end tests (one link, one place for shared helpers).
//! The broker address comes from `TOOLTRAIL_TEST_KAFKA`; start one with
//! `scripts/kafka-broker.sh start && eval $(scripts/kafka-broker.sh env)`, or run `scripts/test`.
//! Tests never skip silently when the broker is missing: they fail and say how to start it.

mod cli;
mod console;
mod detect;
mod detect_kafka;
mod export;
mod ingest_http;
mod ingest_kafka;
mod kafka;
mod lake_readers;
mod lake_verify;
mod otlp;
mod query;
mod query_abuse;
mod retention;
mod rules;
mod s3;
mod secrets;
mod support;
