//! Query: read-only, tenant-isolated SQL over the lake.
//!
//! Built under the query issue; this crate holds only its place in the
//! workspace until then.
