//! The notice aggregate: one per notice key. It decides whether a parsed notice becomes new
//! events (first time), nothing (the same notice again) or an error (same key, other text).
//! Synchronous in spirit and free of side effects: `handle` only looks at its own state and
//! the command.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::events::{
    FactWithdrawn, NoticeCorrected, NoticeRecorded, NoticeRevoked, PostFact, RegistryEvent,
};
use super::ids::{content_hash, NoticeKey};
use crate::notice::{self, Diagnostic, EventKind, Notice};

pub enum NoticeCommand {
    /// Record a parsed notice. Idempotent on its content. `diagnostics` are the parser's
    /// findings on the notice's lines, kept with it.
    Record {
        notice: Box<Notice>,
        diagnostics: Vec<Diagnostic>,
    },
    /// Accept a corrected re-issue of a recorded notice (same key, changed content):
    /// withdraw the facts it drops, add the facts it adds.
    Correct {
        notice: Box<Notice>,
        diagnostics: Vec<Diagnostic>,
        reason: String,
    },
    /// Revoke a recorded notice: every fact in force is withdrawn.
    Revoke {
        reason: String,
        by_notice: Option<String>,
    },
    /// An operator confirms a probation (试用期满) that no notice confirmed.
    ConfirmProbation {
        person: String,
        /// The organization as written in the appointing clause.
        organization: String,
        post: String,
        /// `YYYY-MM-DD` the confirmation takes effect.
        effective_on: String,
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
    /// Correcting or confirming on a revoked notice. Handle: record a new notice instead.
    #[error("notice {key} is revoked; it cannot be corrected or confirmed")]
    Revoked { key: String },
    /// Confirming a probation the notice did not start. Handle: check person, organization
    /// and post, or the notice.
    #[error("notice {key} did not appoint {person} to {organization} {post} on probation")]
    NoSuchProbation {
        key: String,
        person: String,
        organization: String,
        post: String,
    },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct NoticeAggregate {
    key: Option<String>,
    content_hash: Option<String>,
    revoked: bool,
    /// Facts in force, in record order.
    facts: Vec<(EventKind, PostFact)>,
}

/// What makes two facts the same fact, whatever line or wording carried them.
fn same_fact(a: &(EventKind, PostFact), b: &(EventKind, PostFact)) -> bool {
    let key = |(kind, f): &(EventKind, PostFact)| {
        (
            *kind,
            f.person.clone(),
            f.gender,
            f.organization_canonical.clone(),
            f.post.clone(),
            f.concurrent,
            f.probation_months,
            f.note.clone(),
            f.effective_on.clone(),
        )
    };
    key(a) == key(b)
}

/// The facts a notice states, as the events that record them carry them.
fn facts_of(events: &[RegistryEvent]) -> Vec<(EventKind, PostFact)> {
    events
        .iter()
        .filter_map(|e| match e {
            RegistryEvent::AppointmentRecorded(f) => Some((EventKind::Appointment, f.clone())),
            RegistryEvent::RemovalRecorded(f) => Some((EventKind::Removal, f.clone())),
            RegistryEvent::ConfirmationRecorded(f) => Some((EventKind::Confirmation, f.clone())),
            _ => None,
        })
        .collect()
}

impl NoticeAggregate {
    pub fn is_recorded(&self) -> bool {
        self.content_hash.is_some()
    }

    /// Emits one `FactWithdrawn` per fact, all for `reason`.
    async fn withdraw(
        &mut self,
        facts: Vec<(EventKind, PostFact)>,
        reason: &str,
        sink: &EventSink<Self>,
    ) {
        for (kind, fact) in facts {
            let withdrawn = FactWithdrawn {
                kind,
                fact,
                reason: reason.to_string(),
            };
            sink.write(RegistryEvent::FactWithdrawn(withdrawn), self)
                .await;
        }
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
            NoticeCommand::Correct {
                notice,
                diagnostics,
                reason,
            } => {
                let key = self.key.clone().unwrap_or_default();
                if !self.is_recorded() {
                    return Err(NoticeError::NotRecorded {
                        key: NoticeKey::for_notice(&notice).as_str().to_string(),
                    });
                }
                if self.revoked {
                    return Err(NoticeError::Revoked { key });
                }
                if self.conflict_with(&notice).is_none() {
                    return Ok(()); // the same content: nothing to correct
                }
                let recorded = events_for(&notice, &diagnostics);
                let new_facts = facts_of(&recorded);
                let dropped: Vec<_> = self
                    .facts
                    .iter()
                    .filter(|old| !new_facts.iter().any(|new| same_fact(old, new)))
                    .cloned()
                    .collect();
                let added: Vec<_> = new_facts
                    .iter()
                    .filter(|new| !self.facts.iter().any(|old| same_fact(old, new)))
                    .cloned()
                    .collect();
                let RegistryEvent::NoticeRecorded(header) = &recorded[0] else {
                    unreachable!("events_for starts with NoticeRecorded")
                };
                let correction = NoticeCorrected {
                    reason: reason.clone(),
                    title: header.title.clone(),
                    issued_on: header.issued_on.clone(),
                    remarks: header.remarks.clone(),
                    content_hash: header.content_hash.clone(),
                    source_text: header.source_text.clone(),
                    line: header.line,
                    withdrawn: dropped.len(),
                    added: added.len(),
                };
                sink.write(RegistryEvent::NoticeCorrected(correction), self)
                    .await;
                self.withdraw(dropped, &format!("corrected: {reason}"), sink)
                    .await;
                for (kind, fact) in added {
                    sink.write(RegistryEvent::from_fact(kind, fact), self).await;
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
                let in_force = self.facts.clone();
                let revoked = NoticeRevoked {
                    reason: reason.clone(),
                    by_notice,
                };
                sink.write(RegistryEvent::NoticeRevoked(revoked), self)
                    .await;
                self.withdraw(in_force, &format!("revoked: {reason}"), sink)
                    .await;
                Ok(())
            }
            NoticeCommand::ConfirmProbation {
                person,
                organization,
                post,
                effective_on,
            } => {
                let key = self.key.clone().unwrap_or_default();
                if self.revoked {
                    return Err(NoticeError::Revoked { key });
                }
                let appointment = self.facts.iter().find(|(kind, f)| {
                    *kind == EventKind::Appointment
                        && f.person == person
                        && f.organization == organization
                        && f.post == post
                        && f.probation_months.is_some()
                });
                let Some((_, appointed)) = appointment else {
                    return Err(NoticeError::NoSuchProbation {
                        key,
                        person,
                        organization,
                        post,
                    });
                };
                let confirmation = PostFact {
                    probation_months: None,
                    note: Some("试用期满，正式任职（登记确认）".to_string()),
                    effective_on: Some(effective_on),
                    ..appointed.clone()
                };
                sink.write(RegistryEvent::ConfirmationRecorded(confirmation), self)
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
            RegistryEvent::NoticeCorrected(c) => self.content_hash = Some(c.content_hash),
            RegistryEvent::NoticeRevoked(_) => self.revoked = true,
            RegistryEvent::AppointmentRecorded(f) => self.facts.push((EventKind::Appointment, f)),
            RegistryEvent::RemovalRecorded(f) => self.facts.push((EventKind::Removal, f)),
            RegistryEvent::ConfirmationRecorded(f) => self.facts.push((EventKind::Confirmation, f)),
            RegistryEvent::FactWithdrawn(w) => {
                let withdrawn = (w.kind, w.fact);
                if let Some(i) = self.facts.iter().position(|f| same_fact(f, &withdrawn)) {
                    self.facts.remove(i);
                }
            }
            // Person decisions belong to the person aggregate.
            RegistryEvent::PersonsMerged(_) | RegistryEvent::PersonSplit(_) => {}
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

    fn two_facts() -> Notice {
        notice(NOTICE)
    }

    #[test]
    fn revoking_withdraws_every_fact_in_force() {
        let n = two_facts();
        let recorded = events_for(&n, &[]);
        let facts = facts_of(&recorded);
        let mut expected = vec![RegistryEvent::NoticeRevoked(NoticeRevoked {
            reason: "程序违规".into(),
            by_notice: Some("临政人〔2023〕10号".into()),
        })];
        expected.extend(facts.into_iter().map(|(kind, fact)| {
            RegistryEvent::FactWithdrawn(FactWithdrawn {
                kind,
                fact,
                reason: "revoked: 程序违规".into(),
            })
        }));
        NoticeTest::with(())
            .given(recorded)
            .when(NoticeCommand::Revoke {
                reason: "程序违规".into(),
                by_notice: Some("临政人〔2023〕10号".into()),
            })
            .then_expect_events(expected);
    }

    #[test]
    fn a_correction_withdraws_dropped_facts_and_adds_new_ones_only() {
        let n = two_facts();
        let corrected = notice(&NOTICE.replace("张三", "王五"));
        let old = facts_of(&events_for(&n, &[]));
        let new = facts_of(&events_for(&corrected, &[]));
        let RegistryEvent::NoticeRecorded(header) = &events_for(&corrected, &[])[0] else {
            unreachable!()
        };
        let expected = vec![
            RegistryEvent::NoticeCorrected(NoticeCorrected {
                reason: "姓名有误".into(),
                title: header.title.clone(),
                issued_on: header.issued_on.clone(),
                remarks: header.remarks.clone(),
                content_hash: header.content_hash.clone(),
                source_text: header.source_text.clone(),
                line: header.line,
                withdrawn: 1,
                added: 1,
            }),
            RegistryEvent::FactWithdrawn(FactWithdrawn {
                kind: old[0].0,
                fact: old[0].1.clone(),
                reason: "corrected: 姓名有误".into(),
            }),
            RegistryEvent::from_fact(new[0].0, new[0].1.clone()),
        ];
        NoticeTest::with(())
            .given(events_for(&n, &[]))
            .when(NoticeCommand::Correct {
                notice: Box::new(corrected),
                diagnostics: vec![],
                reason: "姓名有误".into(),
            })
            .then_expect_events(expected);
    }

    #[test]
    fn a_correction_of_an_unknown_or_revoked_notice_is_refused() {
        let n = two_facts();
        let key = NoticeKey::for_notice(&n).as_str().to_string();
        NoticeTest::with(())
            .given_no_previous_events()
            .when(NoticeCommand::Correct {
                notice: Box::new(n.clone()),
                diagnostics: vec![],
                reason: "x".into(),
            })
            .then_expect_error(NoticeError::NotRecorded { key: key.clone() });
        let mut given = events_for(&n, &[]);
        given.push(RegistryEvent::NoticeRevoked(NoticeRevoked {
            reason: "x".into(),
            by_notice: None,
        }));
        NoticeTest::with(())
            .given(given)
            .when(NoticeCommand::Correct {
                notice: Box::new(notice(&NOTICE.replace("张三", "王五"))),
                diagnostics: vec![],
                reason: "x".into(),
            })
            .then_expect_error(NoticeError::Revoked { key });
    }

    #[test]
    fn only_a_probation_the_notice_started_can_be_confirmed() {
        let text = NOTICE.replace("副局长；", "副局长（试用期一年）；");
        let n = notice(&text);
        let appointed = facts_of(&events_for(&n, &[]))[0].1.clone();
        let confirmation = PostFact {
            probation_months: None,
            note: Some("试用期满，正式任职（登记确认）".into()),
            effective_on: Some("2024-05-04".into()),
            ..appointed.clone()
        };
        NoticeTest::with(())
            .given(events_for(&n, &[]))
            .when(NoticeCommand::ConfirmProbation {
                person: "张三".into(),
                organization: appointed.organization.clone(),
                post: "副局长".into(),
                effective_on: "2024-05-04".into(),
            })
            .then_expect_events(vec![RegistryEvent::ConfirmationRecorded(confirmation)]);
        NoticeTest::with(())
            .given(events_for(&n, &[]))
            .when(NoticeCommand::ConfirmProbation {
                person: "李四".into(),
                organization: appointed.organization.clone(),
                post: "副局长".into(),
                effective_on: "2024-05-04".into(),
            })
            .then_expect_error(NoticeError::NoSuchProbation {
                key: NoticeKey::for_notice(&n).as_str().to_string(),
                person: "李四".into(),
                organization: appointed.organization,
                post: "副局长".into(),
            });
    }
}
