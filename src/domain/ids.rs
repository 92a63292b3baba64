//! Identity of notices: the idempotency key and the aggregate id derived from it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::notice::{self, Notice};

/// Fixed namespace for v5 UUIDs of notices, so the same key always yields the same aggregate.
const NOTICE_NAMESPACE: Uuid = Uuid::from_u128(0x5e1a_7c3e_0b7d_4c1a_9f55_d1e0_4a11_2023);

/// What makes two notices "the same notice": the issuer and its document number (文号) or,
/// for a notice without a number, the hash of its whitespace-normalised text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NoticeKey(String);

impl NoticeKey {
    pub fn for_notice(notice: &Notice) -> Self {
        match &notice.document_number {
            Some(number) => Self(format!(
                "{}|{}",
                notice.issuer.as_deref().unwrap_or("?"),
                number
            )),
            None => Self(format!("sha256:{}", content_hash(notice))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The aggregate id under which this notice's events are stored.
    pub fn aggregate_id(&self) -> Uuid {
        Uuid::new_v5(&NOTICE_NAMESPACE, self.0.as_bytes())
    }
}

/// Hex SHA-256 of the notice's normalised text: equal for the same text however it was
/// broken into lines or pages, different as soon as a word changes.
pub fn content_hash(notice: &Notice) -> String {
    hex::encode(Sha256::digest(
        notice::normalize_for_hash(&notice.source_text).as_bytes(),
    ))
}
