//! One target a placement tried before its answer, as `attempts` reports it.

use serde::Serialize;

use crate::error_code::ErrorCode;

/// A target tried before the one that took the call (or before the answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub provider: String,
    pub error: ErrorCode,
    pub message: String,
}
