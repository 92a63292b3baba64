//! The `renmian.v1.Registry` service: each handler validates its request, calls
//! [`Registry`] or its queries, and converts the answer. No SQL and no business rules live
//! here; statuses come from the one table in [`super::error`].

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use super::auth::{Caller, ANONYMOUS_ACTOR};
use super::convert::{self, date_or_today, freshness, RequestId};
use super::error::{invalid_argument, query_status, status};
use super::integrity::WriteGate;
use super::paging::Page;
use super::pb;
use super::pb::registry_server::Registry as RegistryApi;
use crate::domain::{content_hash, NoticeKey};
use crate::projections::resident::ResidentTenures;
use crate::projections::Queries;
use crate::registry::{Actor, Registry, RegistryError};
use crate::store::StoredEvent;

/// Events read per database round trip while a watch catches up.
const WATCH_BATCH: i64 = 500;
/// Events buffered per watcher; a slow client holds back only its own stream.
const WATCH_BUFFER: usize = 256;

/// The service state shared by all calls.
pub struct RegistryService {
    registry: Arc<Registry>,
    /// Bumped whenever the log advanced: after every ingest that appended events in this
    /// process, and by the change feed ([`super::feed`]) on a PostgreSQL notification from
    /// any process or when its poll finds a new head. Followers wait on it alone.
    head_advanced: watch::Sender<u64>,
    /// Turns `true` when the server shuts down; open watch streams then end, so graceful
    /// shutdown does not wait for clients that would follow the log forever.
    stopping: watch::Receiver<bool>,
    /// Closed while the log holds tampering nobody acknowledged; consulted by every write.
    writes: WriteGate,
    /// ListHolders and ListHoldings (now) from process memory, fenced to be as fresh as the
    /// database.
    resident: ResidentTenures,
}

impl RegistryService {
    pub fn new(
        registry: Arc<Registry>,
        head_advanced: watch::Sender<u64>,
        stopping: watch::Receiver<bool>,
        writes: WriteGate,
        resident: ResidentTenures,
    ) -> Self {
        Self {
            registry,
            head_advanced,
            stopping,
            writes,
            resident,
        }
    }

    fn actor<T>(request: &Request<T>, request_id: Option<String>) -> Actor {
        let name = request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| ANONYMOUS_ACTOR.to_string(), |c| c.actor.clone());
        Actor { name, request_id }
    }

    /// For a `request_id` that already recorded notices: `Ok(())` when this request carries
    /// the same notices (a retry), FAILED_PRECONDITION when it carries other content.
    /// Notices of the text that the original request found already recorded carry no
    /// request id, so they count as the same when they are recorded with this content.
    async fn check_retry(&self, request_id: &str, text: &str) -> Result<(), Status> {
        let recorded = self
            .registry
            .queries()
            .notices_for_request(request_id)
            .await
            .map_err(|e| query_status(e, "request_id"))?;
        if recorded.is_empty() {
            return Ok(());
        }
        let parsed = self.registry.parse(text);
        let parsed_hashes: HashSet<String> = parsed.notices.iter().map(content_hash).collect();
        let reused = || {
            Status::failed_precondition(format!(
                "request_id {request_id:?} was already used with different content; nothing was stored"
            ))
        };
        if recorded
            .iter()
            .any(|n| !parsed_hashes.contains(&n.content_hash))
        {
            return Err(reused());
        }
        let by_request: HashSet<&str> = recorded.iter().map(|n| n.content_hash.as_str()).collect();
        for notice in &parsed.notices {
            if by_request.contains(content_hash(notice).as_str()) {
                continue;
            }
            let id = NoticeKey::for_notice(notice).aggregate_id().to_string();
            match self.registry.queries().notice_summary(&id).await {
                Ok(view) if view.content_hash == content_hash(notice) => {}
                Ok(_) => return Err(reused()),
                Err(e) => match RegistryError::from(e) {
                    RegistryError::NotFound(_) => return Err(reused()),
                    other => return Err(status(other, "request_id")),
                },
            }
        }
        Ok(())
    }
}

