//! AIP-158 pagination: `page_size` / `page_token` / `next_page_token`.
//!
//! A token is opaque to clients: hex of `FINGERPRINT:CURSOR` or `FINGERPRINT:CURSOR:AT`,
//! where the cursor is an offset (or, for the event log, a position), the fingerprint is a
//! hash of the request's filter, and `AT` is the log position the first page was answered
//! exactly as of: the pages after it are answered as of that position too, so a listing's
//! pages come from one point of the log, whichever server answers each and whatever was
//! recorded in between. A token from another request, an edited token or garbage is
//! INVALID_ARGUMENT, never a silently wrong page.

use sha2::{Digest, Sha256};
use tonic::Status;

use super::error::invalid_argument;

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Larger requested sizes are capped to this (AIP-158 allows coercing down).
pub const MAX_PAGE_SIZE: usize = 1000;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items per page, 1..=MAX_PAGE_SIZE.
    pub size: usize,
    /// Where the page starts: the cursor from the token, or `first` without one.
    pub cursor: i64,
    /// The log position the listing is answered as of, from the token (`None` on a first
    /// page, and for listings that are not pinned).
    pub at: Option<i64>,
    fingerprint: String,
}

impl Page {
    /// Validates `page_size` and `page_token` for a request whose filter is `scope`;
    /// `first` is the cursor of the first page.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        scope: &[&str],
        first: i64,
    ) -> Result<Self, Status> {
        let size = match usize::try_from(page_size) {
            Err(_) => return Err(invalid_argument("page_size", "must not be negative")),
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
        };
        let fingerprint = fingerprint(scope);
        let (cursor, at) = if page_token.is_empty() {
            (first, None)
        } else {
            decode(page_token, &fingerprint).ok_or_else(|| {
                invalid_argument(
                    "page_token",
                    "not a page token of this request (tokens are bound to the request's filter)",
                )
            })?
        };
        Ok(Self {
            size,
            cursor,
            at,
            fingerprint,
        })
    }

    /// The same page, its listing answered exactly as of `position`: the tokens it hands
    /// out pin the next pages there.
    pub fn at(self, position: i64) -> Self {
        Self {
            at: Some(position),
            ..self
        }
    }

    /// The token of the page starting at `cursor`.
    pub fn token(&self, cursor: i64) -> String {
        match self.at {
            None => hex::encode(format!("{}:{cursor}", self.fingerprint)),
            Some(at) => hex::encode(format!("{}:{cursor}:{at}", self.fingerprint)),
        }
    }

    /// `size` as a SQL limit.
    pub fn limit(&self) -> i64 {
        i64::try_from(self.size).unwrap_or(i64::MAX)
    }

    /// This page of an already complete list (the cursor is an offset into it), converted
    /// for the response, with the token of the next page (empty when this is the last one).
    pub fn slice<T, U: From<T>>(&self, items: Vec<T>) -> (Vec<U>, String) {
        let start = usize::try_from(self.cursor)
            .unwrap_or(usize::MAX)
            .min(items.len());
        let end = start.saturating_add(self.size).min(items.len());
        let next = if end < items.len() {
            self.token(end as i64)
        } else {
            String::new()
        };
        let page = items
            .into_iter()
            .skip(start)
            .take(end - start)
            .map(U::from)
            .collect();
        (page, next)
    }
}

fn fingerprint(scope: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in scope {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    hex::encode(&hasher.finalize()[..6])
}

/// The cursor and the pinned position of a token of the request `expected_fingerprint`.
fn decode(token: &str, expected_fingerprint: &str) -> Option<(i64, Option<i64>)> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (fingerprint, rest) = text.split_once(':')?;
    let (cursor, at) = match rest.split_once(':') {
        None => (rest.parse().ok()?, None),
        Some((cursor, at)) => (cursor.parse().ok()?, Some(at.parse().ok()?)),
    };
    let valid = fingerprint == expected_fingerprint && cursor >= 0 && at.is_none_or(|a| a >= 0);
    valid.then_some((cursor, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_walk_the_whole_list_and_end_with_an_empty_token() {
        let items: Vec<i32> = (0..5).collect();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = Page::parse(2, &token, &["x"], 0).unwrap();
            let (chunk, next): (Vec<i32>, _) = page.slice(items.clone());
            seen.extend(chunk);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn tokens_are_bound_to_their_request_and_garbage_is_refused() {
        let page = Page::parse(2, "", &["holders", "a"], 0).unwrap();
        let token = page.token(2);
        assert_eq!(
            Page::parse(2, &token, &["holders", "a"], 0).unwrap().cursor,
            2
        );
        for bad in [token.as_str(), "zz", "6e6f7065", ""] {
            let result = Page::parse(2, bad, &["holders", "b"], 0);
            if bad.is_empty() {
                assert!(result.is_ok());
            } else {
                assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);
            }
        }
        assert_eq!(
            Page::parse(-1, "", &[], 0).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(Page::parse(5000, "", &[], 0).unwrap().size, MAX_PAGE_SIZE);
    }

    proptest::proptest! {
        /// Tokens are client input: whatever comes back is a page of this request or
        /// INVALID_ARGUMENT, never a panic; and every token a page hands out reads back as
        /// the cursor and the position it was made with.
        #[test]
        fn any_token_is_a_page_or_invalid_argument(
            token in ".{0,80}",
            hex_text in "[0-9a-f:x-]{0,40}",
            rest in "[0-9:+ -]{0,30}",
            cursor in 0i64..=i64::MAX,
            at in proptest::option::of(0i64..=i64::MAX),
        ) {
            let ours = hex::encode(format!("{}:{rest}", fingerprint(&["x"])));
            for token in [token, hex::encode(&hex_text), ours] {
                match Page::parse(7, &token, &["x"], 0) {
                    Ok(page) => proptest::prop_assert!(
                        page.cursor >= 0 && page.at.is_none_or(|a| a >= 0)
                    ),
                    Err(status) => {
                        proptest::prop_assert_eq!(status.code(), tonic::Code::InvalidArgument)
                    }
                }
            }
            let page = Page::parse(7, "", &["x"], 0).unwrap();
            let page = match at {
                Some(at) => page.at(at),
                None => page,
            };
            let next = Page::parse(7, &page.token(cursor), &["x"], 0).unwrap();
            proptest::prop_assert_eq!((next.cursor, next.at), (cursor, at));
        }
    }

    #[test]
    fn a_pinned_token_carries_its_position_to_the_next_page() {
        let first = Page::parse(2, "", &["notices"], 0).unwrap();
        assert_eq!(first.at, None);
        let token = first.at(31).token(2);
        let next = Page::parse(2, &token, &["notices"], 0).unwrap();
        assert_eq!((next.cursor, next.at), (2, Some(31)));
        assert_eq!(
            next.token(4),
            Page::parse(2, "", &["notices"], 0).unwrap().at(31).token(4)
        );
        for edited in ["x:2:31", "2:-1", "2:31:", "2:31:-5", "2:31:7:1"] {
            let fingerprint = fingerprint(&["notices"]);
            let bad = hex::encode(format!("{fingerprint}:{edited}"));
            let result = Page::parse(2, &bad, &["notices"], 0);
            assert_eq!(
                result.unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{edited}"
            );
        }
    }
}
