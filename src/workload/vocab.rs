//! The generator's vocabulary: jurisdictions and their issuers, organizations, posts and
//! the characters names are made of.
//!
//! Everything here is chosen so the parser reads it the way a person would: organization
//! names end with a known organization word and posts are titles from the parser's post list
//! (`src/notice/posts.rs`); given-name characters avoid every character the clause grammar
//! treats as a verb or marker (任 免 为 兼 其 的 等 同 …), so a generated name never splits a
//! clause differently from what the generator meant.

/// A county-level jurisdiction that issues personnel notices.
pub(crate) struct JurisdictionDef {
    /// Place name as the parser derives it from the issuer (`临湘市`, `云溪区`).
    pub name: &'static str,
    /// The signing body, also the first line of the title.
    pub issuer: &'static str,
    /// Prefix of its document numbers (`临政人` in `临政人〔2023〕4号`).
    pub prefix: &'static str,
    /// ASCII slug for file names.
    pub slug: &'static str,
    /// `市`, `县` or `区`: how its notices write its own bodies (`市财政局`).
    pub level: char,
    /// 街道办事处 of the jurisdiction; names are unique across all jurisdictions because a
    /// street office's name is not qualified by the jurisdiction, so equal names would be
    /// one organization in the registry.
    pub streets: &'static [&'static str],
}

/// (宁乡市 and 湘乡市 are left out: the parser's `jurisdiction_of` reads the 乡 inside
/// their names as a township level and answers 宁乡 / 湘乡.)
pub(crate) const JURISDICTIONS: &[JurisdictionDef] = &[
    JurisdictionDef {
        name: "临湘市",
        issuer: "临湘市人民政府",
        prefix: "临政人",
        slug: "linxiang",
        level: '市',
        streets: &["长安", "五里牌", "桃矿"],
    },
    JurisdictionDef {
        name: "岳阳县",
        issuer: "岳阳县人民政府",
        prefix: "岳县政人",
        slug: "yueyang-county",
        level: '县',
        streets: &["荣家湾", "筻口"],
    },
    JurisdictionDef {
        name: "平江县",
        issuer: "平江县人民政府",
        prefix: "平政人",
        slug: "pingjiang",
        level: '县',
        streets: &["汉昌", "城关"],
    },
    JurisdictionDef {
        name: "汨罗市",
        issuer: "汨罗市人民政府",
        prefix: "汨政人",
        slug: "miluo",
        level: '市',
        streets: &["归义", "汨罗江", "城郊"],
    },
    JurisdictionDef {
        name: "华容县",
        issuer: "华容县人民政府",
        prefix: "华政人",
        slug: "huarong",
        level: '县',
        streets: &["章华", "治河渡"],
    },
    JurisdictionDef {
        name: "湘阴县",
        issuer: "湘阴县人民政府",
        prefix: "湘阴政人",
        slug: "xiangyin",
        level: '县',
        streets: &["文星", "东湖"],
    },
    JurisdictionDef {
        name: "云溪区",
        issuer: "岳阳市云溪区人民政府",
        prefix: "岳云政人",
        slug: "yunxi",
        level: '区',
        streets: &["云溪", "长岭", "松阳湖"],
    },
    JurisdictionDef {
        name: "君山区",
        issuer: "岳阳市君山区人民政府",
        prefix: "岳君政人",
        slug: "junshan",
        level: '区',
        streets: &["柳林洲", "君山"],
    },
    JurisdictionDef {
        name: "岳阳楼区",
        issuer: "岳阳市岳阳楼区人民政府",
        prefix: "岳楼政人",
        slug: "yueyanglou",
        level: '区',
        streets: &["三角线", "金鹗山", "洞庭", "望岳路"],
    },
    JurisdictionDef {
        name: "浏阳市",
        issuer: "浏阳市人民政府",
        prefix: "浏政人",
        slug: "liuyang",
        level: '市',
        streets: &["淮川", "集里", "荷花"],
    },
    JurisdictionDef {
        name: "醴陵市",
        issuer: "醴陵市人民政府",
        prefix: "醴政人",
        slug: "liling",
        level: '市',
        streets: &["来龙门", "西山", "仙岳山"],
    },
    JurisdictionDef {
        name: "长沙县",
        issuer: "长沙县人民政府",
        prefix: "长县政人",
        slug: "changsha-county",
        level: '县',
        streets: &["星沙", "湘龙", "泉塘"],
    },
    JurisdictionDef {
        name: "望城区",
        issuer: "长沙市望城区人民政府",
        prefix: "望政人",
        slug: "wangcheng",
        level: '区',
        streets: &["高塘岭", "月亮岛", "丁字湾"],
    },
    JurisdictionDef {
        name: "攸县",
        issuer: "攸县人民政府",
        prefix: "攸政人",
        slug: "youxian",
        level: '县',
        streets: &["联星", "江桥"],
    },
    JurisdictionDef {
        name: "湘潭县",
        issuer: "湘潭县人民政府",
        prefix: "潭县政人",
        slug: "xiangtan-county",
        level: '县',
        streets: &["易俗河", "天易"],
    },
    JurisdictionDef {
        name: "韶山市",
        issuer: "韶山市人民政府",
        prefix: "韶政人",
        slug: "shaoshan",
        level: '市',
        streets: &["清溪", "银田"],
    },
];

