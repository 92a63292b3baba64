//! The notice aggregate: one per notice key. It decides whether a parsed notice becomes new
//! events (first time), nothing (the same notice again) or an error (same key, other text).
//! Synchronous in spirit and free of side effects: `handle` only looks at its own state and
//! the command.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::events::{NoticeRecorded, NoticeRevoked, PostFact, RegistryEvent};
use super::ids::{content_hash, NoticeKey};
use crate::notice::{self, Diagnostic, Notice};

pub enum NoticeCommand {
    /// Record a parsed notice. Idempotent on its content. `diagnostics` are the parser's
    /// findings on the notice's lines, kept with it.
    Record {
        notice: Box<Notice>,
        diagnostics: Vec<Diagnostic>,
    },
    /// Revoke a recorded notice.
    Revoke {
        reason: String,
        by_notice: Option<String>,
    },
}

/// Why a command was refused. Each variant is a user-facing condition, not a bug.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoticeError {
    /// The key is taken by a notice with other content. Handle: show both, and record a
    /// correction (a later feature) or fix the input.
    #[error("notice {key} is already recorded with different content (recorded hash {recorded_hash}, new hash {new_hash}); nothing was stored")]
    ConflictingContent {
        key: String,
        recorded_hash: String,
        new_hash: String,
    },
    /// Revoking a notice that was never recorded. Handle: check the document number.
    #[error("notice {key} is not recorded")]
    NotRecorded { key: String },
    /// Revoking twice. Handle: nothing to do; the first revocation stands.
    #[error("notice {key} is already revoked")]
    AlreadyRevoked { key: String },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct NoticeAggregate {
    key: Option<String>,
    content_hash: Option<String>,
    revoked: bool,
}

impl NoticeAggregate {
    pub fn is_recorded(&self) -> bool {
        self.content_hash.is_some()
    }

    /// The error recording `notice` here would give, if its content differs from what is
    /// recorded under the same key.
    pub fn conflict_with(&self, notice: &Notice) -> Option<NoticeError> {
        let recorded = self.content_hash.as_ref()?;
        let new_hash = content_hash(notice);
        (*recorded != new_hash).then(|| NoticeError::ConflictingContent {
            key: NoticeKey::for_notice(notice).as_str().to_string(),
            recorded_hash: recorded.clone(),
            new_hash,
        })
    }
}

/// Turns a parsed notice into the events that record it, in text order.
pub fn events_for(notice: &Notice, diagnostics: &[Diagnostic]) -> Vec<RegistryEvent> {
    let key = NoticeKey::for_notice(notice);
    let issued_on = notice.issued_on.map(|d| d.format("%Y-%m-%d").to_string());
    let jurisdiction = notice.issuer.as_deref().and_then(notice::jurisdiction_of);
    let mut events = Vec::with_capacity(notice.events.len() + 1);
    events.push(RegistryEvent::NoticeRecorded(NoticeRecorded {
        key: key.as_str().to_string(),
        document_number: notice.document_number.clone(),
        issuer: notice.issuer.clone(),
        title: notice.title.clone(),
        issued_on: issued_on.clone(),
        jurisdiction,
        remarks: notice.remarks.clone(),
        revokes: notice.revokes.clone(),
        content_hash: content_hash(notice),
        source_text: notice.source_text.clone(),
        line: notice.line,
        diagnostics: diagnostics.to_vec(),
    }));
    for e in &notice.events {
        let fact = PostFact {
            person: e.person.clone(),
            gender: e.gender,
            organization: e.organization.clone(),
            organization_canonical: e.organization_canonical.clone(),
            organization_aliases: e.organization_aliases.clone(),
            post: e.post.clone(),
            concurrent: e.concurrent,
            probation_months: e.probation_months,
            note: e.note.clone(),
            effective_on: e.effective_on.clone().or_else(|| issued_on.clone()),
            line: e.line,
            clause: e.clause.clone(),
        };
        events.push(RegistryEvent::from_fact(e.kind, fact));
    }
    events
}

