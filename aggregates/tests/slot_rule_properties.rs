//! Properties of the slot rule (api.md section 5, `aggregates::slots`).
//!
//! The main property compares `slot_starts` with an independent brute force (the *oracle*)
//! that shares only the input types and `LOOKBACK_DAYS` with the implementation. The oracle
//! works in whole minutes: it reads the zone's UTC offset at every minute instant of the window
//! it needs, resolves wall times by scanning those minutes (earliest instant showing the wall
//! time; in a gap, the offset in effect before the transition), paints the spans on a
//! per-minute boolean array, takes maximal runs as the merged spans, lays the grid minute by
//! minute, and applies blocks with per-minute counts. It never calls `resolve_local` or
//! `candidate_starts`.
//!
//! Inputs are drawn from every IANA zone, years 2020–2035, and many query ranges are placed
//! around a DST (or other offset) transition of the drawn zone.

use std::collections::BTreeSet;

use aggregates::schedule::{Interval, LocalTime, WeeklySchedule};
use aggregates::slots::{
    Availability, BookedTime, LOOKBACK_DAYS, SlotSettings, Span, candidate_starts, resolve_local,
    slot_starts, within_notice_and_horizon,
};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::{TZ_VARIANTS, Tz};
use proptest::prelude::*;
use proptest::test_runner::Config;

const HOUR: i64 = 60;
const DAY: i64 = 24 * HOUR;

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// One input of the rule, with instants as `DateTime<Utc>` so a failing case reads well.
#[derive(Debug, Clone)]
struct Case {
    tz: Tz,
    /// Intervals per weekday, Monday first, in minutes after local midnight.
    days: [Vec<(u16, u16)>; 7],
    settings: SlotSettings,
    bookings: Vec<BookedTime>,
    available: Vec<Span>,
    blocking: Vec<Span>,
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Case {
    fn schedule(&self) -> WeeklySchedule {
        WeeklySchedule::from_days(self.days.clone().map(|intervals| {
            intervals
                .into_iter()
                .map(|(from, to)| {
                    Interval::new(
                        LocalTime::from_minutes(from).unwrap(),
                        LocalTime::from_minutes(to).unwrap(),
                    )
                    .unwrap()
                })
                .collect()
        }))
        .expect("generated schedules are valid")
    }

    fn availability<'a>(&'a self, schedule: &'a WeeklySchedule) -> Availability<'a> {
        Availability {
            schedule,
            tz: self.tz,
            available_exceptions: &self.available,
            blocking_exceptions: &self.blocking,
        }
    }

    fn slots(&self) -> Vec<DateTime<Utc>> {
        let schedule = self.schedule();
        slot_starts(
            &self.availability(&schedule),
            &self.bookings,
            &self.settings,
            self.now,
            self.from,
            self.to,
        )
    }
}

fn instant(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minutes * 60, 0).unwrap()
}

fn minutes_of(instant: DateTime<Utc>) -> i64 {
    assert_eq!(
        instant.timestamp() % 60,
        0,
        "{instant} is not a whole minute"
    );
    assert_eq!(instant.timestamp_subsec_nanos(), 0);
    instant.timestamp() / 60
}

/// The zone's UTC offset at a minute instant, in minutes (offsets are whole minutes in
/// 2020–2035 in every zone; the assertion would say otherwise).
fn offset_minutes(tz: Tz, minute: i64) -> i64 {
    let seconds = tz
        .offset_from_utc_datetime(&instant(minute).naive_utc())
        .fix()
        .local_minus_utc();
    assert_eq!(seconds % 60, 0, "{tz} has a sub-minute offset");
    i64::from(seconds / 60)
}