/// How an organization's posts look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrgKind {
    /// …局: 局长, 副局长, sometimes a 总会计师 or 总工程师.
    Bureau,
    /// …中心, …办公室, 街道办事处: 主任, 副主任.
    Office,
    /// …有限公司: 董事长, 总经理, 副总经理 (the notice then carries the 公司法 remark).
    Company,
    /// …中学: 校长, 副校长.
    School,
    /// …医院: 院长, 副院长.
    Hospital,
}

/// An organization template: name after the level character, its kind, the one-seat
/// specialist post it has besides head and deputies, and the abbreviation the built-in alias
/// table knows for it (also without the level character).
pub(crate) struct OrgDef {
    pub stem: &'static str,
    pub kind: OrgKind,
    pub specialist: Option<&'static str>,
    pub abbreviation: Option<&'static str>,
}

const fn org(
    stem: &'static str,
    kind: OrgKind,
    specialist: Option<&'static str>,
    abbreviation: Option<&'static str>,
) -> OrgDef {
    OrgDef {
        stem,
        kind,
        specialist,
        abbreviation,
    }
}

use OrgKind::*;

/// Bodies every jurisdiction has, written after its level character (`市` + `财政局`).
pub(crate) const ORGS: &[OrgDef] = &[
    org("人民政府办公室", Office, None, Some("政府办")),
    org("发展和改革局", Bureau, None, Some("发改局")),
    org("教育体育局", Bureau, None, Some("教体局")),
    org("科学技术和工业信息化局", Bureau, None, Some("科工局")),
    org("民政局", Bureau, None, None),
    org("司法局", Bureau, None, None),
    org("财政局", Bureau, Some("总会计师"), None),
    org(
        "人力资源和社会保障局",
        Bureau,
        Some("总会计师"),
        Some("人社局"),
    ),
    org("自然资源局", Bureau, Some("总工程师"), None),
    org("住房和城乡建设局", Bureau, Some("总工程师"), Some("住建局")),
    org("交通运输局", Bureau, Some("总工程师"), Some("交通局")),
    org("水利局", Bureau, Some("总工程师"), None),
    org("农业农村局", Bureau, None, None),
    org("商务局", Bureau, None, None),
    org("文化旅游广电体育局", Bureau, None, Some("文旅广体局")),
    org("卫生健康局", Bureau, None, Some("卫健局")),
    org("退役军人事务局", Bureau, None, Some("退役军人局")),
    org("应急管理局", Bureau, None, Some("应急局")),
    org("审计局", Bureau, None, None),
    org("市场监督管理局", Bureau, None, Some("市场监管局")),
    org("统计局", Bureau, None, None),
    org("医疗保障局", Bureau, None, Some("医保局")),
    org("林业局", Bureau, None, None),
    org("城市管理和综合执法局", Bureau, None, Some("城管局")),
    org("老干部局", Bureau, None, None),
    org("不动产登记中心", Office, None, Some("不动产中心")),
    org("疾病预防控制中心", Office, None, Some("疾控中心")),
    org("工伤保险服务中心", Office, None, None),
    org("国有资产事务中心", Office, None, None),
    org("公共资源交易中心", Office, None, None),
    org("政务服务中心", Office, None, None),
    org("机关事务服务中心", Office, None, None),
    org("库区移民服务中心", Office, None, None),
    org("城市建设投资有限公司", Company, None, None),
    org("交通建设投资集团有限公司", Company, None, None),
    org("水务投资发展有限公司", Company, None, None),
    org("第一中学", School, None, None),
    org("第二中学", School, None, None),
    org("人民医院", Hospital, None, None),
    org("中医医院", Hospital, None, None),
];

/// Common surnames. 任 (also the verb "appoint") is left out: the grammar would read
/// `任伟同志…` differently from the generator's intent in edge cases.
pub(crate) const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "蒋", "蔡", "余", "杜", "叶", "程", "魏", "苏", "吕", "丁", "沈",
    "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "贾", "夏", "韦", "付",
    "方", "白", "邹", "孟", "熊", "秦", "邱", "江", "尹", "薛", "段", "雷", "侯", "龙", "史", "黎",
    "贺", "顾", "毛", "郝", "龚", "邵", "万", "钱", "严", "覃", "易", "戴", "莫", "孔", "向", "汤",
    "欧阳", "司马",
];

/// Given-name characters used mostly for men.
pub(crate) const MALE_GIVEN: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "平", "刚", "建", "国", "文", "辉",
    "飞", "鹏", "斌", "波", "宇", "浩", "凯", "健", "俊", "帆", "旭", "宁", "龙", "林", "亮", "成",
    "峰", "海", "东", "新", "春", "云", "华", "德", "永", "胜", "武", "兵", "雄", "安", "清", "松",
    "荣", "贵", "福", "生", "金", "山", "江", "定", "祥", "炎", "夫", "团", "结", "洪", "琪", "直",
];

/// Given-name characters used mostly for women.
pub(crate) const FEMALE_GIVEN: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "秀", "霞", "桂", "英", "红", "玲", "萍", "燕", "慧", "琳",
    "雪", "梅", "兰", "晶", "莉", "婷", "丹", "颖", "倩", "洁", "华", "春", "玉", "凤", "琴", "薇",
];
