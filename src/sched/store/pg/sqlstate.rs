//! The SQLSTATE codes the store acts on, by name (the `postgres` crate's
//! [`SqlState`] constants), grouped by what the gateway does about them.
//! Errors are told apart by code and by the client's own error kinds, never
//! by their message text (which the server localises and may reword).

use postgres::error::SqlState;

/// The connection is gone or in doubt: every code PostgreSQL defines in
/// class 08 (connection exception).
const CONNECTION_EXCEPTION: [SqlState; 7] = [
    SqlState::CONNECTION_EXCEPTION,
    SqlState::CONNECTION_DOES_NOT_EXIST,
    SqlState::CONNECTION_FAILURE,
    SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
    SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION,
    SqlState::TRANSACTION_RESOLUTION_UNKNOWN,
    SqlState::PROTOCOL_VIOLATION,
];

/// The server ended the session (class 57, `57P01` to `57P05`): shutting
/// down, crashed, starting, the database dropped, an idle session timed out.
const SESSION_ENDED: [SqlState; 5] = [
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::DATABASE_DROPPED,
    SqlState::IDLE_SESSION_TIMEOUT,
];

/// The server is out of a resource: every code PostgreSQL defines in class
/// 53 (insufficient resources), e.g. too many connections.
const INSUFFICIENT_RESOURCES: [SqlState; 5] = [
    SqlState::INSUFFICIENT_RESOURCES,
    SqlState::DISK_FULL,
    SqlState::OUT_OF_MEMORY,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::CONFIGURATION_LIMIT_EXCEEDED,
];

/// The transaction was rolled back whole and the same one may succeed
/// again: the server shutting down, crashed or starting, a deadlock or
/// serialization failure with another gateway's transaction, a lock or
/// statement timeout (`lock_timeout`, `statement_timeout`).
const ROLLED_BACK_RETRYABLE: [SqlState; 7] = [
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::T_R_DEADLOCK_DETECTED,
    SqlState::LOCK_NOT_AVAILABLE,
    SqlState::QUERY_CANCELED,
];

/// Whether a server error with `code` leaves its connection unusable (a new
/// one is made for the next job).
pub(super) fn connection_broken(code: &SqlState) -> bool {
    CONNECTION_EXCEPTION.contains(code) || SESSION_ENDED.contains(code)
}

/// Whether a server error with `code` rolled its transaction back and may
/// succeed if tried again: answered 503 or retried, never a fail-stop.
pub(crate) fn transient(code: &SqlState) -> bool {
    CONNECTION_EXCEPTION.contains(code)
        || INSUFFICIENT_RESOURCES.contains(code)
        || ROLLED_BACK_RETRYABLE.contains(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes by their text, to pin the named constants to the classes
    /// and codes the store has acted on since schema 1.
    #[test]
    fn the_named_codes_are_the_classes_and_codes_meant() {
        for code in CONNECTION_EXCEPTION {
            assert!(code.code().starts_with("08"), "{code:?}");
            assert!(transient(&code) && connection_broken(&code));
        }
        for code in INSUFFICIENT_RESOURCES {
            assert!(code.code().starts_with("53"), "{code:?}");
            assert!(transient(&code) && !connection_broken(&code));
        }
        for code in SESSION_ENDED {
            assert!(code.code().starts_with("57P"), "{code:?}");
            assert!(connection_broken(&code));
        }
        let transient_codes: Vec<&str> = ROLLED_BACK_RETRYABLE.iter().map(SqlState::code).collect();
        assert_eq!(
            transient_codes,
            ["57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014"]
        );
        for refused in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::DATABASE_DROPPED,
            SqlState::from_code("XX000"),
        ] {
            assert!(!transient(&refused), "{refused:?}");
        }
        // A code this build does not know is neither.
        let unknown = SqlState::from_code("08ZZZ");
        assert!(!transient(&unknown) && !connection_broken(&unknown));
    }
}
