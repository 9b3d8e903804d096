//! The JSON error body every HTTP route of tooltrail answers with:
//! `{"error": "<snake_code>", "message": "...", "field": "..."}` (`field` only
//! when one field of the request is at fault). The code is stable and meant
//! for programs; the message is for people and never holds internals (those
//! are logged).

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// An HTTP error: a status and its JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The body as JSON bytes, for a trailer in a body already streaming.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an error body always serializes")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// [`ApiError::new`] as a response.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Response {
    ApiError::new(status, code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_code_and_the_message_and_the_field_when_one_is_at_fault() {
        let plain = ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "not JSON");
        assert_eq!(
            String::from_utf8(plain.body()).unwrap(),
            r#"{"error":"invalid_body","message":"not JSON"}"#
        );
        let field = plain.clone().with_field("from");
        assert_eq!(
            String::from_utf8(field.body()).unwrap(),
            r#"{"error":"invalid_body","message":"not JSON","field":"from"}"#
        );
        let response = field.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