impl Aggregate for NoticeAggregate {
    const TYPE: &'static str = "notice";
    type Command = NoticeCommand;
    type Event = RegistryEvent;
    type Error = NoticeError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            NoticeCommand::Record {
                notice,
                diagnostics,
            } => {
                if let Some(conflict) = self.conflict_with(&notice) {
                    return Err(conflict);
                }
                if !self.is_recorded() {
                    for event in events_for(&notice, &diagnostics) {
                        sink.write(event, self).await;
                    }
                }
                Ok(())
            }
            NoticeCommand::Revoke { reason, by_notice } => {
                let key = self.key.clone().unwrap_or_default();
                if !self.is_recorded() {
                    return Err(NoticeError::NotRecorded { key });
                }
                if self.revoked {
                    return Err(NoticeError::AlreadyRevoked { key });
                }
                sink.write(
                    RegistryEvent::NoticeRevoked(NoticeRevoked { reason, by_notice }),
                    self,
                )
                .await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RegistryEvent::NoticeRecorded(n) => {
                self.key = Some(n.key);
                self.content_hash = Some(n.content_hash);
            }
            RegistryEvent::NoticeRevoked(_) => self.revoked = true,
            RegistryEvent::AppointmentRecorded(_)
            | RegistryEvent::RemovalRecorded(_)
            | RegistryEvent::ConfirmationRecorded(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::notice::parse;

    const NOTICE: &str = "临湘市人民政府\n关于张三等同志职务任免的通知\n(临政人〔2023〕9号)\n\n各镇人民政府、街道办事处，市直各单位：\n\n经市人民政府研究决定：\n\n张三同志任市教育体育局副局长；\n\n免去李四同志市教育体育局副局长职务。\n\n临湘市人民政府\n\n2023年5月4日\n";

    fn notice(text: &str) -> Notice {
        parse(text)
            .notices
            .into_iter()
            .next()
            .expect("test notice parses")
    }

    type NoticeTest = TestFramework<NoticeAggregate>;

    #[test]
    fn a_new_notice_records_the_notice_and_one_event_per_fact() {
        let n = notice(NOTICE);
        let expected = events_for(&n, &[]);
        assert_eq!(expected.len(), 3);
        NoticeTest::with(())
            .given_no_previous_events()
            .when(NoticeCommand::Record {
                notice: Box::new(n),
                diagnostics: vec![],
            })
            .then_expect_events(expected);
    }

    #[test]
    fn the_same_notice_again_records_nothing() {
        let n = notice(NOTICE);
        NoticeTest::with(())
            .given(events_for(&n, &[]))
            .when(NoticeCommand::Record {
                notice: Box::new(n),
                diagnostics: vec![],
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_same_key_with_other_content_is_refused() {
        let n = notice(NOTICE);
        let changed = notice(&NOTICE.replace("张三", "王五"));
        let error = NoticeError::ConflictingContent {
            key: NoticeKey::for_notice(&n).as_str().to_string(),
            recorded_hash: content_hash(&n),
            new_hash: content_hash(&changed),
        };
        NoticeTest::with(())
            .given(events_for(&n, &[]))
            .when(NoticeCommand::Record {
                notice: Box::new(changed),
                diagnostics: vec![],
            })
            .then_expect_error(error);
    }

    #[test]
    fn revoking_an_unknown_notice_is_refused_and_twice_is_refused() {
        NoticeTest::with(())
            .given_no_previous_events()
            .when(NoticeCommand::Revoke {
                reason: "x".into(),
                by_notice: None,
            })
            .then_expect_error(NoticeError::NotRecorded { key: String::new() });
        let n = notice(NOTICE);
        let mut given = events_for(&n, &[]);
        given.push(RegistryEvent::NoticeRevoked(NoticeRevoked {
            reason: "x".into(),
            by_notice: None,
        }));
        NoticeTest::with(())
            .given(given)
            .when(NoticeCommand::Revoke {
                reason: "y".into(),
                by_notice: None,
            })
            .then_expect_error(NoticeError::AlreadyRevoked {
                key: NoticeKey::for_notice(&n).as_str().to_string(),
            });
    }

    #[test]
    fn effective_date_defaults_to_the_issue_date() {
        let events = events_for(&notice(NOTICE), &[]);
        let fact = events[1].as_post_fact().expect("a post fact");
        assert_eq!(fact.effective_on.as_deref(), Some("2023-05-04"));
    }
}
