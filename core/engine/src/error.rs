//! The engine's one error type. Every variant names the object it concerns; the API maps
//! variants to Docker's status codes in one place (`Error::status`).

use crate::executor::{ExecErrorKind, PlanError};
use wharf_sdk::{DriverError, ErrorKind};

/// An engine error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// The named object does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request collides with an existing object (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is not allowed in the current state (403).
    #[error("{0}")]
    Forbidden(String),
    /// A driver refused or failed.
    #[error("{driver}: {error}")]
    Driver {
        /// Driver name.
        driver: String,
        /// Its error.
        error: DriverError,
    },
    /// Carrying out a plan failed; completed steps were rolled back.
    #[error("{object}")]
    Plan {
        /// What the plan was for.
        object: String,
        /// The failed step.
        #[source]
        error: PlanError,
    },
    /// A plan was carried out but the store could not record it, so the plan was rolled
    /// back: the kernel is as before, unless `rollback_failures` says otherwise.
    #[error("{object}: the change could not be recorded and was rolled back")]
    Unrecorded {
        /// What the plan was for.
        object: String,
        /// Why the store could not record it.
        #[source]
        error: Box<Error>,
        /// Undo steps that failed during the rollback, each with its cause.
        rollback_failures: Vec<String>,
    },
    /// The state store failed.
    #[error("state store")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A service the operation needs, the cluster store, cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

/// The result type of engine operations.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The HTTP status code Docker gives for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidArgument(_) => 400,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::Forbidden(_) => 403,
            Error::Driver { error, .. } => match error.kind {
                ErrorKind::InvalidArgument => 400,
                ErrorKind::NotFound => 404,
                ErrorKind::Conflict => 409,
                ErrorKind::Forbidden => 403,
                ErrorKind::Internal => 500,
            },
            Error::Plan { error, .. } => match error.cause.kind() {
                // The host holds something else under a name the request gave.
                ExecErrorKind::Taken => 409,
                ExecErrorKind::Refused => 400,
                ExecErrorKind::Failed => 500,
            },
            Error::Store(_) | Error::Internal(_) | Error::Unrecorded { .. } => 500,
            Error::Unavailable(_) => 503,
        }
    }

    /// The one line a user sees: this error, every error it came from, and the undo steps
    /// that failed when a plan was rolled back.
    pub fn message(&self) -> String {
        let mut text = crate::executor::report(self);
        let rollback_failures = match self {
            Error::Plan { error, .. } => &error.rollback_failures[..],
            Error::Unrecorded { rollback_failures, .. } => rollback_failures,
            _ => &[],
        };
        if !rollback_failures.is_empty() {
            text.push_str("; rollback also failed: ");
            text.push_str(&rollback_failures.join("; "));
        }
        text
    }

    /// A driver error from `driver`, counted in the driver's metrics (a panic caught at the
    /// plugin boundary comes back as an internal error saying so).
    pub fn driver(driver: &str, error: DriverError) -> Self {
        let panicked = error.kind == ErrorKind::Internal && error.message.starts_with("driver panicked");
        crate::metrics::global().plugin_failed(driver, panicked);
        Error::Driver { driver: driver.to_string(), error }
    }
}

macro_rules! store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(Box::new(e))
            }
        }
    )*};
}

store_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);
