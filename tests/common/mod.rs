//! Shared test support: a fresh database per test (SQLite file or PostgreSQL database) and
//! small notice texts in the seed's genre.

#![allow(dead_code)]

pub mod pg;

use std::path::PathBuf;

use renmian::domain::NoticeKey;

/// A database of one test's own. PostgreSQL databases are dropped when the value is dropped.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    /// The admin URL and this database's URL, to drop it.
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("renmian.db").display());
        Self {
            url,
            backend: "sqlite",
            _dir: Some(dir),
            pg_admin: None,
        }
    }

    /// A new, empty database on the server named by `RENMIAN_TEST_DATABASE_URL`; `None`
    /// (with a visible message) when the variable is unset.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("RENMIAN_TEST_DATABASE_URL") else {
            say_skipped("on PostgreSQL: RENMIAN_TEST_DATABASE_URL is not set");
            return None;
        };
        let url = pg::create(&admin_url, "renmian_t").await;
        Some(Self {
            url: url.clone(),
            backend: "postgres",
            _dir: None,
            pg_admin: Some((admin_url, url)),
        })
    }
}

/// Says that a test skipped its work, where `cargo test` shows it: the harness captures what
/// `eprintln!` prints in a passing test, but not writes to the stderr handle itself.
pub fn say_skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, url)) = self.pg_admin.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(pg::drop(&admin_url, &url));
            })
            .join();
        }
    }
}

pub fn date(s: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a YYYY-MM-DD test date")
}

pub fn actor() -> renmian::registry::Actor {
    renmian::registry::Actor::named("test")
}

/// A registry on `db` with the seed gazette ingested.
pub async fn seeded(db: &TestDb) -> renmian::registry::Registry {
    let registry = renmian::registry::Registry::open(&db.url)
        .await
        .expect("open registry");
    registry
        .ingest(&seed_text(), &actor())
        .await
        .expect("ingest seed");
    registry
}

/// Every read model as one JSON string, to compare incremental and rebuilt projections.
pub async fn export_json(registry: &renmian::registry::Registry) -> String {
    let tables = renmian::projections::export::export(registry.database())
        .await
        .expect("export");
    serde_json::to_string(&renmian::projections::export::to_json(&tables)).expect("json")
}

/// What a post's history reads through its tenures' current versions (migration 0014)
/// holds: every tenure has exactly one current version, and its organization and post are
/// the same in every version; and the history of every post and organization, as of
/// `positions` and now, lists exactly the tenures whose versions, read straight from
/// `rm_tenures`, the registry held then.
pub async fn assert_post_histories_read_every_version(
    registry: &renmian::registry::Registry,
    positions: &[i64],
) {
    use sqlx::Row;
    let pool = registry.database().pool();
    let broken: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM (SELECT tenure_id FROM rm_tenures GROUP BY tenure_id \
         HAVING SUM(CASE WHEN version_to IS NULL THEN 1 ELSE 0 END) <> 1 \
         OR COUNT(DISTINCT organization) <> 1 OR COUNT(DISTINCT post) <> 1) x",
    )
    .fetch_one(pool)
    .await
    .unwrap()
    .get("n");
    assert_eq!(
        broken, 0,
        "tenures without one current version, or moving post"
    );
    let posts: Vec<(String, String)> =
        sqlx::query("SELECT DISTINCT organization, post FROM rm_tenures ORDER BY 1, 2")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("organization"), r.get("post")))
            .collect();
    assert!(!posts.is_empty());
    let mut organizations: Vec<&String> = posts.iter().map(|(o, _)| o).collect();
    organizations.dedup();
    let head = registry.database().head_position().await.unwrap();
    let mut nonempty = 0;
    for &position in positions.iter().chain([&head]) {
        let now = position == head;
        let queries = if now {
            registry.queries().clone()
        } else {
            registry.queries().as_of_position(position).unwrap()
        };
        let asked = posts
            .iter()
            .map(|(o, p)| (o, Some(p.as_str())))
            .chain(organizations.iter().map(|o| (*o, None)));
        for (organization, post) in asked {
            let mut sql = format!(
                "SELECT tenure_id FROM rm_tenures WHERE organization = $1 \
                 AND version_from <= {position} AND (version_to IS NULL OR version_to > {position})"
            );
            if post.is_some() {
                sql.push_str(" AND post = $2");
            }
            let mut direct = sqlx::query(&sql).bind(organization);
            if let Some(post) = post {
                direct = direct.bind(post);
            }
            let mut expected: Vec<i64> = direct
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("tenure_id"))
                .collect();
            expected.sort_unstable();
            // An organization the registry did not know yet is refused, not answered empty.
            let mut answered: Vec<i64> = match queries.post_history(organization, post).await {
                Ok(history) => history.iter().map(|t| t.tenure_id).collect(),
                Err(e) if expected.is_empty() => {
                    assert!(!now, "{organization} {post:?} now: {e}");
                    Vec::new()
                }
                Err(e) => panic!("{organization} {post:?} as of {position}: {e}"),
            };
            answered.sort_unstable();
            assert_eq!(
                answered, expected,
                "{organization} {post:?} as of {position}"
            );
            nonempty += usize::from(!expected.is_empty());
        }
    }
    assert!(
        nonempty > posts.len(),
        "too little history to compare ({nonempty})"
    );
}