impl RegistryService {
    /// The queries for a request's recorded-time axis: now, or as of a position or instant.
    async fn queries_at(&self, as_of: Option<&pb::AsOf>) -> Result<Queries, Status> {
        let now = self.registry.queries();
        let position = match as_of {
            None => return Ok(now.clone()),
            Some(a) if a.position != 0 && !a.recorded_at.is_empty() => {
                return Err(invalid_argument(
                    "as_of",
                    "set either position or recorded_at, not both",
                ))
            }
            Some(a) if !a.recorded_at.is_empty() => now
                .position_recorded_at(&a.recorded_at)
                .await
                .map_err(|e| query_status(e, "as_of.recorded_at"))?,
            Some(a) if a.position != 0 => a.position,
            Some(_) => return Ok(now.clone()),
        };
        now.as_of_position(position)
            .map_err(|e| query_status(e, "as_of.position"))
    }

    /// The queries one page of a listing is answered with: as of the position its token
    /// pinned the listing at, else as the request's `as_of` asks.
    async fn queries_for(&self, as_of: Option<&pb::AsOf>, page: &Page) -> Result<Queries, Status> {
        match page.at {
            Some(at) => self
                .registry
                .queries()
                .as_of_position(at)
                .map_err(|e| query_status(e, "page_token")),
            None => self.queries_at(as_of).await,
        }
    }