/// The first instant (minute) after `start` at which the zone's offset changes, within a year.
fn next_transition(tz: Tz, start: i64) -> Option<i64> {
    let mut day = start;
    let offset = offset_minutes(tz, start);
    for _ in 0..370 {
        if offset_minutes(tz, day + DAY) != offset {
            let mut minute = day;
            while offset_minutes(tz, minute + HOUR) == offset {
                minute += HOUR;
            }
            while offset_minutes(tz, minute + 1) == offset {
                minute += 1;
            }
            return Some(minute + 1);
        }
        day += DAY;
    }
    None
}

/// Zones with unusual transitions, drawn more often than their share of the IANA list.
fn notable_zones() -> Vec<Tz> {
    use chrono_tz::{Africa, America, Asia, Australia, Europe, Pacific};
    vec![
        Europe::Berlin,
        Europe::London,
        America::New_York,
        America::Santiago,    // transitions at midnight
        America::Havana,      // transitions at midnight/01:00
        America::Asuncion,    // changed its standard offset in 2024
        Australia::Lord_Howe, // 30-minute DST
        Asia::Kathmandu,      // +05:45
        Pacific::Chatham,     // +12:45/+13:45
        Asia::Tehran,
        Africa::Casablanca, // suspends its +01:00 during Ramadan, so transitions move
    ]
}

/// The zones whose offset changed in 2024 (about a third of them), found once per process.
fn zones_with_transitions() -> Vec<Tz> {
    static ZONES: std::sync::OnceLock<Vec<Tz>> = std::sync::OnceLock::new();
    ZONES
        .get_or_init(|| {
            let start = midnight(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
            TZ_VARIANTS
                .iter()
                .copied()
                .filter(|tz| next_transition(*tz, start).is_some_and(|t| t < start + 366 * DAY))
                .collect()
        })
        .clone()
}

fn zone() -> impl Strategy<Value = Tz> {
    prop_oneof![
        2 => proptest::sample::select(TZ_VARIANTS.to_vec()),
        2 => proptest::sample::select(zones_with_transitions()),
        1 => proptest::sample::select(notable_zones()),
    ]
}

/// A time of day for interval end points, biased to the small hours where transitions are.
fn point() -> impl Strategy<Value = u16> {
    prop_oneof![
        2 => 0u16..=1440,
        1 => 0u16..=300,
        1 => 1260u16..=1440,
        1 => (0u16..=48).prop_map(|half_hours| half_hours * 30),
    ]
}

/// One day: 0–4 intervals from distinct points, optionally starting at 00:00, ending at 24:00,
/// or with its first interval split in two touching ones.
fn day(force_midnights: bool) -> impl Strategy<Value = Vec<(u16, u16)>> {
    (
        proptest::collection::btree_set(point(), 0..=8),
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(move |(points, at_start, at_end, split)| {
            day_intervals(
                &points,
                at_start || force_midnights,
                at_end || force_midnights,
                split,
            )
        })
}

fn day_intervals(
    points: &BTreeSet<u16>,
    at_start: bool,
    at_end: bool,
    split: bool,
) -> Vec<(u16, u16)> {
    let points: Vec<u16> = points.iter().copied().collect();
    let mut intervals: Vec<(u16, u16)> = points
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect();
    if let Some(first) = intervals.first_mut().filter(|_| at_start) {
        first.0 = 0;
    }
    if let Some(last) = intervals.last_mut().filter(|_| at_end) {
        last.1 = 1440;
    }
    if split && intervals.first().is_some_and(|(f, t)| t - f >= 2) {
        let (f, t) = intervals[0];
        let middle = f + (t - f) / 2;
        intervals[0] = (f, middle);
        intervals.insert(1, (middle, t));
    }
    intervals
}

fn week() -> impl Strategy<Value = [Vec<(u16, u16)>; 7]> {
    let days = |force| {
        [
            day(force),
            day(force),
            day(force),
            day(force),
            day(force),
            day(force),
            day(force),
        ]
    };
    prop_oneof![
        4 => days(false),
        1 => days(true),
        1 => Just(std::array::from_fn(|_| vec![(0, 1440)])),
    ]
}

fn buffer() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 0u32..=120]
}

