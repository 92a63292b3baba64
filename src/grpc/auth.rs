//! Bearer tokens: who may call what, and the actor name recorded for the caller.
//!
//! Two optional tokens, each `NAME:SECRET` (or a bare `SECRET`, named `read` / `write`):
//! - with a write token, `IngestNotice` needs it (without one: UNAUTHENTICATED; with the
//!   read token: PERMISSION_DENIED);
//! - with a read token, every other `renmian.v1.Registry` call needs the read or the write
//!   token; with only a read token configured, writes need it too, so no configuration
//!   leaves writes open while reads are guarded;
//! - health and reflection stay open, so load balancers and `grpcurl list` work without
//!   credentials (they reveal the schema, not the data).
//!
//! Secrets are kept only as SHA-256 digests and compared in constant time; only token names
//! reach logs and the event log (as the actor `token:NAME`).

use std::fmt;

use sha2::{Digest, Sha256};
use tonic::Status;

/// Actor recorded for calls made without a token.
pub const ANONYMOUS_ACTOR: &str = "grpc:anonymous";

/// The one write method; everything else in the service reads.
const WRITE_METHODS: &[&str] = &[
    "/renmian.v1.Registry/IngestNotice",
    "/renmian.v1.Registry/RevokeNotice",
    "/renmian.v1.Registry/ConfirmProbation",
    "/renmian.v1.Registry/MergePersons",
    "/renmian.v1.Registry/SplitPerson",
];
const REGISTRY_PREFIX: &str = "/renmian.v1.Registry/";

