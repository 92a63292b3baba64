//! Dates and durations as notices write them.
//!
//! The signature date is `2023年4月24日` or, in more formal notices, `二〇二三年四月二十四日`
//! (the zero also appears as `零`, `○` or a Latin `O`). Years are written digit by digit,
//! months and days with `十` (`二十四`). Clauses may carry an effective date
//! (`自2023年5月1日起`, `自2023年5月起`), kept with its precision, and a probation period
//! (`试用期一年`, `试用期六个月`, `试用期半年`).

use chrono::NaiveDate;

/// A date with the precision it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartialDate {
    pub year: i32,
    pub month: Option<u32>,
    pub day: Option<u32>,
}

impl PartialDate {
    /// `2023-05-01`, `2023-05` or `2023`.
    pub fn render(&self) -> String {
        match (self.month, self.day) {
            (Some(m), Some(d)) => format!("{:04}-{:02}-{:02}", self.year, m, d),
            (Some(m), None) => format!("{:04}-{:02}", self.year, m),
            _ => format!("{:04}", self.year),
        }
    }
}

/// The value of one digit character, ASCII or Chinese.
pub(crate) fn digit_value(c: char) -> Option<u32> {
    Some(match c {
        '0'..='9' => c as u32 - '0' as u32,
        '０'..='９' => c as u32 - '０' as u32,
        '〇' | '零' | '○' | 'Ｏ' | 'O' | 'o' => 0,
        '一' | '壹' => 1,
        '二' | '两' | '贰' => 2,
        '三' | '叁' => 3,
        '四' | '肆' => 4,
        '五' | '伍' => 5,
        '六' | '陆' => 6,
        '七' | '柒' => 7,
        '八' | '捌' => 8,
        '九' | '玖' => 9,
        _ => return None,
    })
}

fn is_number_char(c: char) -> bool {
    digit_value(c).is_some() || c == '十' || c == '拾'
}

/// A small number written in ASCII digits or Chinese numerals (`12`, `十二`, `二十四`,
/// `两`). Digit-by-digit Chinese (`二〇二三`) is read positionally. `None` for anything
/// else or values that do not fit comfortably (more than 9 digits).
pub(crate) fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.chars().count() > 9 {
        return None;
    }
    if s.contains(['十', '拾']) {
        let mut parts = s.splitn(2, ['十', '拾']);
        let tens_s = parts.next().unwrap_or("");
        let ones_s = parts.next().unwrap_or("");
        let tens = if tens_s.is_empty() {
            1
        } else {
            single_digit(tens_s)?
        };
        let ones = if ones_s.is_empty() {
            0
        } else {
            single_digit(ones_s)?
        };
        return Some(tens * 10 + ones);
    }
    let mut v: u32 = 0;
    for c in s.chars() {
        v = v.checked_mul(10)?.checked_add(digit_value(c)?)?;
    }
    Some(v)
}

fn single_digit(s: &str) -> Option<u32> {
    let mut it = s.chars();
    let c = it.next()?;
    if it.next().is_some() {
        return None;
    }
    digit_value(c)
}

/// Reads a number at the start of `s`, returning it and the bytes consumed.
fn take_number(s: &str, max_chars: usize) -> Option<(u32, usize)> {
    let mut end = 0;
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n >= max_chars || !is_number_char(c) {
            break;
        }
        end = i + c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    Some((parse_number(&s[..end])?, end))
}

/// Reads `YYYY年[M月[D日]]` at the start of the compact string `s`; returns the date and
/// the bytes consumed. The year must have four digits.
pub(crate) fn parse_date_prefix(s: &str) -> Option<(PartialDate, usize)> {
    let mut end = 0;
    let mut year_digits = 0;
    for (i, c) in s.char_indices() {
        if year_digits == 4 {
            break;
        }
        digit_value(c)?;
        year_digits += 1;
        end = i + c.len_utf8();
    }
    if year_digits != 4 {
        return None;
    }
    let year = s[..end]
        .chars()
        .try_fold(0i32, |acc, c| Some(acc * 10 + digit_value(c)? as i32))?;
    let mut pos = end;
    pos += s[pos..].strip_prefix('年').map(|_| '年'.len_utf8())?;
    let mut date = PartialDate {
        year,
        month: None,
        day: None,
    };
    if let Some((m, n)) = take_number(&s[pos..], 3) {
        if let Some(rest) = s[pos + n..].strip_prefix('月') {
            if !(1..=12).contains(&m) {
                return None;
            }
            date.month = Some(m);
            pos = s.len() - rest.len();
            if let Some((d, n)) = take_number(&s[pos..], 3) {
                let after = &s[pos + n..];
                if let Some(rest) = after
                    .strip_prefix('日')
                    .or_else(|| after.strip_prefix('号'))
                {
                    NaiveDate::from_ymd_opt(year, m, d)?;
                    date.day = Some(d);
                    pos = s.len() - rest.len();
                }
            }
        }
    }
    Some((date, pos))
}