pub fn seed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds/linxiang-gazette-2023-no2.md")
}

pub fn seed_text() -> String {
    std::fs::read_to_string(seed_path()).expect("seed gazette")
}

/// A small notice of 临湘市人民政府 numbered 临政人〔2024〕`number`号, dated `date`
/// (`2024年3月1日`), with `clauses` as its body (each without the trailing ；).
pub fn notice_text(number: u32, date: &str, clauses: &[&str]) -> String {
    let body = clauses.join("；\n\n");
    format!(
        "临湘市人民政府\n关于人员职务任免的通知\n(临政人〔2024〕{number}号)\n\n\
         各镇人民政府、街道办事处，市直各单位：\n\n经市人民政府研究决定：\n\n{body}。\n\n\
         临湘市人民政府\n\n{date}\n"
    )
}

/// A notice of 临湘市人民政府 (临政人〔2024〕`number`号, dated `date`) revoking
/// 临政人〔2024〕`revoked`号.
pub fn revocation_text(number: u32, revoked: u32, date: &str) -> String {
    format!(
        "临湘市人民政府\n关于撤销《临湘市人民政府关于人员职务任免的通知》的通知\n(临政人〔2024〕{number}号)\n\n\
         各镇人民政府、街道办事处，市直各单位：\n\n经市人民政府研究决定，撤销《临湘市人民政府关于人员职务任免的通知》\
         （临政人〔2024〕{revoked}号）。\n\n临湘市人民政府\n\n{date}\n"
    )
}

/// Generates, for each `async fn name(db: TestDb)` listed, one test on SQLite (module
/// `sqlite`) and one on PostgreSQL (module `postgres`, skipped with a message when
/// `RENMIAN_TEST_DATABASE_URL` is unset).
#[macro_export]
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

/// Generated notice number `n` (临政人〔2024〕`n`号): 1 to 4 clauses with names and posts
/// derived from `n`, so every number gives a distinct notice and a rerun the same texts
/// (crash and load tests).
pub fn generated_notice(n: u32) -> String {
    const SURNAMES: &[char] = &['王', '李', '张', '刘', '陈', '杨', '黄', '赵', '吴', '周'];
    const GIVEN: &[char] = &[
        '伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳', '杰', '涛', '明',
        '超', '秀', '霞', '平', '刚',
    ];
    const POSTS: &[&str] = &[
        "市财政局副局长",
        "市交通运输局局长",
        "市教育体育局副局长",
        "市统计局副局长",
        "市商务局局长",
    ];
    let clauses: Vec<String> = (0..1 + n % 4)
        .map(|i| {
            let k = (n as usize) * 7 + i as usize;
            let name: String = [
                SURNAMES[k % SURNAMES.len()],
                GIVEN[(k / 10) % GIVEN.len()],
                GIVEN[(k / 200) % GIVEN.len()],
            ]
            .iter()
            .collect();
            let post = POSTS[(k / 3) % POSTS.len()];
            if i % 3 == 2 {
                let (org, title) = post.split_at(post.rfind('局').unwrap() + '局'.len_utf8());
                format!("免去{name}同志{org}{title}职务")
            } else {
                format!("{name}同志任{post}")
            }
        })
        .collect();
    let clauses: Vec<&str> = clauses.iter().map(String::as_str).collect();
    notice_text(n, "2024年3月1日", &clauses)
}

/// The aggregate id and the number of events a fully recorded notice has.
pub fn expectation(text: &str) -> (String, i64) {
    let parsed = renmian::notice::parse(text);
    assert_eq!(parsed.notices.len(), 1, "{:?}", parsed.diagnostics);
    let notice = &parsed.notices[0];
    (
        NoticeKey::for_notice(notice).aggregate_id().to_string(),
        1 + notice.events.len() as i64,
    )
}
