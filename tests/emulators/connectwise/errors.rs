//! ConnectWise's error bodies: `{"code", "message"}` and, for a request ConnectWise understood
//! but refused (400), the `InvalidObject` shape of `shared/samples/cw-error-invalidobject.json`
//! with an `errors` list naming resource and field. Every refusal the emulator sends is built
//! here, so a client sees one consistent vocabulary.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::conditions::ConditionError;

/// An error response: status plus a ConnectWise-shaped JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, body: json!({ "code": code, "message": message.into() }) }
    }

    /// 400 `InvalidObject` with one entry in `errors`.
    pub fn invalid_object(
        resource: &str,
        code: &str,
        message: impl Into<String>,
        field: &str,
    ) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "code": "InvalidObject",
                "message": format!("{resource} object is invalid"),
                "errors": [{
                    "code": code,
                    "message": message.into(),
                    "resource": resource,
                    "field": field,
                }],
            }),
        }
    }

    /// 400 for a query parameter (`conditions`, `orderBy`, `page`, …) that cannot be used.
    pub fn bad_query(parameter: &str, error: ConditionError) -> ApiError {
        let field = error.field.as_deref().unwrap_or(parameter);
        let mut err = ApiError::invalid_object(parameter, "InvalidField", error.message, field);
        err.body["message"] = Value::String(format!("{parameter} object is invalid"));
        err
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn record_not_found(resource: &str, id: i64) -> ApiError {
        ApiError::not_found(format!("{resource} with id {id} not found"))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::respond::json_response(self.status, &self.body)
    }
}