/// A line that is exactly a full date (the signature date), in compact form.
pub(crate) fn parse_date_line(compact: &str) -> Option<NaiveDate> {
    if compact.len() > 60 {
        return None;
    }
    let (d, used) = parse_date_prefix(compact)?;
    if used != compact.len() {
        return None;
    }
    NaiveDate::from_ymd_opt(d.year, d.month?, d.day?)
}

/// Finds an explicit effective date `自…起` (also `自…开始`, `从…起`) in a compact string.
/// Returns the date and the byte range of the whole phrase so callers can cut it out.
pub(crate) fn find_effective(s: &str) -> Option<(PartialDate, std::ops::Range<usize>)> {
    for (i, c) in s.char_indices() {
        if c != '自' && c != '从' {
            continue;
        }
        let from = i + c.len_utf8();
        if let Some((d, used)) = parse_date_prefix(&s[from..]) {
            let after = &s[from + used..];
            for tail in ["起施行", "起执行", "起生效", "开始", "起"] {
                if after.starts_with(tail) {
                    return Some((d, i..from + used + tail.len()));
                }
            }
        }
    }
    None
}

/// The probation period of a `试用期…` phrase, in months: `试用期一年` → 12, `试用期六个月`
/// → 6, `试用期半年` → 6, `试用期为1年` → 12.
pub(crate) fn probation_months(s: &str) -> Option<u32> {
    let at = s.find("试用期")?;
    let mut rest = &s[at + "试用期".len()..];
    rest = rest.strip_prefix('为').unwrap_or(rest);
    if rest.starts_with("半年") {
        return Some(6);
    }
    if rest.starts_with("一年半") {
        return Some(18);
    }
    let (n, used) = take_number(rest, 4)?;
    let unit = &rest[used..];
    if unit.starts_with('年') {
        n.checked_mul(12)
    } else if unit.starts_with("个月") || unit.starts_with('月') {
        Some(n)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("24"), Some(24));
        assert_eq!(parse_number("十"), Some(10));
        assert_eq!(parse_number("十二"), Some(12));
        assert_eq!(parse_number("二十四"), Some(24));
        assert_eq!(parse_number("三十一"), Some(31));
        assert_eq!(parse_number("二〇二三"), Some(2023));
        assert_eq!(parse_number("两"), Some(2));
        assert_eq!(parse_number("十十"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn date_lines() {
        assert_eq!(parse_date_line("2023年4月24日"), Some(ymd(2023, 4, 24)));
        assert_eq!(
            parse_date_line("二〇二三年四月二十四日"),
            Some(ymd(2023, 4, 24))
        );
        assert_eq!(
            parse_date_line("二零二三年十二月一日"),
            Some(ymd(2023, 12, 1))
        );
        assert_eq!(
            parse_date_line("二○二二年十月三十一日"),
            Some(ymd(2022, 10, 31))
        );
        assert_eq!(parse_date_line("2023年2月30日"), None);
        assert_eq!(parse_date_line("2023年4月"), None);
        assert_eq!(parse_date_line("2023年4月24日出版"), None);
        assert_eq!(parse_date_line("2023年第2期"), None);
    }

    #[test]
    fn effective_dates_keep_precision() {
        let s = "张三同志自2023年5月1日起任县教育局局长";
        let (d, r) = find_effective(s).unwrap();
        assert_eq!(d.render(), "2023-05-01");
        assert_eq!(&s[r], "自2023年5月1日起");
        assert_eq!(
            find_effective("自2023年5月起执行").unwrap().0.render(),
            "2023-05"
        );
        assert_eq!(find_effective("自二〇二三年起").unwrap().0.render(), "2023");
        assert!(find_effective("自即日起").is_none());
        assert!(find_effective("自然资源局").is_none());
    }

    #[test]
    fn probation() {
        assert_eq!(probation_months("试用期一年"), Some(12));
        assert_eq!(probation_months("试用期六个月"), Some(6));
        assert_eq!(probation_months("试用期半年"), Some(6));
        assert_eq!(probation_months("试用期为1年"), Some(12));
        assert_eq!(probation_months("试用期3个月"), Some(3));
        assert_eq!(probation_months("试用期两年"), Some(24));
        assert_eq!(probation_months("试用期满"), None);
    }
}
