//! Splitting `organization + post` strings.
//!
//! A clause writes the organization and the post as one run of characters
//! (`市人力资源和社会保障局副局长`), with no separator. Post titles form a small closed
//! vocabulary and always come last, so the split is the longest vocabulary entry that the
//! string ends with; the organization is whatever precedes it (possibly nothing: in
//! `副局长、总会计师` the second post repeats the previous organization).

/// Post titles, any order; matching picks the longest suffix.
const POSTS: &[&str] = &[
    // Government and party leadership.
    "省长",
    "副省长",
    "市长",
    "副市长",
    "常务副市长",
    "县长",
    "副县长",
    "常务副县长",
    "区长",
    "副区长",
    "常务副区长",
    "镇长",
    "副镇长",
    "乡长",
    "副乡长",
    "州长",
    "副州长",
    "书记",
    "副书记",
    "党委书记",
    "党委副书记",
    "党组书记",
    "党组副书记",
    "党工委书记",
    "党工委副书记",
    "党总支书记",
    "党支部书记",
    "纪委书记",
    "纪工委书记",
    "纪检组长",
    "纪检监察组组长",
    "党组成员",
    "党委委员",
    "党工委委员",
    "委员",
    "常委",
    "主席",
    "副主席",
    "秘书长",
    "副秘书长",
    "主任委员",
    "副主任委员",
    "组长",
    "副组长",
    "部长",
    "副部长",
    "厅长",
    "副厅长",
    "局长",
    "副局长",
    "常务副局长",
    "分局局长",
    "分局副局长",
    "主任",
    "副主任",
    "常务副主任",
    "专职副主任",
    "处长",
    "副处长",
    "科长",
    "副科长",
    "股长",
    "副股长",
    "所长",
    "副所长",
    "站长",
    "副站长",
    "馆长",
    "副馆长",
    "院长",
    "副院长",
    "常务副院长",
    "校长",
    "副校长",
    "园长",
    "副园长",
    "场长",
    "副场长",
    "台长",
    "副台长",
    "社长",
    "副社长",
    "总编辑",
    "副总编辑",
    "主编",
    "行长",
    "副行长",
    "会长",
    "副会长",
    "理事长",
    "副理事长",
    "大队长",
    "副大队长",
    "中队长",
    "副中队长",
    "支队长",
    "副支队长",
    "队长",
    "副队长",
    "政委",
    "副政委",
    "教导员",
    "指导员",
    "司令员",
    "参谋长",
    "庭长",
    "副庭长",
    "审判员",
    "助理审判员",
    "审判委员会委员",
    "检察长",
    "副检察长",
    "检察员",
    "助理检察员",
    "检察委员会委员",
    "执行员",
    "审计师",
    "总会计师",
    "总工程师",
    "总经济师",
    "总规划师",
    "总农艺师",
    "总畜牧师",
    "总督学",
    "督学",
    "主任督学",
    // Enterprises.
    "董事长",
    "副董事长",
    "董事",
    "职工董事",
    "外部董事",
    "总经理",
    "副总经理",
    "经理",
    "副经理",
    "监事会主席",
    "监事",
    "职工监事",
    "财务总监",
    "总监",
    "副总监",
    // Non-leadership ranks.
    "调研员",
    "副调研员",
    "一级调研员",
    "二级调研员",
    "三级调研员",
    "四级调研员",
    "巡视员",
    "副巡视员",
    "一级巡视员",
    "二级巡视员",
    "主任科员",
    "副主任科员",
    "一级主任科员",
    "二级主任科员",
    "三级主任科员",
    "四级主任科员",
    "科员",
    "干事",
    "专职委员",
    "专员",
    "副专员",
    "协理员",
];

/// The longest post title `item` ends with, and the organization before it.
/// `None` if `item` ends with no known post title.
pub(crate) fn split_post(item: &str) -> Option<(&str, &str)> {
    let best = POSTS
        .iter()
        .filter(|p| item.ends_with(*p))
        .max_by_key(|p| p.len())?;
    let cut = item.len() - best.len();
    Some((&item[..cut], &item[cut..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_suffix_wins() {
        assert_eq!(
            split_post("市教育体育局副局长"),
            Some(("市教育体育局", "副局长"))
        );
        assert_eq!(split_post("市老干部局局长"), Some(("市老干部局", "局长")));
        assert_eq!(
            split_post("市疾病预防控制中心局长"),
            Some(("市疾病预防控制中心", "局长"))
        );
        assert_eq!(
            split_post("市振湘实业发展集团有限公司副总经理"),
            Some(("市振湘实业发展集团有限公司", "副总经理"))
        );
        assert_eq!(
            split_post("市消防救援大队大队长"),
            Some(("市消防救援大队", "大队长"))
        );
        assert_eq!(
            split_post("市国防动员办公室（市人民防空办公室）主任"),
            Some(("市国防动员办公室（市人民防空办公室）", "主任"))
        );
        assert_eq!(
            split_post("县人民法院审判员"),
            Some(("县人民法院", "审判员"))
        );
        assert_eq!(
            split_post("市交通运输局党组书记"),
            Some(("市交通运输局", "党组书记"))
        );
    }

    #[test]
    fn bare_posts_and_unknown() {
        assert_eq!(split_post("总会计师"), Some(("", "总会计师")));
        assert_eq!(split_post("市某某中心首席专家"), None);
        assert_eq!(split_post(""), None);
    }
}