    /// Runs after a write: wakes watchers when events were appended.
    fn appended(&self, events: usize) {
        if events > 0 {
            self.head_advanced.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The as-of part of a page token's scope, so a token is only valid for the same view.
fn as_of_scope(as_of: Option<&pb::AsOf>) -> String {
    as_of.map_or_else(String::new, |a| format!("{}@{}", a.position, a.recorded_at))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryApi for RegistryService {
    async fn parse_notice(
        &self,
        request: Request<pb::ParseNoticeRequest>,
    ) -> Result<Response<pb::ParseNoticeResponse>, Status> {
        let text = request.into_inner().text;
        let output = self.registry.parse(&text);
        if output.notices.is_empty() {
            return Err(no_notice(&output.diagnostics));
        }
        Ok(Response::new(pb::ParseNoticeResponse {
            notices: output.notices.iter().map(Into::into).collect(),
            diagnostics: output.diagnostics.iter().map(Into::into).collect(),
        }))
    }

    async fn ingest_notice(
        &self,
        request: Request<pb::IngestNoticeRequest>,
    ) -> Result<Response<pb::IngestNoticeResponse>, Status> {
        self.writes.check().map_err(|e| status(e, "text"))?;
        let request_id = RequestId::try_from(request.get_ref().request_id.as_str())?.0;
        let actor = Self::actor(&request, request_id.clone());
        let r = request.into_inner();
        let text = r.text;
        if let Some(id) = &request_id {
            self.check_retry(id, &text).await?;
        }
        // A retry goes through ingest too: every notice is then already recorded, which is
        // exactly the answer a retry should get, and nothing is appended.
        let outcomes = if r.correction_reason.trim().is_empty() {
            self.registry.ingest(&text, &actor).await
        } else {
            self.registry
                .ingest_correction(&text, &r.correction_reason, &actor)
                .await
        }
        .map_err(|e| status(e, "text"))?;
        self.appended(outcomes.iter().map(|o| o.events_appended).sum());
        tracing::info!(
            actor = %actor.name,
            notices = outcomes.len(),
            appended = outcomes.iter().map(|o| o.events_appended).sum::<usize>(),
            "ingest"
        );
        Ok(Response::new(pb::IngestNoticeResponse {
            results: outcomes.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_notice(
        &self,
        request: Request<pb::GetNoticeRequest>,
    ) -> Result<Response<pb::Notice>, Status> {
        let r = request.into_inner();
        let reference = r.document_number.as_str();
        let answer = self
            .queries_at(r.as_of.as_ref())
            .await?
            .exactly(|q| async move { q.notice(reference).await })
            .await
            .map_err(|e| query_status(e, "document_number"))?;
        Ok(Response::new(convert::notice(
            answer.value,
            answer.position,
        )))
    }

    async fn list_notices(
        &self,
        request: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::ListNoticesResponse>, Status> {
        let r = request.into_inner();
        let as_of = as_of_scope(r.as_of.as_ref());
        let page = Page::parse(r.page_size, &r.page_token, &["notices", &as_of], 0)?;
        // One extra row says whether another page follows.
        let (offset, limit) = (page.cursor, page.limit() + 1);
        let answer = self
            .queries_for(r.as_of.as_ref(), &page)
            .await?
            .exactly(|q| async move { q.notices(offset, limit, true).await })
            .await
            .map_err(|e| query_status(e, "page_token"))?;
        let page = page.at(answer.position);
        let mut views = answer.value;
        let next_page_token = if views.len() > page.size {
            views.truncate(page.size);
            page.token(page.cursor + page.limit())
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNoticesResponse {
            notices: views
                .into_iter()
                .map(|view| convert::notice(view, answer.position))
                .collect(),
            next_page_token,
            position: answer.position,
        }))
    }

    async fn list_holders(
        &self,
        request: Request<pb::ListHoldersRequest>,
    ) -> Result<Response<pb::ListHoldersResponse>, Status> {
        let r = request.into_inner();
        let as_of = as_of_scope(r.as_of.as_ref());
        let scope = [
            "holders",
            r.organization.as_str(),
            r.post.as_str(),
            r.on_date.as_str(),
            &as_of,
        ];
        let page = Page::parse(r.page_size, &r.page_token, &scope, 0)?;
        let on = date_or_today("on_date", &r.on_date)?;
        let freshness = freshness(r.min_position, r.as_of.is_some())?;
        let (organization, post) = (r.organization.as_str(), r.post.as_str());
        let answer = match (r.as_of.as_ref(), page.at) {
            (None, None) => {
                self.resident
                    .holders_with(organization, post, on, freshness)
                    .await
            }
            (as_of, _) => {
                self.queries_for(as_of, &page)
                    .await?
                    .exactly(|q| async move { q.holders(organization, post, on).await })
                    .await
            }
        }
        .map_err(|e| query_status(e, "organization"))?;
        let (tenures, next_page_token) = page.at(answer.position).slice(answer.value);
        Ok(Response::new(pb::ListHoldersResponse {
            tenures,
            next_page_token,
            position: answer.position,
        }))
    }

    async fn list_holdings(
        &self,
        request: Request<pb::ListHoldingsRequest>,
    ) -> Result<Response<pb::ListHoldingsResponse>, Status> {
        let r = request.into_inner();
        let as_of = as_of_scope(r.as_of.as_ref());
        let scope = ["holdings", r.person.as_str(), r.on_date.as_str(), &as_of];
        let page = Page::parse(r.page_size, &r.page_token, &scope, 0)?;
        let on = date_or_today("on_date", &r.on_date)?;
        let freshness = freshness(r.min_position, r.as_of.is_some())?;
        let person = r.person.as_str();
        let answer = match (r.as_of.as_ref(), page.at) {
            (None, None) => self.resident.holdings_with(person, on, freshness).await,
            (as_of, _) => {
                self.queries_for(as_of, &page)
                    .await?
                    .exactly(|q| async move { q.holdings(person, on).await })
                    .await
            }
        }
        .map_err(|e| query_status(e, "person"))?;
        let (tenures, next_page_token) = page.at(answer.position).slice(answer.value);
        Ok(Response::new(pb::ListHoldingsResponse {
            tenures,
            next_page_token,
            position: answer.position,
        }))
    }

    async fn get_post_history(
        &self,
        request: Request<pb::GetPostHistoryRequest>,
    ) -> Result<Response<pb::GetPostHistoryResponse>, Status> {
        let r = request.into_inner();
        let as_of = as_of_scope(r.as_of.as_ref());
        let scope = [
            "post_history",
            r.organization.as_str(),
            r.post.as_str(),
            &as_of,
        ];
        let page = Page::parse(r.page_size, &r.page_token, &scope, 0)?;
        let post = Some(r.post.as_str()).filter(|p| !p.trim().is_empty());
        let organization = r.organization.as_str();
        let answer = self
            .queries_for(r.as_of.as_ref(), &page)
            .await?
            .exactly(|q| async move { q.post_history(organization, post).await })
            .await
            .map_err(|e| query_status(e, "organization"))?;
        let (tenures, next_page_token) = page.at(answer.position).slice(answer.value);
        Ok(Response::new(pb::GetPostHistoryResponse {
            tenures,
            next_page_token,
            position: answer.position,
        }))
    }

    async fn get_person_history(
        &self,
        request: Request<pb::GetPersonHistoryRequest>,
    ) -> Result<Response<pb::GetPersonHistoryResponse>, Status> {
        let r = request.into_inner();
        let as_of = as_of_scope(r.as_of.as_ref());
        let page = Page::parse(
            r.page_size,
            &r.page_token,
            &["person_history", &r.person, &as_of],
            0,
        )?;
        let person = r.person.as_str();
        let answer = self
            .queries_for(r.as_of.as_ref(), &page)
            .await?
            .exactly(|q| async move { q.person_history(person).await })
            .await
            .map_err(|e| query_status(e, "person"))?;
        let (tenures, next_page_token) = page.at(answer.position).slice(answer.value);
        Ok(Response::new(pb::GetPersonHistoryResponse {
            tenures,
            next_page_token,
            position: answer.position,
        }))
    }

    async fn list_probations(
        &self,
        request: Request<pb::ListProbationsRequest>,
    ) -> Result<Response<pb::ListProbationsResponse>, Status> {
        let r = request.into_inner();
        let due_within = r.due_within_days.map(|d| d.to_string()).unwrap_or_default();
        let as_of = as_of_scope(r.as_of.as_ref());
        let decided = if r.include_decided { "all" } else { "" };
        let scope = [
            "probations",
            r.on_date.as_str(),
            due_within.as_str(),
            &as_of,
            decided,
        ];
        let page = Page::parse(r.page_size, &r.page_token, &scope, 0)?;
        let on = date_or_today("on_date", &r.on_date)?;
        if r.include_decided && r.due_within_days.is_some() {
            return Err(invalid_argument(
                "due_within_days",
                "cannot be combined with include_decided",
            ));
        }
        let (all, due_within) = (r.include_decided, r.due_within_days);
        let answer = self
            .queries_for(r.as_of.as_ref(), &page)
            .await?
            .exactly(|q| async move {
                if all {
                    q.all_probations(on).await
                } else {
                    q.probations(on, due_within).await
                }
            })
            .await
            .map_err(|e| query_status(e, "on_date"))?;
        let (probations, next_page_token) = page.at(answer.position).slice(answer.value);
        Ok(Response::new(pb::ListProbationsResponse {
            probations,
            next_page_token,
            position: answer.position,
        }))
    }

    async fn revoke_notice(
        &self,
        request: Request<pb::RevokeNoticeRequest>,
    ) -> Result<Response<pb::IngestResult>, Status> {
        self.writes
            .check()
            .map_err(|e| status(e, "document_number"))?;
        let actor = Self::actor(&request, None);
        let r = request.into_inner();
        let by_notice = Some(r.by_notice.trim().to_string()).filter(|b| !b.is_empty());
        let outcome = self
            .registry
            .revoke(&r.document_number, &r.reason, by_notice, &actor)
            .await
            .map_err(|e| status(e, "document_number"))?;
        self.appended(outcome.events_appended);
        Ok(Response::new(outcome.into()))
    }

    async fn confirm_probation(
        &self,
        request: Request<pb::ConfirmProbationRequest>,
    ) -> Result<Response<pb::IngestResult>, Status> {
        self.writes.check().map_err(|e| status(e, "person"))?;
        let actor = Self::actor(&request, None);
        let r = request.into_inner();
        let on = date_or_today("on_date", &r.on_date)?;
        let outcome = self
            .registry
            .confirm_probation(&r.person, &r.organization, &r.post, on, &actor)
            .await
            .map_err(|e| status(e, "person"))?;
        self.appended(outcome.events_appended);
        Ok(Response::new(outcome.into()))
    }

    async fn list_persons(
        &self,
        request: Request<pb::ListPersonsRequest>,
    ) -> Result<Response<pb::ListPersonsResponse>, Status> {
        let r = request.into_inner();
        let name = r.name.as_str();
        let answer = self
            .queries_at(r.as_of.as_ref())
            .await?
            .exactly(|q| async move { q.persons(name).await })
            .await
            .map_err(|e| query_status(e, "name"))?;
        Ok(Response::new(pb::ListPersonsResponse {
            persons: answer.value.into_iter().map(Into::into).collect(),
            position: answer.position,
        }))
    }

    async fn merge_persons(
        &self,
        request: Request<pb::MergePersonsRequest>,
    ) -> Result<Response<pb::PersonDecision>, Status> {
        self.writes.check().map_err(|e| status(e, "person_id"))?;
        let actor = Self::actor(&request, None);
        let r = request.into_inner();
        let position = self
            .registry
            .merge_persons(r.person_id, r.into, &r.reason, &actor)
            .await
            .map_err(|e| status(e, "person_id"))?;
        self.appended(1);
        Ok(Response::new(pb::PersonDecision { position }))
    }

    async fn split_person(
        &self,
        request: Request<pb::SplitPersonRequest>,
    ) -> Result<Response<pb::PersonDecision>, Status> {
        self.writes.check().map_err(|e| status(e, "person_id"))?;
        let actor = Self::actor(&request, None);
        let r = request.into_inner();
        let position = self
            .registry
            .split_person(r.person_id, r.tenure_ids, &r.reason, &actor)
            .await
            .map_err(|e| status(e, "tenure_ids"))?;
        self.appended(1);
        Ok(Response::new(pb::PersonDecision { position }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let r = request.into_inner();
        if r.after_position < 0 {
            return Err(invalid_argument("after_position", "must not be negative"));
        }
        // The cursor is a position, so pages stay exact while the log grows.
        let page = Page::parse(r.page_size, &r.page_token, &["events"], r.after_position)?;
        let mut events = self
            .registry
            .database()
            .events_after(page.cursor, page.limit() + 1)
            .await
            .map_err(|e| status(e.into(), "after_position"))?;
        let next_page_token = if events.len() > page.size {
            events.truncate(page.size);
            events
                .last()
                .map(|e| page.token(e.position))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListEventsResponse {
            events: events.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let after = request.into_inner().after_position;
        if after < 0 {
            return Err(invalid_argument("after_position", "must not be negative"));
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let follower = Follower {
            registry: self.registry.clone(),
            head_advanced: self.head_advanced.subscribe(),
            stopping: self.stopping.clone(),
            last_sent: after,
        };
        tokio::spawn(follower.run(tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// One WatchEvents stream: sends every event after `last_sent`, in order, then waits for
/// the head to advance and repeats. The wake-up comes from `head_advanced`, which an
/// ingest in this process bumps, and the server's change feed bumps on a PostgreSQL
/// notification of an append by any process or when its poll finds a new head (the
/// fallback for SQLite and lost notifications; one poll per server, not per stream). It
/// always reads `events_after(last_sent)`, and positions are gap-free and commit-ordered,
/// so the stream neither skips nor repeats an event, whichever wake-up comes first, and a
/// bump that arrives while it is reading wakes it once more.
struct Follower {
    registry: Arc<Registry>,
    head_advanced: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
    last_sent: i64,
}

impl Follower {
    async fn run(mut self, tx: mpsc::Sender<Result<pb::Event, Status>>) {
        loop {
            match self.send_backlog(&tx).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                () = super::stop_requested(&mut self.stopping) => break,
                // An error means the service is gone, so the server is stopping too.
                changed = self.head_advanced.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx
            .send(Err(Status::unavailable(
                "server shutting down; resume from the last position received",
            )))
            .await;
    }

    /// Sends everything after `last_sent`; `Ok(false)` when the client went away.
    async fn send_backlog(
        &mut self,
        tx: &mpsc::Sender<Result<pb::Event, Status>>,
    ) -> Result<bool, Status> {
        loop {
            let batch: Vec<StoredEvent> = self
                .registry
                .database()
                .events_after(self.last_sent, WATCH_BATCH)
                .await
                .map_err(|e| status(e.into(), "after_position"))?;
            if batch.is_empty() {
                return Ok(true);
            }
            for event in batch {
                let position = event.position;
                if tx.send(Ok(event.into())).await.is_err() {
                    return Ok(false);
                }
                self.last_sent = position;
            }
        }
    }
}

/// INVALID_ARGUMENT for text without a personnel notice, with the parser's first finding.
fn no_notice(diagnostics: &[crate::notice::Diagnostic]) -> Status {
    let hint = diagnostics
        .first()
        .map(|d| format!(" (line {}: {})", d.line, d.message))
        .unwrap_or_default();
    invalid_argument(
        "text",
        format!("no personnel notice (任免通知) found in the text{hint}"),
    )
}
