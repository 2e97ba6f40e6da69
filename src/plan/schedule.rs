//! Heroku Scheduler's frequencies and cron expressions: when a job runs next (UTC).
//!
//! Pure arithmetic on wall-clock time: `scheduler` (the clock task) asks it, the core
//! never does (it keeps no wall clock).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, NaiveTime, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// When a job runs: one of Heroku Scheduler's three frequencies, or a cron expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Frequency {
    /// `every 10 minutes`: at :00, :10, :20 ... of every hour.
    EveryTenMinutes,
    /// `hourly at :MM`.
    Hourly { minute: u32 },
    /// `daily at HH:MM` (UTC).
    Daily { at: NaiveTime },
    /// Five fields, minute to weekday, as cron reads them (UTC); shown as written.
    Cron { expression: String, cron: Box<Cron> },
}

impl Frequency {
    /// A cron expression, five fields (no seconds: Scheduler's finest step is a minute).
    pub fn cron(expression: &str) -> Result<Self, String> {
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map(|c| Self::Cron {
                expression: expression.trim().to_owned(),
                cron: Box::new(c),
            })
            .map_err(|e| e.to_string())
    }

    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole minutes: a run at 12:10:00 is not due again at 12:10:00.4.
        let minute = t.duration_trunc(Duration::minutes(1)).ok()?;
        match self {
            Self::EveryTenMinutes => {
                let past = i64::from(minute.minute() % 10);
                Some(minute + Duration::minutes(10 - past))
            }
            Self::Hourly { minute: at } => {
                let hour = minute.duration_trunc(Duration::hours(1)).ok()?;
                let run = hour + Duration::minutes(i64::from(*at));
                Some(if run > t {
                    run
                } else {
                    run + Duration::hours(1)
                })
            }
            Self::Daily { at } => {
                let run = t.date_naive().and_time(*at).and_utc();
                Some(if run > t {
                    run
                } else {
                    run + Duration::days(1)
                })
            }
            Self::Cron { cron, .. } => cron.find_next_occurrence(&t, false).ok(),
        }
    }
}

impl FromStr for Frequency {
    type Err = String;

    /// `every 10 minutes`, `hourly at :30` (or `every hour at :30`), `daily at 01:30` (or
    /// `every day at 01:30`).
    fn from_str(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = || {
            format!(
                "`{text}` is not one of Scheduler's frequencies \
                 (every 10 minutes, hourly at :MM, daily at HH:MM)"
            )
        };
        match words.as_slice() {
            ["every", "10", "minutes"] => Ok(Self::EveryTenMinutes),
            ["hourly", "at", at] | ["every", "hour", "at", at] => {
                let minute = at
                    .strip_prefix(':')
                    .filter(|m| m.len() == 2)
                    .and_then(|m| m.parse::<u32>().ok())
                    .filter(|&m| m < 60)
                    .ok_or_else(bad)?;
                Ok(Self::Hourly { minute })
            }
            ["daily", "at", at] | ["every", "day", "at", at] => {
                let at = NaiveTime::parse_from_str(at, "%H:%M").map_err(|_| bad())?;
                Ok(Self::Daily { at })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EveryTenMinutes => f.write_str("every 10 minutes"),
            Self::Hourly { minute } => write!(f, "hourly at :{minute:02}"),
            Self::Daily { at } => write!(f, "daily at {} UTC", at.format("%H:%M")),
            Self::Cron { expression, .. } => write!(f, "cron {expression}"),
        }
    }
}

/// One `[[scheduler]]` job: what runs, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub command: String,
    pub frequency: Frequency,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(frequency: &str, t: DateTime<Utc>) -> DateTime<Utc> {
        let f: Frequency = frequency.parse().unwrap();
        f.next_after(t).unwrap()
    }

    #[test]
    fn every_ten_minutes_is_on_the_tens_across_hours_and_days() {
        let f = "every 10 minutes";
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 0, 0)),
            at(2026, 12, 1, 12, 10, 0)
        );
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 3, 59)),
            at(2026, 12, 1, 12, 10, 0)
        );
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 9, 59)),
            at(2026, 12, 1, 12, 10, 0)
        );
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 50, 0)),
            at(2026, 12, 1, 13, 0, 0)
        );
        // Across a day, a month and a year.
        assert_eq!(
            next(f, at(2026, 12, 31, 23, 55, 1)),
            at(2027, 1, 1, 0, 0, 0)
        );
    }

    #[test]
    fn hourly_runs_at_its_minute_of_this_hour_or_the_next() {
        let f = "hourly at :30";
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 0, 0)),
            at(2026, 12, 1, 12, 30, 0)
        );
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 29, 59)),
            at(2026, 12, 1, 12, 30, 0)
        );
        // Exactly at its run: the next one.
        assert_eq!(
            next(f, at(2026, 12, 1, 12, 30, 0)),
            at(2026, 12, 1, 13, 30, 0)
        );
        assert_eq!(
            next(f, at(2026, 12, 1, 23, 45, 0)),
            at(2026, 12, 2, 0, 30, 0)
        );
        assert_eq!(
            next("every hour at :00", at(2026, 2, 28, 23, 0, 0)),
            at(2026, 3, 1, 0, 0, 0)
        );
    }

    #[test]
    fn daily_runs_at_its_time_today_or_tomorrow() {
        let f = "daily at 01:30";
        assert_eq!(next(f, at(2026, 12, 1, 0, 0, 0)), at(2026, 12, 1, 1, 30, 0));
        assert_eq!(
            next(f, at(2026, 12, 1, 1, 30, 0)),
            at(2026, 12, 2, 1, 30, 0)
        );
        assert_eq!(
            next(f, at(2026, 12, 1, 23, 59, 59)),
            at(2026, 12, 2, 1, 30, 0)
        );
        // A leap day, and the year's end.
        assert_eq!(
            next(f, at(2028, 2, 28, 12, 0, 0)),
            at(2028, 2, 29, 1, 30, 0)
        );
        assert_eq!(
            next("every day at 00:00", at(2026, 12, 31, 0, 0, 0)),
            at(2027, 1, 1, 0, 0, 0)
        );
    }

    #[test]
    fn cron_expressions_run_at_their_next_minute() {
        let f = Frequency::cron("* * * * *").unwrap();
        assert_eq!(
            f.next_after(at(2026, 12, 1, 12, 0, 30)),
            Some(at(2026, 12, 1, 12, 1, 0))
        );
        let f = Frequency::cron("15 3 * * MON").unwrap();
        // 2026-12-01 is a Tuesday.
        assert_eq!(
            f.next_after(at(2026, 12, 1, 12, 0, 0)),
            Some(at(2026, 12, 7, 3, 15, 0))
        );
        assert!(Frequency::cron("* * * * * *").is_err(), "no seconds");
        assert!(Frequency::cron("61 * * * *").is_err());
    }

    #[test]
    fn frequencies_outside_schedulers_are_refused() {
        for bad in [
            "every 5 minutes",
            "hourly at 30",
            "hourly at :60",
            "daily at 25:00",
            "daily",
            "",
        ] {
            assert!(bad.parse::<Frequency>().is_err(), "{bad}");
        }
        let shown: Vec<String> = ["every 10 minutes", "every hour at :05", "daily at 01:30"]
            .iter()
            .map(|f| f.parse::<Frequency>().unwrap().to_string())
            .collect();
        assert_eq!(
            shown,
            ["every 10 minutes", "hourly at :05", "daily at 01:30 UTC"]
        );
    }
}
