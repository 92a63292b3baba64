//! Post rules: which posts have a single seat. The table is data (`seeds/head-posts.list`),
//! compiled in so that the projection stays a pure function of the event log.

use std::collections::HashSet;
use std::sync::OnceLock;

const HEAD_POSTS: &str = include_str!("../../seeds/head-posts.list");

fn head_posts() -> &'static HashSet<&'static str> {
    static TABLE: OnceLock<HashSet<&'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        HEAD_POSTS
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// True for a one-seat post (局长, 主任, 董事长 …). Deputies (副局长) have many seats.
pub fn is_head_post(post: &str) -> bool {
    head_posts().contains(post)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_have_one_seat_and_deputies_many() {
        for head in ["局长", "主任", "董事长", "总经理", "院长"] {
            assert!(is_head_post(head), "{head}");
        }
        for deputy in ["副局长", "副主任", "副总经理", "党组成员"] {
            assert!(!is_head_post(deputy), "{deputy}");
        }
    }
}