/// A named bearer token. The secret itself is not kept, only its digest.
#[derive(Clone)]
pub struct Token {
    name: String,
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// Parses `NAME:SECRET`, or a bare `SECRET` that gets `default_name`. A secret that
    /// itself contains `:` must therefore be given with a name.
    pub fn parse(value: &str, default_name: &str) -> Result<Self, String> {
        let (name, secret) = match value.split_once(':') {
            Some((name, secret)) if is_token_name(name) => (name, secret),
            _ => (default_name, value),
        };
        if secret.is_empty() {
            return Err("the token secret is empty".into());
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the token secret must not contain whitespace".into());
        }
        Ok(Self {
            name: name.to_string(),
            digest: digest(secret),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Constant-time comparison: both sides are fixed-length digests, so neither the
    /// secret's length nor the position of the first difference shows in the timing.
    fn matches(&self, presented: &[u8; 32]) -> bool {
        self.digest
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

fn is_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// clap value parser for `--read-token`.
pub fn parse_read_token(value: &str) -> Result<Token, String> {
    Token::parse(value, "read")
}

/// clap value parser for `--write-token`.
pub fn parse_write_token(value: &str) -> Result<Token, String> {
    Token::parse(value, "write")
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health and reflection.
    Open,
    Read,
    Write,
}

/// The access a gRPC method path (`/package.Service/Method`) needs.
pub fn required_access(path: &str) -> Access {
    if WRITE_METHODS.contains(&path) {
        Access::Write
    } else if path.starts_with(REGISTRY_PREFIX) {
        Access::Read
    } else {
        Access::Open
    }
}

/// The authenticated caller, put into the request's extensions for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Recorded as the actor of events written on the caller's behalf.
    pub actor: String,
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub read: Option<Token>,
    pub write: Option<Token>,
}

impl AccessPolicy {
    /// No token configured: every call is allowed.
    pub fn is_open(&self) -> bool {
        self.read.is_none() && self.write.is_none()
    }

    /// Decides a call from its `authorization` header value.
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        access: Access,
    ) -> Result<Caller, Status> {
        let presented = match authorization {
            None => None,
            Some(value) => Some(bearer_secret(value).ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer <token>`")
            })?),
        };
        let matched = presented.as_ref().and_then(|secret| {
            // Check every configured token so the time taken does not say which one matched.
            let write = self.write.as_ref().filter(|t| t.matches(secret));
            let read = self.read.as_ref().filter(|t| t.matches(secret));
            write.or(read)
        });
        let accepted: Vec<&Token> = match access {
            Access::Open => Vec::new(),
            Access::Read => match &self.read {
                Some(read) => [Some(read), self.write.as_ref()]
                    .into_iter()
                    .flatten()
                    .collect(),
                None => Vec::new(),
            },
            Access::Write => match (&self.write, &self.read) {
                (Some(write), _) => vec![write],
                (None, Some(read)) => vec![read],
                (None, None) => Vec::new(),
            },
        };
        let caller = |token: Option<&Token>| Caller {
            actor: token.map_or_else(|| ANONYMOUS_ACTOR.to_string(), Token::actor),
        };
        if accepted.is_empty() {
            return Ok(caller(matched));
        }
        match (presented, matched) {
            (None, _) => Err(Status::unauthenticated(
                "this call needs a bearer token (authorization: Bearer <token>)",
            )),
            (Some(_), None) => Err(Status::unauthenticated("invalid bearer token")),
            (Some(_), Some(token)) if accepted.iter().any(|t| t.name == token.name) => {
                Ok(caller(Some(token)))
            }
            (Some(_), Some(token)) => Err(Status::permission_denied(format!(
                "token {:?} may not make this call; it needs the write token",
                token.name
            ))),
        }
    }
}

/// The digest of the secret in `Bearer <secret>` (scheme case-insensitive), or `None` when
/// the header has another form.
fn bearer_secret(value: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, secret) = text.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then(|| digest(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(read: Option<&str>, write: Option<&str>) -> AccessPolicy {
        AccessPolicy {
            read: read.map(|v| parse_read_token(v).unwrap()),
            write: write.map(|v| parse_write_token(v).unwrap()),
        }
    }

    fn code(result: Result<Caller, Status>) -> tonic::Code {
        result.err().map_or(tonic::Code::Ok, |s| s.code())
    }

    #[test]
    fn tokens_parse_with_or_without_a_name_and_never_show_the_secret() {
        let named = parse_write_token("hr-system:s3cret").unwrap();
        assert_eq!(named.name(), "hr-system");
        let bare = parse_write_token("s3cret").unwrap();
        assert_eq!(bare.name(), "write");
        assert!(!format!("{named:?}{bare:?}").contains("s3cret"));
        assert!(parse_read_token("name:").is_err());
        assert!(parse_read_token("").is_err());
    }

    #[test]
    fn without_tokens_everything_is_open_and_anonymous() {
        let p = policy(None, None);
        let caller = p.authorize(None, Access::Write).unwrap();
        assert_eq!(caller.actor, ANONYMOUS_ACTOR);
    }

    #[test]
    fn a_write_token_guards_writes_only() {
        let p = policy(None, Some("etl:w1"));
        assert_eq!(
            code(p.authorize(None, Access::Write)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(p.authorize(Some(b"Bearer wrong"), Access::Write)),
            tonic::Code::Unauthenticated
        );
        let caller = p.authorize(Some(b"Bearer w1"), Access::Write).unwrap();
        assert_eq!(caller.actor, "token:etl");
        assert_eq!(
            p.authorize(None, Access::Read).unwrap().actor,
            ANONYMOUS_ACTOR
        );
    }

    #[test]
    fn a_read_token_guards_reads_and_the_write_token_also_reads() {
        let p = policy(Some("audit:r1"), Some("etl:w1"));
        assert_eq!(
            code(p.authorize(None, Access::Read)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            p.authorize(Some(b"bearer r1"), Access::Read).unwrap().actor,
            "token:audit"
        );
        assert_eq!(
            p.authorize(Some(b"Bearer w1"), Access::Read).unwrap().actor,
            "token:etl"
        );
        assert_eq!(
            code(p.authorize(Some(b"Bearer r1"), Access::Write)),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(p.authorize(Some(b"Basic r1"), Access::Read)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            p.authorize(None, Access::Open).unwrap().actor,
            ANONYMOUS_ACTOR
        );
    }

    #[test]
    fn a_lone_read_token_also_guards_writes() {
        let p = policy(Some("r1"), None);
        assert_eq!(
            code(p.authorize(None, Access::Write)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            p.authorize(Some(b"Bearer r1"), Access::Write)
                .unwrap()
                .actor,
            "token:read"
        );
    }

    #[test]
    fn methods_are_classified_by_path() {
        assert_eq!(
            required_access("/renmian.v1.Registry/IngestNotice"),
            Access::Write
        );
        assert_eq!(
            required_access("/renmian.v1.Registry/ListHolders"),
            Access::Read
        );
        assert_eq!(
            required_access("/grpc.health.v1.Health/Check"),
            Access::Open
        );
    }
}
