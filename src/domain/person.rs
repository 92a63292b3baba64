//! The person aggregate: an operator's decisions about who is who when names collide
//! (同名). One aggregate per person record (`person-<id>`), so a record is merged once and a
//! retired record cannot be split. Whether the records exist is checked by the registry
//! before the command; the aggregate keeps its own invariants.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::events::{PersonSplit, PersonsMerged, RegistryEvent};

/// Aggregate id of a person record.
pub fn person_aggregate_id(person_id: i64) -> String {
    format!("person-{person_id}")
}

pub enum PersonCommand {
    Merge {
        person_id: i64,
        into: i64,
        reason: String,
    },
    Split {
        person_id: i64,
        tenure_ids: Vec<i64>,
        reason: String,
    },
}

/// Why a person decision was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersonError {
    /// Handle: pick two different records.
    #[error("person #{0} cannot be merged into itself")]
    SelfMerge(i64),
    /// Handle: use the record it was merged into.
    #[error("person #{person_id} was already merged into #{into}")]
    AlreadyMerged { person_id: i64, into: i64 },
    /// Handle: name at least one tenure.
    #[error("a split needs at least one tenure")]
    NothingToSplit,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PersonAggregate {
    merged_into: Option<i64>,
}

impl Aggregate for PersonAggregate {
    const TYPE: &'static str = "person";
    type Command = PersonCommand;
    type Event = RegistryEvent;
    type Error = PersonError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let person_id = match &command {
            PersonCommand::Merge { person_id, .. } | PersonCommand::Split { person_id, .. } => {
                *person_id
            }
        };
        if let Some(into) = self.merged_into {
            return Err(PersonError::AlreadyMerged { person_id, into });
        }
        let event = match command {
            PersonCommand::Merge {
                person_id,
                into,
                reason,
            } => {
                if person_id == into {
                    return Err(PersonError::SelfMerge(person_id));
                }
                RegistryEvent::PersonsMerged(PersonsMerged {
                    person_id,
                    into,
                    reason,
                })
            }
            PersonCommand::Split {
                person_id,
                tenure_ids,
                reason,
            } => {
                if tenure_ids.is_empty() {
                    return Err(PersonError::NothingToSplit);
                }
                RegistryEvent::PersonSplit(PersonSplit {
                    person_id,
                    tenure_ids,
                    reason,
                })
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let RegistryEvent::PersonsMerged(m) = event {
            self.merged_into = Some(m.into);
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type PersonTest = TestFramework<PersonAggregate>;

    fn merged(person_id: i64, into: i64) -> RegistryEvent {
        RegistryEvent::PersonsMerged(PersonsMerged {
            person_id,
            into,
            reason: "同一人".into(),
        })
    }

    #[test]
    fn a_record_is_merged_once_and_never_into_itself() {
        PersonTest::with(())
            .given_no_previous_events()
            .when(PersonCommand::Merge {
                person_id: 7,
                into: 3,
                reason: "同一人".into(),
            })
            .then_expect_events(vec![merged(7, 3)]);
        PersonTest::with(())
            .given(vec![merged(7, 3)])
            .when(PersonCommand::Merge {
                person_id: 7,
                into: 5,
                reason: "x".into(),
            })
            .then_expect_error(PersonError::AlreadyMerged {
                person_id: 7,
                into: 3,
            });
        PersonTest::with(())
            .given_no_previous_events()
            .when(PersonCommand::Merge {
                person_id: 7,
                into: 7,
                reason: "x".into(),
            })
            .then_expect_error(PersonError::SelfMerge(7));
    }

    #[test]
    fn a_split_names_tenures_and_a_retired_record_cannot_split() {
        PersonTest::with(())
            .given_no_previous_events()
            .when(PersonCommand::Split {
                person_id: 7,
                tenure_ids: vec![],
                reason: "x".into(),
            })
            .then_expect_error(PersonError::NothingToSplit);
        PersonTest::with(())
            .given(vec![merged(7, 3)])
            .when(PersonCommand::Split {
                person_id: 7,
                tenure_ids: vec![12],
                reason: "x".into(),
            })
            .then_expect_error(PersonError::AlreadyMerged {
                person_id: 7,
                into: 3,
            });
    }
}