fn settings() -> impl Strategy<Value = SlotSettings> {
    (
        5u32..=240,
        prop_oneof![5u32..=240, (1u32..=8).prop_map(|k| k * 15)],
        buffer(),
        buffer(),
        prop_oneof![Just(0u32), 0u32..=5000],
        1u32..=15,
    )
        .prop_map(
            |(duration, step, before, after, notice, horizon)| SlotSettings {
                duration_minutes: duration,
                step_minutes: step,
                buffer_before_minutes: before,
                buffer_after_minutes: after,
                minimum_notice_minutes: notice,
                horizon_days: horizon,
            },
        )
}

/// Spans as (offset from the range start, length) in minutes, mapped later.
fn spans(max: usize) -> impl Strategy<Value = Vec<(i64, i64)>> {
    proptest::collection::vec((-2 * DAY..11 * DAY, 1i64..=3000), 0..=max)
}

fn bookings() -> impl Strategy<Value = Vec<(i64, i64, u32, u32)>> {
    proptest::collection::vec((-DAY..11 * DAY, 5i64..=240, buffer(), buffer()), 0..=5)
}

/// Where the range starts: a random minute of 2020–2035, often just before (or just after) a
/// transition of the zone, and half the time at a local midnight as the API asks.
#[derive(Debug, Clone)]
struct RangeDraw {
    year: i32,
    day_of_year: u32,
    minute_of_day: i64,
    near_transition: bool,
    position: i64,
    at_midnight: bool,
    days: i64,
    extra_minutes: i64,
}

fn range_draw() -> impl Strategy<Value = RangeDraw> {
    (
        2020i32..=2035,
        0u32..365,
        0i64..DAY,
        proptest::bool::weighted(0.75),
        0i64..=12 * DAY,
        any::<bool>(),
        1i64..=10,
        0i64..DAY,
    )
        .prop_map(
            |(
                year,
                day_of_year,
                minute_of_day,
                near_transition,
                position,
                at_midnight,
                days,
                extra_minutes,
            )| {
                RangeDraw {
                    year,
                    day_of_year,
                    minute_of_day,
                    near_transition,
                    position,
                    at_midnight,
                    days,
                    extra_minutes,
                }
            },
        )
}

