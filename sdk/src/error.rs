//! The one error type a driver returns; it crosses the ABI as JSON.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of failure a driver reports. Core maps each kind to a Docker API status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A driver option or request field is wrong (HTTP 400).
    #[default]
    InvalidArgument,
    /// The object the request names does not exist (HTTP 404).
    NotFound,
    /// The request collides with an existing object (HTTP 409).
    Conflict,
    /// The request is valid but not allowed in the current state (HTTP 403).
    Forbidden,
    /// The driver failed for a reason the caller cannot fix (HTTP 500).
    Internal,
}

/// An error returned by a driver. `option` names the driver option at fault, when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DriverError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// One line saying what went wrong, naming the object and the cause.
    pub message: String,
    /// The driver option that caused the error, if any.
    pub option: Option<String>,
}

impl DriverError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DriverError { kind, message: message.into(), option: None }
    }

    /// A bad driver option: the message names the option.
    pub fn invalid_option(option: &str, reason: impl fmt::Display) -> Self {
        DriverError {
            kind: ErrorKind::InvalidArgument,
            message: format!("invalid option {option:?}: {reason}"),
            option: Some(option.to_string()),
        }
    }

    /// An option the driver does not know.
    pub fn unknown_option(driver: &str, option: &str) -> Self {
        DriverError {
            kind: ErrorKind::InvalidArgument,
            message: format!("driver {driver:?} does not support option {option:?}"),
            option: Some(option.to_string()),
        }
    }

    /// A bad request that is not about one option.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// A conflict with an existing object.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// A request refused in the current state.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// A missing object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A failure inside the driver.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DriverError {}

/// The result type of every driver method.
pub type DriverResult<T> = Result<T, DriverError>;
