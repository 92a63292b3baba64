//! The time features of the gRPC API (issue 5) end to end: as-of queries, corrections,
//! revocations, probation confirmation and outcomes, succession fields, person records and
//! their merge/split — through the generated client against a real server.

mod common;
mod grpc_support;

use grpc_support::TestServer;
use renmian::grpc::auth::{parse_write_token, AccessPolicy};
use renmian::grpc::pb;
use renmian::grpc::ServerConfig;
use tonic::{Code, Request};

fn holders(on: &str, as_of: Option<pb::AsOf>) -> pb::ListHoldersRequest {
    pb::ListHoldersRequest {
        organization: "市教育体育局".into(),
        post: "副局长".into(),
        on_date: on.into(),
        as_of,
        ..Default::default()
    }
}

fn ingest(text: &str, correction_reason: &str) -> pb::IngestNoticeRequest {
    pb::IngestNoticeRequest {
        text: text.into(),
        correction_reason: correction_reason.into(),
        ..Default::default()
    }
}

fn at(position: i64) -> Option<pb::AsOf> {
    Some(pb::AsOf {
        position,
        recorded_at: String::new(),
    })
}

#[tokio::test]
async fn corrections_revocations_and_as_of_queries() {
    let server = TestServer::seeded(ServerConfig::default()).await;
    let mut client = server.client().await;
    let original = common::notice_text(
        1,
        "2024年3月1日",
        &[
            "王五同志任市教育体育局副局长",
            "免去钟炎夫同志市教育体育局副局长职务",
        ],
    );
    client.ingest_notice(ingest(&original, "")).await.unwrap();
    let p1 = server.head().await;
    // Other content under the same number: refused without the flag, a correction with it.
    let corrected = original.replace("王五", "王六");
    let refused = client
        .ingest_notice(ingest(&corrected, ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(server.head().await, p1, "nothing stored");
    let result = client
        .ingest_notice(ingest(&corrected, "姓名有误"))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(result[0].corrected);
    assert_eq!(result[0].events_appended, 3);
    let now = client
        .list_holders(holders("2024-03-02", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.tenures[0].person, "王六");
    let then = client
        .list_holders(holders("2024-03-02", at(p1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.tenures[0].person, "王五");
    assert_eq!(then.position, p1, "exactly as of the position asked for");
    let holdings_then = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "王五".into(),
            on_date: "2024-03-02".into(),
            as_of: at(p1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(holdings_then.tenures.len(), 1);
    assert_eq!(holdings_then.position, p1);
    // A position the read models have not reached: refused, as every listing refuses it.
    let unreached = at(server.head().await + 1);
    let err = client
        .list_holders(holders("2024-03-02", unreached.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let err = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "王五".into(),
            as_of: unreached,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    // By recorded instant: the time of the event at p1 names p1's view.
    let events = client
        .list_events(pb::ListEventsRequest {
            after_position: p1 - 1,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let by_time = Some(pb::AsOf {
        position: 0,
        recorded_at: events[0].recorded_at.clone(),
    });
    let then = client
        .list_holders(holders("2024-03-02", by_time))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.tenures[0].person, "王五");
    assert_eq!(then.position, p1, "the instant resolved to its position");
    let both = Some(pb::AsOf {
        position: 3,
        recorded_at: "2026-01-01T00:00:00Z".into(),
    });
    let err = client
        .list_holders(holders("2024-03-02", both))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad_time = Some(pb::AsOf {
        position: 0,
        recorded_at: "yesterday".into(),
    });
    let err = client
        .list_holders(holders("2024-03-02", bad_time))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Revocation by RPC: the facts stop holding; history marks them.
    let revoked = client
        .revoke_notice(pb::RevokeNoticeRequest {
            document_number: "临政人〔2024〕1号".into(),
            reason: "程序违规".into(),
            by_notice: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        revoked.events_appended, 3,
        "NoticeRevoked + two withdrawals"
    );
    let again = client
        .revoke_notice(pb::RevokeNoticeRequest {
            document_number: "临政人〔2024〕1号".into(),
            reason: "again".into(),
            by_notice: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let unknown = client
        .revoke_notice(pb::RevokeNoticeRequest {
            document_number: "临政人〔1999〕1号".into(),
            reason: "x".into(),
            by_notice: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let now = client
        .list_holders(holders("2024-03-02", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.tenures[0].person, "钟炎夫");
    let history = client
        .get_post_history(pb::GetPostHistoryRequest {
            organization: "市教育体育局".into(),
            post: "副局长".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenures;
    let wang6 = history.iter().find(|t| t.person == "王六").unwrap();
    assert_eq!(wang6.end_cause, "withdrawn");
    assert!(wang6.withdrawn_reason.starts_with("revoked: 程序违规"));
    assert!(!wang6.withdrawn_at.is_empty());
    let li = history.iter().find(|t| t.person == "李琪").unwrap();
    let zhong = history.iter().find(|t| t.person == "钟炎夫").unwrap();
    assert_eq!(li.replaced_by_tenure_id, Some(zhong.tenure_id));
    assert_eq!(zhong.replaced_tenure_id, Some(li.tenure_id));
    let notice = client
        .get_notice(pb::GetNoticeRequest {
            document_number: "临政人〔2024〕1号".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(notice.correction.unwrap().reason, "姓名有误");
    assert_eq!(notice.revocation.unwrap().reason, "程序违规");
    server.shutdown().await.unwrap();
}

/// GetNotice and ListNotices report the position their view of a notice is exactly as of;
/// asked again as of it after the notice was corrected, GetNotice gives the same view.
#[tokio::test]
async fn a_notice_is_the_same_again_as_of_the_position_it_reported() {
    let server = TestServer::seeded(ServerConfig::default()).await;
    let mut client = server.client().await;
    let original = common::notice_text(1, "2024年3月1日", &["王五同志任市教育体育局副局长"]);
    client.ingest_notice(ingest(&original, "")).await.unwrap();
    let p1 = server.head().await;
    let get = |as_of| pb::GetNoticeRequest {
        document_number: "临政人〔2024〕1号".into(),
        as_of,
    };
    let first = client.get_notice(get(None)).await.unwrap().into_inner();
    assert_eq!(first.position, p1);
    assert!(first.source_text.contains("王五"));
    let listed = client
        .list_notices(pb::ListNoticesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.position, p1);
    assert!(listed.notices.iter().all(|n| n.position == p1));

    let corrected = original.replace("王五", "王六");
    client
        .ingest_notice(ingest(&corrected, "姓名有误"))
        .await
        .unwrap();
    let now = client.get_notice(get(None)).await.unwrap().into_inner();
    assert_eq!(now.position, server.head().await);
    assert!(now.position > p1);
    assert_ne!(now, first, "the correction changed the notice's view");
    let again = client
        .get_notice(get(at(first.position)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    // Not reached yet: OUT_OF_RANGE, as for every as-of question.
    let ahead = client
        .get_notice(get(at(now.position + 1)))
        .await
        .unwrap_err();
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn probations_confirmed_and_listed_with_their_outcomes() {
    let server = TestServer::seeded(ServerConfig::default()).await;
    let mut client = server.client().await;
    let confirmed = client
        .confirm_probation(pb::ConfirmProbationRequest {
            person: "宋勇".into(),
            organization: "湖南五尖山国家森林公园保护中心".into(),
            post: "副主任".into(),
            on_date: "2024-04-24".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.events_appended, 1);
    let err = client
        .confirm_probation(pb::ConfirmProbationRequest {
            person: "钟炎夫".into(),
            organization: "市教育体育局".into(),
            post: "副局长".into(),
            on_date: "2024-04-24".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let all = client
        .list_probations(pb::ListProbationsRequest {
            on_date: "2024-05-01".into(),
            include_decided: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .probations;
    assert_eq!(all.len(), 6);
    let song = all
        .iter()
        .find(|p| p.tenure.as_ref().unwrap().person == "宋勇")
        .unwrap();
    assert_eq!(song.status(), pb::probation::Status::Confirmed);
    assert_eq!(
        all.iter()
            .filter(|p| p.status() == pb::probation::Status::Due)
            .count(),
        5
    );
    let err = client
        .list_probations(pb::ListProbationsRequest {
            include_decided: true,
            due_within_days: Some(30),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn same_name_persons_listed_merged_and_split() {
    let server = TestServer::seeded(ServerConfig::default()).await;
    let mut client = server.client().await;
    let county = "岳阳县人民政府\n关于刘辉同志任职的通知\n岳政人〔2024〕3号\n\n各乡镇人民政府，县直各单位：\n\n\
                  经县人民政府研究决定：\n\n刘辉同志任县财政局局长。\n\n岳阳县人民政府\n2024年2月1日\n";
    let result = client
        .ingest_notice(ingest(county, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(result.results[0].warnings[0].message.starts_with("同名"));
    let persons = client
        .list_persons(pb::ListPersonsRequest {
            name: "刘辉".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .persons;
    assert_eq!(persons.len(), 2);
    let ambiguous = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "刘辉".into(),
            on_date: "2024-03-01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(ambiguous.code(), Code::InvalidArgument);
    let merged = client
        .merge_persons(pb::MergePersonsRequest {
            person_id: persons[1].person_id,
            into: persons[0].person_id,
            reason: "同一人".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(merged.position > 0);
    let holdings = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "刘辉".into(),
            on_date: "2024-03-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenures;
    assert_eq!(holdings.len(), 2);
    assert!(holdings.iter().all(|t| t.person_id == persons[0].person_id));
    let county_tenure = holdings
        .iter()
        .find(|t| t.organization == "岳阳县财政局")
        .unwrap();
    let split = client
        .split_person(pb::SplitPersonRequest {
            person_id: persons[0].person_id,
            tenure_ids: vec![county_tenure.tenure_id],
            reason: "并非同一人".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let err = client
        .split_person(pb::SplitPersonRequest {
            person_id: persons[0].person_id,
            tenure_ids: vec![],
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let back = client
        .list_holdings(pb::ListHoldingsRequest {
            person: format!("刘辉#{}", split.position),
            on_date: "2024-03-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenures;
    assert_eq!(back.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_new_write_needs_the_write_token() {
    let config = ServerConfig {
        access: AccessPolicy {
            write: Some(parse_write_token("hr:s3cret").unwrap()),
            ..AccessPolicy::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::seeded(config).await;
    let mut client = server.client().await;
    let err = client
        .revoke_notice(pb::RevokeNoticeRequest {
            document_number: "临政人〔2023〕4号".into(),
            reason: "x".into(),
            by_notice: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .merge_persons(pb::MergePersonsRequest {
            person_id: 1,
            into: 2,
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut request = Request::new(pb::ConfirmProbationRequest {
        person: "宋勇".into(),
        organization: "湖南五尖山国家森林公园保护中心".into(),
        post: "副主任".into(),
        on_date: "2024-04-24".into(),
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    client.confirm_probation(request).await.unwrap();
    server.shutdown().await.unwrap();
}
