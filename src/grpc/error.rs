//! The one table from registry errors to gRPC statuses. Every handler goes through
//! [`status`]; nothing else in the API decides a status code for a registry error.
//!
//! | registry error                 | gRPC code           | details                          |
//! |--------------------------------|---------------------|----------------------------------|
//! | `InvalidArgument{field, …}`    | INVALID_ARGUMENT    | `BadRequest` violation on field  |
//! | `Ambiguous`                    | INVALID_ARGUMENT    | `BadRequest` violation on subject|
//! | `NotFound`                     | NOT_FOUND           |                                  |
//! | `Conflict`                     | FAILED_PRECONDITION | content differs from the record  |
//! | `Contention`                   | ABORTED             | retry                            |
//! | `Unavailable`                  | UNAVAILABLE         | generic message; detail logged   |
//! | `IntegrityBroken`              | FAILED_PRECONDITION | writes refused until acknowledged|
//! | `NotReached`                   | OUT_OF_RANGE        | `ErrorInfo` POSITION_NOT_REACHED |
//! | `Internal`                     | INTERNAL            | generic message; detail logged   |
//!
//! Database and internal details go to the server log only: their text can contain SQL,
//! host names or file paths that clients must not see.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::projections::QueryError;
use crate::registry::RegistryError;

/// `google.rpc.ErrorInfo` domain of the reasons below.
pub const DOMAIN: &str = "renmian";
/// `ErrorInfo` reason of OUT_OF_RANGE for a `min_position` the read models have not
/// reached; its metadata gives `position` and `checkpoint`. The only OUT_OF_RANGE a
/// handler returns, and the only one with details (`guard` tells it from tonic's own).
pub const NOT_REACHED: &str = "POSITION_NOT_REACHED";

/// INVALID_ARGUMENT naming the request `field` in a `google.rpc.BadRequest` detail.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// Maps a registry error. `subject` is the request field an ambiguous name came from
/// (the registry reports ambiguity without knowing the request's field names).
pub fn status(err: RegistryError, subject: &'static str) -> Status {
    match err {
        RegistryError::InvalidArgument { field, message } => invalid_argument(field, message),
        RegistryError::Ambiguous(message) => invalid_argument(subject, message),
        RegistryError::NotFound(message) => Status::not_found(message),
        RegistryError::Conflict(message) => Status::failed_precondition(message),
        RegistryError::Contention => Status::aborted(err.to_string()),
        RegistryError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "database unavailable");
            Status::unavailable("the database is unavailable; retry later")
        }
        RegistryError::IntegrityBroken(message) => Status::failed_precondition(message),
        RegistryError::NotReached {
            position,
            checkpoint,
        } => Status::with_error_details(
            Code::OutOfRange,
            err.to_string(),
            ErrorDetails::with_error_info(
                NOT_REACHED,
                DOMAIN,
                [
                    ("position".to_string(), position.to_string()),
                    ("checkpoint".to_string(), checkpoint.to_string()),
                ],
            ),
        ),
        RegistryError::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            Status::internal("internal error; the server log has the details")
        }
    }
}

/// [`status`] for an error of the query layer.
pub fn query_status(err: QueryError, subject: &'static str) -> Status {
    status(err.into(), subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_carry_a_field_violation() {
        let s = status(
            RegistryError::InvalidArgument {
                field: "on_date",
                message: "not a date".into(),
            },
            "organization",
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        let violations = s
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .clone();
        assert_eq!(violations[0].field, "on_date");
        let ambiguous = status(RegistryError::Ambiguous("x".into()), "organization");
        let details = ambiguous.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "organization"
        );
    }

    #[test]
    fn internal_details_do_not_leak() {
        let s = status(
            RegistryError::Internal("SELECT * FROM secrets failed".into()),
            "",
        );
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("SELECT"));
        let s = status(
            RegistryError::Unavailable("tcp connect db.internal:5432".into()),
            "",
        );
        assert_eq!(s.code(), Code::Unavailable);
        assert!(!s.message().contains("db.internal"));
    }

    #[test]
    fn each_error_has_its_code() {
        let cases = [
            (RegistryError::NotFound("n".into()), Code::NotFound),
            (
                RegistryError::Conflict("c".into()),
                Code::FailedPrecondition,
            ),
            (RegistryError::Contention, Code::Aborted),
            (
                RegistryError::IntegrityBroken("t".into()),
                Code::FailedPrecondition,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(status(err, "").code(), code);
        }
    }
}
