//! Signing generic webhook requests (see the [module docs](super) for what a
//! receiver checks).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Unix seconds at which the request was signed.
pub const TIMESTAMP_HEADER: &str = "X-Tooltrail-Timestamp";
/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Tooltrail-Signature";
/// The alert id: the same on every retry of the same alert.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How far a receiver should let the timestamp stray from its clock.
pub const REPLAY_TOLERANCE_SECS: u64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Tooltrail-Signature` value for `body` signed at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// What a receiver does: checks the signature in constant time and that the
/// timestamp is within [`REPLAY_TOLERANCE_SECS`] of `now` (unix seconds).
pub fn verify(secret: &[u8], timestamp: &str, signature: &str, body: &[u8], now: i64) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if now.abs_diff(ts) > REPLAY_TOLERANCE_SECS {
        return false;
    }
    let Some(tag) = signature
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_time() {
        let body = br#"{"alert_id":"a1"}"#;
        let sig = sign(b"topsecret-topsecret", 1_760_000_000, body);
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        let ok =
            |secret: &[u8], ts: &str, body: &[u8], now: i64| verify(secret, ts, &sig, body, now);
        assert!(ok(
            b"topsecret-topsecret",
            "1760000000",
            body,
            1_760_000_100
        ));
        assert!(!ok(
            b"other-secret-other",
            "1760000000",
            body,
            1_760_000_100
        ));
        assert!(!ok(
            b"topsecret-topsecret",
            "1760000001",
            body,
            1_760_000_100
        ));
        assert!(!ok(
            b"topsecret-topsecret",
            "1760000000",
            b"{}",
            1_760_000_100
        ));
        // Replayed more than five minutes later.
        assert!(!ok(
            b"topsecret-topsecret",
            "1760000000",
            body,
            1_760_000_301
        ));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign(b"key", 1_700_000_000, b"{}"),
            format!(
                "v1={}",
                "9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
            )
        );
    }
}
