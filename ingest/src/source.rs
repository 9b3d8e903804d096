//! Where records come from: Kafka (the service), HTTP (the embedded default)
//! and files (backfills). Each fills [`crate::batch::Pending`] transactions and
//! commits them to the [`crate::lake::Lake`].

pub mod file;
pub mod http;
pub mod kafka;