/// `[from, to)` in minutes for the zone, and the transition it was placed at, if any.
fn place_range(tz: Tz, draw: &RangeDraw) -> (i64, i64, Option<i64>) {
    let start_of_year = NaiveDate::from_ymd_opt(draw.year, 1, 1).unwrap();
    let seed = minutes_of(
        (start_of_year + Duration::days(i64::from(draw.day_of_year)))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc(),
    ) + draw.minute_of_day;
    // 1 to 10 days, or a whole number of days from a local midnight.
    let length = if draw.at_midnight {
        draw.days * DAY
    } else {
        (draw.days - 1) * DAY + DAY.min(draw.extra_minutes + 1)
    };
    let mut from = seed;
    let transition = draw
        .near_transition
        .then(|| next_transition(tz, seed))
        .flatten();
    if let Some(transition) = transition {
        // The transition lies in the range or up to half a day either side of it.
        from = transition - draw.position % (length + DAY) + 12 * HOUR;
    }
    if draw.at_midnight {
        let date = DateTime::from_timestamp((from + offset_minutes(tz, from)) * 60, 0)
            .unwrap()
            .date_naive();
        if let Some(midnight) = tz
            .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
        {
            from = minutes_of(midnight.with_timezone(&Utc));
        }
        let end_date = date + Duration::days(draw.days);
        let to = tz
            .from_local_datetime(&end_date.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .map_or(from + length, |t| minutes_of(t.with_timezone(&Utc)));
        return (from, to, transition);
    }
    (from, from + length, transition)
}

/// Puts two intervals touching at the wall time of a transition (± jitter) on its weekday, so
/// that many interval ends fall in a gap or an overlap.
fn pin_to_transition(
    tz: Tz,
    days: &mut [Vec<(u16, u16)>; 7],
    transition: i64,
    pin: (i64, i64, i64),
) {
    let (jitter, before, after) = pin;
    let wall = transition - 1 + offset_minutes(tz, transition - 1) + 1 + jitter;
    let weekday = DateTime::from_timestamp(wall * 60, 0).unwrap().weekday();
    let at = wall.rem_euclid(DAY);
    let mut intervals = Vec::new();
    if at > 0 {
        intervals.push(((at - before).max(0), at));
    }
    if at < DAY {
        intervals.push((at, (at + after).min(DAY)));
    }
    days[weekday.num_days_from_monday() as usize] = intervals
        .into_iter()
        .map(|(f, t)| (u16::try_from(f).unwrap(), u16::try_from(t).unwrap()))
        .collect();
}

fn case() -> impl Strategy<Value = Case> {
    (
        zone(),
        week(),
        settings(),
        range_draw(),
        -3 * DAY..=3 * DAY,
        bookings(),
        spans(3),
        spans(3),
        proptest::option::weighted(0.7, (-90i64..=90, 1i64..=300, 1i64..=300)),
    )
        .prop_map(
            |(tz, mut days, settings, draw, now, bookings, available, blocking, pin)| {
                let (from, to, transition) = place_range(tz, &draw);
                if let (Some(transition), Some(pin)) = (transition, pin) {
                    pin_to_transition(tz, &mut days, transition, pin);
                }
                let span = |(offset, length): (i64, i64)| Span {
                    start: instant(from + offset),
                    end: instant(from + offset + length),
                };
                Case {
                    tz,
                    days,
                    settings,
                    bookings: bookings
                        .into_iter()
                        .map(|(offset, length, before, after)| BookedTime {
                            start: instant(from + offset),
                            end: instant(from + offset + length),
                            buffer_before_minutes: before,
                            buffer_after_minutes: after,
                        })
                        .collect(),
                    available: available.into_iter().map(span).collect(),
                    blocking: blocking.into_iter().map(span).collect(),
                    now: instant(from + now),
                    from: instant(from),
                    to: instant(to),
                }
            },
        )
}

/// The same cases with seconds added to every instant, which the minute oracle cannot take
/// but the invariants can.
fn case_with_seconds() -> impl Strategy<Value = Case> {
    (
        case(),
        proptest::collection::vec(0i64..60, 24),
        any::<bool>(),
    )
        .prop_map(|(mut case, seconds, on)| {
            if on {
                let mut next = seconds.into_iter().cycle();
                let mut shift =
                    |t: &mut DateTime<Utc>| *t += Duration::seconds(next.next().unwrap());
                for booking in &mut case.bookings {
                    shift(&mut booking.start);
                    shift(&mut booking.end);
                }
                for span in case.available.iter_mut().chain(case.blocking.iter_mut()) {
                    shift(&mut span.start);
                    shift(&mut span.end);
                }
                shift(&mut case.now);
                shift(&mut case.from);
                shift(&mut case.to);
            }
            case
        })
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/// The zone's offset at every minute instant of `[start, start + offsets.len())`.
struct Clock {
    start: i64,
    offsets: Vec<i64>,
}

impl Clock {
    fn new(tz: Tz, start: i64, end: i64) -> Self {
        Self {
            start,
            offsets: (start..end)
                .map(|minute| offset_minutes(tz, minute))
                .collect(),
        }
    }

    /// The wall time shown at a minute instant, as minutes since the epoch read as UTC.
    fn wall(&self, minute: i64) -> i64 {
        minute + self.offsets[usize::try_from(minute - self.start).expect("inside the clock")]
    }

    /// "Compatible" resolution by scanning: offsets lie in −12 h..=+14 h, so the instants that
    /// can show `wall` are within `[wall − 14 h, wall + 12 h]`. The earliest that does wins; if
    /// none does, `wall` was skipped by a transition at some `m` (the wall time jumps from below
    /// it at `m − 1` to above it at `m`), and it is read with the offset in effect before it.
    fn resolve(&self, wall: i64) -> i64 {
        let candidates = wall - 14 * HOUR..=wall + 12 * HOUR;
        if let Some(minute) = candidates.clone().find(|&m| self.wall(m) == wall) {
            return minute;
        }
        let transition = candidates
            .skip(1)
            .find(|&m| self.wall(m - 1) < wall && wall < self.wall(m))
            .expect("a wall time without an instant lies in a gap");
        let offset_before = self.wall(transition - 1) - (transition - 1);
        wall - offset_before
    }
}

/// The wall time of a date's midnight, as minutes since the epoch read as UTC.
fn midnight(date: NaiveDate) -> i64 {
    minutes_of(date.and_hms_opt(0, 0, 0).unwrap().and_utc())
}

fn local_date(tz: Tz, minute: i64) -> NaiveDate {
    DateTime::from_timestamp((minute + offset_minutes(tz, minute)) * 60, 0)
        .unwrap()
        .date_naive()
}

/// Per-minute counts over `[start, start + n)`, as prefix sums.
struct Counts {
    start: i64,
    prefix: Vec<u32>,
}

impl Counts {
    fn new(start: i64, end: i64, spans: impl Iterator<Item = (i64, i64)>) -> Self {
        let mut marks = vec![0u32; usize::try_from(end - start).unwrap()];
        for (s, e) in spans {
            for minute in s.max(start)..e.min(end) {
                marks[usize::try_from(minute - start).unwrap()] += 1;
            }
        }
        let mut prefix = Vec::with_capacity(marks.len() + 1);
        prefix.push(0);
        for mark in marks {
            prefix.push(prefix.last().unwrap() + mark);
        }
        Self { start, prefix }
    }

    /// Whether any minute of `[s, e)` is marked.
    fn any(&self, s: i64, e: i64) -> bool {
        let index = |m: i64| usize::try_from(m - self.start).expect("inside the counted window");
        assert!(index(e) < self.prefix.len(), "outside the counted window");
        self.prefix[index(e)] > self.prefix[index(s)]
    }
}

fn oracle(case: &Case) -> Vec<i64> {
    let from = minutes_of(case.from);
    let from_date = local_date(case.tz, from);
    let first_date = from_date - Duration::days(LOOKBACK_DAYS);
    // Painting all LOOKBACK_DAYS is slow in a debug build, so first paint only three days before
    // the range; that answer is kept only if no run reaching the range might start earlier.
    oracle_pass(case, from_date - Duration::days(3), first_date).unwrap_or_else(|| {
        oracle_pass(case, first_date, first_date).expect("the full window decides")
    })
}

/// The rule by brute force, painting the dates from `paint_first` (the rule's first date is
/// `first_date`). `None` if a run that reaches the range may begin before the painted dates.
fn oracle_pass(case: &Case, paint_first: NaiveDate, first_date: NaiveDate) -> Option<Vec<i64>> {
    let tz = case.tz;
    let (from, to, now) = (
        minutes_of(case.from),
        minutes_of(case.to),
        minutes_of(case.now),
    );
    let duration = i64::from(case.settings.duration_minutes);
    let step = i64::from(case.settings.step_minutes);
    let last_date = local_date(tz, to) + Duration::days(1);
    let complete = paint_first == first_date;

    // The window of instants: every painted span, exception and buffered booking fits in it.
    let exceptions = case
        .available
        .iter()
        .chain(&case.blocking)
        .map(|s| (minutes_of(s.start), minutes_of(s.end)));
    let bookings: Vec<(i64, i64, i64, i64)> = case
        .bookings
        .iter()
        .map(|b| {
            (
                minutes_of(b.start),
                minutes_of(b.end),
                i64::from(b.buffer_before_minutes),
                i64::from(b.buffer_after_minutes),
            )
        })
        .collect();
    let mut start = midnight(paint_first) - 15 * HOUR;
    let mut end = midnight(last_date + Duration::days(1)) + 15 * HOUR;
    for (s, e) in exceptions.chain(bookings.iter().map(|b| (b.0, b.1))) {
        start = start.min(s - 4 * HOUR);
        end = end.max(e + 4 * HOUR);
    }
    let clock = Clock::new(tz, start - DAY, end + DAY);

    // Step 1: paint the spans minute by minute.
    let mut available = vec![false; usize::try_from(end - start).unwrap()];
    let mut paint = |s: i64, e: i64| {
        for minute in s..e {
            available[usize::try_from(minute - start).unwrap()] = true;
        }
    };
    let mut date = paint_first;
    while date <= last_date {
        for &(f, t) in &case.days[date.weekday().num_days_from_monday() as usize] {
            let s = clock.resolve(midnight(date) + i64::from(f));
            let e = clock.resolve(midnight(date) + i64::from(t));
            if s < e {
                paint(s, e);
            }
        }
        date += Duration::days(1);
    }
    for span in &case.available {
        paint(minutes_of(span.start), minutes_of(span.end));
    }
    assert!(
        !available[0] && !available[available.len() - 1],
        "the window holds every span"
    );

    // Spans of dates before `paint_first` end before this instant (their end wall time is at
    // most its midnight, and an instant is at most 12 h after its wall time), so from here on
    // the painted minutes are the rule's.
    let trusted_from = midnight(paint_first) + 12 * HOUR;
    // Only the full pass reaches the first generated date; the other trusts no run that could
    // start there.
    let first_instant = complete.then(|| clock.resolve(midnight(first_date)));

    let blocked = Counts::new(
        start,
        end,
        case.blocking
            .iter()
            .map(|s| (minutes_of(s.start), minutes_of(s.end))),
    );
    let meetings = Counts::new(start, end, bookings.iter().map(|b| (b.0, b.1)));
    let buffered = Counts::new(start, end, bookings.iter().map(|b| (b.0 - b.2, b.1 + b.3)));
    let before = i64::from(case.settings.buffer_before_minutes);
    let after = i64::from(case.settings.buffer_after_minutes);
    let earliest = now + i64::from(case.settings.minimum_notice_minutes);
    let horizon = now + i64::from(case.settings.horizon_days) * DAY;

    let mut starts = Vec::new();
    let mut minute = start;
    while minute < end {
        if !available[usize::try_from(minute - start).unwrap()] {
            minute += 1;
            continue;
        }
        // A maximal run [s, e) of available minutes: one merged span.
        let s = minute;
        while minute < end && available[usize::try_from(minute - start).unwrap()] {
            minute += 1;
        }
        let e = minute;
        if e - duration < from || s >= to {
            continue;
        }
        if !complete && s <= trusted_from {
            return None;
        }
        let anchor = if first_instant == Some(s) { 0 } else { s };
        for t in s.max(from)..=(e - duration).min(to - 1) {
            if (t - anchor).rem_euclid(step) != 0 {
                continue;
            }
            let exempt = case
                .available
                .iter()
                .any(|a| minutes_of(a.start) <= t && t + duration <= minutes_of(a.end));
            let dropped = (blocked.any(t, t + duration) && !exempt)
                || meetings.any(t - before, t + duration + after)
                || buffered.any(t, t + duration)
                || t < earliest
                || t >= horizon;
            if !dropped {
                starts.push(t);
            }
        }
    }
    Some(starts)
}

// ---------------------------------------------------------------------------------------------
// Helpers for the invariants (these may use the public API)
// ---------------------------------------------------------------------------------------------

/// The merged spans of step 1, built with `resolve_local`, and the first generated instant.
fn merged_spans(case: &Case) -> (Vec<Span>, DateTime<Utc>) {
    let tz = case.tz;
    let first_date = case.from.with_timezone(&tz).date_naive() - Duration::days(LOOKBACK_DAYS);
    let last_date = case.to.with_timezone(&tz).date_naive() + Duration::days(1);
    let wall = |date: NaiveDate, minutes: u16| {
        date.and_hms_opt(0, 0, 0).unwrap() + Duration::minutes(i64::from(minutes))
    };
    let mut spans = Vec::new();
    for date in first_date.iter_days().take_while(|d| *d <= last_date) {
        for &(f, t) in &case.days[date.weekday().num_days_from_monday() as usize] {
            let span = Span {
                start: resolve_local(tz, wall(date, f)),
                end: resolve_local(tz, wall(date, t)),
            };
            if span.start < span.end {
                spans.push(span);
            }
        }
    }
    spans.extend(case.available.iter().copied());
    spans.sort_by_key(|s| s.start);
    let mut merged: Vec<Span> = Vec::new();
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    (merged, resolve_local(tz, wall(first_date, 0)))
}

fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Whether step 3 drops `t`, straight from its wording.
fn blocked(case: &Case, t: DateTime<Utc>) -> bool {
    let minutes = |m: u32| Duration::minutes(i64::from(m));
    let s = &case.settings;
    let meeting = (t, t + minutes(s.duration_minutes));
    let padded = (
        t - minutes(s.buffer_before_minutes),
        meeting.1 + minutes(s.buffer_after_minutes),
    );
    let by_exception = case
        .blocking
        .iter()
        .any(|c| overlaps(meeting, (c.start, c.end)))
        && !case
            .available
            .iter()
            .any(|a| a.start <= meeting.0 && meeting.1 <= a.end);
    let by_booking = case.bookings.iter().any(|b| {
        overlaps(padded, (b.start, b.end))
            || overlaps(
                meeting,
                (
                    b.start - minutes(b.buffer_before_minutes),
                    b.end + minutes(b.buffer_after_minutes),
                ),
            )
    });
    by_exception || by_booking
}

fn on_grid(t: DateTime<Utc>, anchor: DateTime<Utc>, step_minutes: u32) -> bool {
    let gap = t - anchor;
    gap.subsec_nanos() == 0 && gap.num_seconds() % (i64::from(step_minutes) * 60) == 0
}

/// The anchor of a merged span (step 2).
fn anchor(span: &Span, first_instant: DateTime<Utc>) -> DateTime<Utc> {
    if span.start == first_instant {
        DateTime::UNIX_EPOCH
    } else {
        span.start
    }
}

fn config() -> Config {
    // 256 cases unless PROPTEST_CASES says otherwise (e.g. 5000 for a longer hunt). Regression
    // files would be written next to this file; a failing case is printed instead.
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn slot_starts_equals_the_minute_by_minute_brute_force(case in case()) {
        let expected: Vec<DateTime<Utc>> = oracle(&case).into_iter().map(instant).collect();
        prop_assert_eq!(case.slots(), expected);
    }

    #[test]
    fn every_slot_is_on_the_grid_of_one_span_unblocked_and_within_range_notice_and_horizon(
        case in case_with_seconds()
    ) {
        let slots = case.slots();
        let (spans, first_instant) = merged_spans(&case);
        let s = &case.settings;
        let duration = Duration::minutes(i64::from(s.duration_minutes));
        prop_assert!(slots.windows(2).all(|pair| pair[0] < pair[1]), "ascending, no duplicates");
        for &t in &slots {
            let span = spans.iter().find(|span| span.start <= t && t + duration <= span.end);
            prop_assert!(span.is_some(), "{} lies in no merged span", t);
            prop_assert!(on_grid(t, anchor(span.unwrap(), first_instant), s.step_minutes), "{} is off the grid", t);
            prop_assert!(!blocked(&case, t), "{} is blocked", t);
            prop_assert!(case.from <= t && t < case.to, "{} is outside the range", t);
            prop_assert!(t >= case.now + Duration::minutes(i64::from(s.minimum_notice_minutes)));
            prop_assert!(t < case.now + Duration::days(i64::from(s.horizon_days)));
        }
        // And nothing the rule allows is missing: walk every span's grid (checked above to be
        // the only place slots come from) and apply steps 3–5 to each point.
        let step = Duration::minutes(i64::from(s.step_minutes));
        let mut expected = Vec::new();
        for span in &spans {
            let anchor = anchor(span, first_instant);
            let lower = span.start.max(case.from);
            let mut t = anchor + step * i32::try_from(((lower - anchor).num_seconds().max(0)) / step.num_seconds()).unwrap();
            while t < case.to && t + duration <= span.end {
                if t >= lower && !blocked(&case, t) && within_notice_and_horizon(t, case.now, s) {
                    expected.push(t);
                }
                t += step;
            }
        }
        prop_assert_eq!(slots, expected);
    }

    #[test]
    fn the_slots_of_a_range_do_not_depend_on_the_range_asked_for(
        case in case(), earlier in 0i64..=20, later in 0i64..=20
    ) {
        let schedule = case.schedule();
        let wider = slot_starts(
            &case.availability(&schedule),
            &case.bookings,
            &case.settings,
            case.now,
            case.from - Duration::days(earlier) - Duration::minutes(earlier * 37),
            case.to + Duration::days(later) + Duration::minutes(later * 11),
        );
        let inside: Vec<_> = wider.into_iter().filter(|t| case.from <= *t && *t < case.to).collect();
        prop_assert_eq!(case.slots(), inside);
    }

    #[test]
    fn slot_starts_are_the_candidates_within_notice_and_horizon(case in case_with_seconds()) {
        let schedule = case.schedule();
        let candidates = candidate_starts(&case.availability(&schedule), &case.bookings, &case.settings, case.from, case.to);
        prop_assert!(candidates.windows(2).all(|pair| pair[0] < pair[1]));
        let kept: Vec<_> = candidates.into_iter().filter(|t| within_notice_and_horizon(*t, case.now, &case.settings)).collect();
        prop_assert_eq!(case.slots(), kept);
    }
}

/// The transition finder of the strategies works (otherwise "near a transition" would be
/// silently random).
#[test]
fn the_strategy_finds_the_transitions_of_a_zone() {
    let berlin = chrono_tz::Europe::Berlin;
    let start = minutes_of(
        DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let spring = next_transition(berlin, start).unwrap();
    assert_eq!(
        instant(spring),
        DateTime::parse_from_rfc3339("2024-03-31T01:00:00Z").unwrap()
    );
    let autumn = next_transition(berlin, spring).unwrap();
    assert_eq!(
        instant(autumn),
        DateTime::parse_from_rfc3339("2024-10-27T01:00:00Z").unwrap()
    );
    assert_eq!(next_transition(chrono_tz::Asia::Kathmandu, start), None);
}

/// The oracle's own resolution agrees with the worked examples of the spec.
#[test]
fn the_oracle_resolves_gaps_and_overlaps_like_the_spec_examples() {
    let berlin = chrono_tz::Europe::Berlin;
    let day = midnight(NaiveDate::from_ymd_opt(2024, 3, 31).unwrap());
    let clock = Clock::new(berlin, day - 2 * DAY, day + 2 * DAY);
    assert_eq!(
        instant(clock.resolve(day + 150)),
        DateTime::parse_from_rfc3339("2024-03-31T01:30:00Z").unwrap()
    );
    let day = midnight(NaiveDate::from_ymd_opt(2024, 10, 27).unwrap());
    let clock = Clock::new(berlin, day - 2 * DAY, day + 2 * DAY);
    assert_eq!(
        instant(clock.resolve(day + 150)),
        DateTime::parse_from_rfc3339("2024-10-27T00:30:00Z").unwrap()
    );
}
