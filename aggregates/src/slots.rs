//! The slot rule (api.md section 5, "How slots are computed"): the one pure function that
//! decides which start instants a meeting type offers.
//!
//! The rule in five steps, with the conventions the spec leaves to the implementation:
//!
//! 1. **Spans.** Every weekly interval of every local date from
//!    `local date of from − LOOKBACK_DAYS` through `local date of to + 1` becomes a span of
//!    instants, its ends resolved with [`resolve_local`]; a span whose resolved end is not after
//!    its start (only in pathological DST cases) is dropped. Available exceptions are added as
//!    spans. Spans that touch or overlap are merged, so `monday 22:00–24:00` and
//!    `tuesday 00:00–02:00` become one span.
//! 2. **Grid.** In a merged span `[s, e)` the candidates are `anchor + k·step` with `s ≤ t` and
//!    `t + duration ≤ e`. The anchor is `s`, except for a span that starts exactly at the first
//!    generated instant: it may really begin before the dates we generated (a 24/7 schedule is
//!    one endless span), so it is anchored on the Unix epoch grid instead, which keeps its
//!    slots independent of the range asked for. Steps count elapsed time.
//! 3. **Blocks.** Blocking exceptions remove the candidates they overlap unless the candidate
//!    lies inside one available exception; bookings (with both sides' buffers) always remove.
//! 4. **Now.** Minimum notice and horizon ([`within_notice_and_horizon`]).
//! 5. **Range.** Only starts in `[from, to)` are returned, ascending, without duplicates.
//!
//! Everything here is arithmetic on instants: no loop runs per minute, and besides the result
//! only a few small vectors (spans and blocked ranges) are allocated.

use chrono::{
    DateTime, Datelike, Duration, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::schedule::WeeklySchedule;

/// How far back (in local days) spans are generated so a span's grid anchor does not depend on
/// the requested range.
///
/// A span that reaches into the range is anchored at its own start, so generation must reach
/// back to that start. A weekly schedule with any gap in its week yields spans shorter than
/// eight days, and an available exception lasts at most 31 days (section 3), so 40 days back
/// sees the start of every span that reaches the range unless exceptions are chained end to
/// end. A span still running at the first generated instant is treated as endless and anchored
/// on the epoch grid, which is exact for a schedule without gaps (24/7).
pub const LOOKBACK_DAYS: i64 = 40;

/// A half-open span of instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// An active booking of the host with the buffers it was booked with (minutes).
///
/// The buffers are the booking's own (its meeting type's at booking time), not the settings of
/// the meeting type being computed: each side keeps its own buffers clear of the other's
/// meeting (step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookedTime {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub buffer_before_minutes: u32,
    pub buffer_after_minutes: u32,
}

/// The meeting type's settings that the rule reads (all minutes except `horizon_days`).
///
/// The values are validated where a meeting type is created (section 4: duration and step
/// 5–480 and so on); the rule only guards against a zero step, which would make the grid
/// endless, by offering nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSettings {
    pub duration_minutes: u32,
    pub step_minutes: u32,
    pub buffer_before_minutes: u32,
    pub buffer_after_minutes: u32,
    pub minimum_notice_minutes: u32,
    pub horizon_days: u32,
}

/// Where the host is available: the weekly schedule in its zone plus exceptions.
///
/// Exceptions are borrowed slices so a projector can pass what it holds without copying;
/// their order does not matter.
#[derive(Debug, Clone, Copy)]
pub struct Availability<'a> {
    pub schedule: &'a WeeklySchedule,
    pub tz: Tz,
    pub available_exceptions: &'a [Span],
    pub blocking_exceptions: &'a [Span],
}

/// Resolves a local wall time with the "compatible" rule (RFC 9557 / Temporal): a time in a
/// spring-forward gap moves forward by the gap's length; an ambiguous time (fall-back overlap)
/// takes the earlier instant.
///
/// Moving forward by the gap's length is the same as reading the wall time with the offset in
/// effect just before the gap: Berlin's 2024-03-31 02:30 is read at +01:00, giving 01:30Z,
/// which is 03:30 local.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(instant) => instant.with_timezone(&Utc),
        // chrono-tz lists the earlier instant first; `min` keeps us right if that ever changes.
        MappedLocalTime::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        MappedLocalTime::None => resolve_in_gap(tz, local),
    }
}

/// The instant of a wall time that falls in a gap: `local − offset before the gap`.
///
/// chrono-tz does not expose transitions, so we find the one that skipped `local` by bisection
/// over instants. Let `wall(u) = u + offset(u)`. One day before `local` read as UTC, `wall` is
/// at most `local` (offsets are below 24 h); one day after it is above `local`. Bisection
/// keeps `wall(lo) ≤ local < wall(hi)` until `hi = lo + 1 s`. Between two adjacent seconds
/// without a transition `wall` grows by exactly one second, so `local` would have an instant,
/// which it has not (we are in a gap); hence a transition happens at `hi`, it skipped `local`,
/// and `offset(lo)` is the offset in effect just before it. Unlike taking the offset one day
/// earlier, this stays right when another transition lies within that day (it happens, e.g.
/// zones that changed their standard offset days before a DST change). About 18 offset
/// look-ups, and only for wall times in a gap, which are rare.
fn resolve_in_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let wall = |instant: DateTime<Utc>| {
        instant.naive_utc()
            + Duration::seconds(i64::from(
                tz.offset_from_utc_datetime(&instant.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ))
    };
    let as_utc = local.and_utc();
    let mut lo = as_utc - Duration::days(1);
    let mut hi = as_utc + Duration::days(1);
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if wall(mid) <= local {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let offset_before = tz.offset_from_utc_datetime(&lo.naive_utc()).fix();
    (local - Duration::seconds(i64::from(offset_before.local_minus_utc()))).and_utc()
}

/// Step 4 as a predicate: `t >= now + minimum notice` and `t < now + horizon_days·24h`.
///
/// The horizon counts elapsed 24-hour days, not calendar days in some zone, as the spec says.
pub fn within_notice_and_horizon(
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    settings: &SlotSettings,
) -> bool {
    let (earliest, end) = notice_and_horizon(now, settings);
    earliest <= start && start < end
}

/// Steps 1–3 and 5 of the rule: every start offered in `[from, to)`, ignoring "now".
pub fn candidate_starts(
    availability: &Availability,
    bookings: &[BookedTime],
    settings: &SlotSettings,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    starts_between(availability, bookings, settings, from, to, from, to)
}

/// The whole rule, steps 1–5.
///
/// Step 4 narrows the window in which candidates are listed, but the spans are still
/// generated from `from` and `to`: narrowing those would move the first generated date and
/// could change a span's anchor, and the answer must be the rule's for the range asked.
pub fn slot_starts(
    availability: &Availability,
    bookings: &[BookedTime],
    settings: &SlotSettings,
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let (earliest, end) = notice_and_horizon(now, settings);
    starts_between(
        availability,
        bookings,
        settings,
        from,
        to,
        from.max(earliest),
        to.min(end),
    )
}

/// `[now + minimum notice, now + horizon)`.
fn notice_and_horizon(
    now: DateTime<Utc>,
    settings: &SlotSettings,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        now + Duration::minutes(i64::from(settings.minimum_notice_minutes)),
        now + Duration::days(i64::from(settings.horizon_days)),
    )
}

/// The rule with spans generated for `[from, to)` and starts listed in `[lower, upper)`.
fn starts_between(
    availability: &Availability,
    bookings: &[BookedTime],
    settings: &SlotSettings,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    if settings.step_minutes == 0 || lower >= upper {
        return Vec::new();
    }
    let duration = Duration::minutes(i64::from(settings.duration_minutes));
    let step = Duration::minutes(i64::from(settings.step_minutes));

    // Step 1.
    let (spans, first_instant) = merged_spans(availability, from, to);

    // Step 3, prepared: the set of starts each kind of block forbids, as sorted ranges of t.
    let blocks = Blocks::new(availability, bookings, settings, duration);

    // Step 2, then 3 and 5. Merged spans are disjoint and sorted, so starts come out
    // ascending and unique.
    let mut starts = Vec::new();
    let mut cursor = blocks.cursor();
    for span in &spans {
        if span.end - duration < lower.max(span.start) {
            continue;
        }
        if span.start >= upper {
            break;
        }
        let anchor = if span.start == first_instant {
            epoch_grid_floor(span.start, settings.step_minutes)
        } else {
            span.start
        };
        let earliest = lower.max(span.start);
        let mut t = anchor + step * steps_to_reach(earliest - anchor, settings.step_minutes);
        while t < upper && t + duration <= span.end {
            if !cursor.blocked(t) {
                starts.push(t);
            }
            t += step;
        }
    }
    starts
}

/// Step 1: the merged spans of the generated dates plus available exceptions, sorted, and the
/// first generated instant (the anchor rule of step 2 needs it).
fn merged_spans(
    availability: &Availability,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Vec<Span>, DateTime<Utc>) {
    let tz = availability.tz;
    let first_date = from.with_timezone(&tz).date_naive() - Duration::days(LOOKBACK_DAYS);
    let last_date = to.with_timezone(&tz).date_naive() + Duration::days(1);
    let first_instant = resolve_local(tz, at_minute(first_date, 0));

    let days = usize::try_from((last_date - first_date).num_days() + 1).unwrap_or(0);
    let mut spans = Vec::with_capacity(days * 2 + availability.available_exceptions.len());
    for date in first_date.iter_days().take(days) {
        for interval in availability.schedule.intervals(date.weekday()) {
            let start = resolve_local(tz, at_minute(date, interval.from.minutes()));
            let end = resolve_local(tz, at_minute(date, interval.to.minutes()));
            // Only a start in a gap followed closely by an end after it can invert; such an
            // interval offers no time.
            if start < end {
                spans.push(Span { start, end });
            }
        }
    }
    spans.extend(
        availability
            .available_exceptions
            .iter()
            .filter(|span| span.start < span.end),
    );
    // Schedule spans arrive nearly sorted; the sort is cheap and makes exceptions fit in.
    spans.sort_unstable_by_key(|span| span.start);
    spans.dedup_by(|next, current| {
        if next.start <= current.end {
            current.end = current.end.max(next.end);
            true
        } else {
            false
        }
    });
    (spans, first_instant)
}

/// The wall time `minutes` after `date`'s midnight; 1440 (`24:00`) is the next midnight.
fn at_minute(date: NaiveDate, minutes: u16) -> NaiveDateTime {
    date.and_time(chrono::NaiveTime::MIN) + Duration::minutes(i64::from(minutes))
}

/// The latest instant at or before `instant` that lies a whole number of steps after the epoch.
fn epoch_grid_floor(instant: DateTime<Utc>, step_minutes: u32) -> DateTime<Utc> {
    let step = i64::from(step_minutes) * 60;
    let seconds = instant.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(step), 0)
        .expect("an earlier whole second of a valid instant is valid")
}

/// The smallest k ≥ 0 with `k·step ≥ gap`.
fn steps_to_reach(gap: Duration, step_minutes: u32) -> i32 {
    if gap <= Duration::zero() {
        return 0;
    }
    let step = i64::from(step_minutes) * 60;
    let seconds = gap.num_seconds();
    let mut k = seconds / step;
    if seconds % step != 0 || gap.subsec_nanos() != 0 {
        k += 1;
    }
    // Spans are at most a few hundred days long, far below i32::MAX steps.
    i32::try_from(k).unwrap_or(i32::MAX)
}

/// Step 3 as sets of forbidden starts.
///
/// Each condition of step 3 is an inequality on `t` alone. With `d` the duration and `bb`/`ba`
/// the settings' buffers, a blocking exception `[c, e)` forbids the open range
/// `c − d < t < e`; a booking `b` forbids `b.start − d − ba < t < b.end + bb` (our buffers
/// against its meeting) and `b.start − b.before − d < t < b.end + b.after` (our meeting
/// against its buffers). An available exception `[a, z)` exempts the closed range
/// `a ≤ t ≤ z − d` from blocking exceptions. Merged and sorted, these are walked with one
/// index each while the candidates ascend.
struct Blocks {
    booked: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    blocking: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    exempt: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Blocks {
    fn new(
        availability: &Availability,
        bookings: &[BookedTime],
        settings: &SlotSettings,
        duration: Duration,
    ) -> Self {
        let minutes = |m: u32| Duration::minutes(i64::from(m));
        let ours_before = minutes(settings.buffer_before_minutes);
        let ours_after = minutes(settings.buffer_after_minutes);
        let mut booked = Vec::with_capacity(bookings.len() * 2);
        for b in bookings {
            booked.push((b.start - duration - ours_after, b.end + ours_before));
            booked.push((
                b.start - minutes(b.buffer_before_minutes) - duration,
                b.end + minutes(b.buffer_after_minutes),
            ));
        }
        let blocking = availability
            .blocking_exceptions
            .iter()
            .map(|c| (c.start - duration, c.end))
            .collect();
        let exempt = if availability.blocking_exceptions.is_empty() {
            Vec::new()
        } else {
            availability
                .available_exceptions
                .iter()
                .map(|a| (a.start, a.end - duration))
                .filter(|(first, last)| first <= last)
                .collect()
        };
        Self {
            booked: merge_open(booked),
            blocking: merge_open(blocking),
            exempt: merge_closed(exempt),
        }
    }

    fn cursor(&self) -> BlockCursor<'_> {
        BlockCursor {
            blocks: self,
            booked: 0,
            blocking: 0,
            exempt: 0,
        }
    }
}

/// Sorts open ranges `(lo, hi)` and merges those that share a point; empty ones go.
fn merge_open(
    mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    ranges.retain(|(lo, hi)| lo < hi);
    ranges.sort_unstable();
    // Ranges that only touch stay apart: the shared end point belongs to neither.
    ranges.dedup_by(|next, current| {
        if next.0 < current.1 {
            current.1 = current.1.max(next.1);
            true
        } else {
            false
        }
    });
    ranges
}

/// Sorts closed ranges `[lo, hi]` and merges those that share a point.
fn merge_closed(
    mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    ranges.sort_unstable();
    ranges.dedup_by(|next, current| {
        if next.0 <= current.1 {
            current.1 = current.1.max(next.1);
            true
        } else {
            false
        }
    });
    ranges
}

/// Answers "is t blocked?" for ascending t, moving each index forward only.
struct BlockCursor<'a> {
    blocks: &'a Blocks,
    booked: usize,
    blocking: usize,
    exempt: usize,
}

impl BlockCursor<'_> {
    fn blocked(&mut self, t: DateTime<Utc>) -> bool {
        let b = self.blocks;
        in_open(&b.booked, &mut self.booked, t)
            || (in_open(&b.blocking, &mut self.blocking, t)
                && !in_closed(&b.exempt, &mut self.exempt, t))
    }
}

/// Whether `t` lies in one of the sorted, disjoint open ranges, for ascending `t`.
fn in_open(ranges: &[(DateTime<Utc>, DateTime<Utc>)], index: &mut usize, t: DateTime<Utc>) -> bool {
    while ranges.get(*index).is_some_and(|(_, hi)| *hi <= t) {
        *index += 1;
    }
    ranges.get(*index).is_some_and(|(lo, _)| *lo < t)
}

/// Whether `t` lies in one of the sorted, disjoint closed ranges, for ascending `t`.
fn in_closed(
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
    index: &mut usize,
    t: DateTime<Utc>,
) -> bool {
    while ranges.get(*index).is_some_and(|(_, hi)| *hi < t) {
        *index += 1;
    }
    ranges.get(*index).is_some_and(|(lo, _)| *lo <= t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Interval, LocalTime};
    use chrono::{NaiveTime, Timelike};
    use chrono_tz::Europe::Berlin;

    fn interval(from: &str, to: &str) -> Interval {
        Interval::new(
            LocalTime::parse(from).unwrap(),
            LocalTime::parse(to).unwrap(),
        )
        .unwrap()
    }

    /// A schedule with the given intervals on the given days (Monday = 0).
    fn schedule(days: &[(usize, &[(&str, &str)])]) -> WeeklySchedule {
        let mut all: [Vec<Interval>; 7] = Default::default();
        for (day, intervals) in days {
            all[*day] = intervals.iter().map(|(f, t)| interval(f, t)).collect();
        }
        WeeklySchedule::from_days(all).unwrap()
    }

    fn every_day(from: &str, to: &str) -> WeeklySchedule {
        WeeklySchedule::from_days(std::array::from_fn(|_| vec![interval(from, to)])).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn naive(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    fn settings(duration: u32, step: u32) -> SlotSettings {
        SlotSettings {
            duration_minutes: duration,
            step_minutes: step,
            buffer_before_minutes: 0,
            buffer_after_minutes: 0,
            minimum_notice_minutes: 0,
            horizon_days: 365,
        }
    }

    fn available(schedule: &WeeklySchedule, tz: Tz) -> Availability<'_> {
        Availability {
            schedule,
            tz,
            available_exceptions: &[],
            blocking_exceptions: &[],
        }
    }

    fn local_times(starts: &[DateTime<Utc>], tz: Tz) -> Vec<String> {
        starts
            .iter()
            .map(|t| t.with_timezone(&tz).format("%a %H:%M").to_string())
            .collect()
    }

    /// Long before every range used here, so "now" drops nothing.
    fn long_ago() -> DateTime<Utc> {
        utc("2024-01-01T00:00:00Z")
    }

    #[test]
    fn a_default_business_week_in_berlin_offers_sixteen_slots_a_weekday_and_eighty_a_week() {
        let week = WeeklySchedule::business_hours();
        let from = utc("2024-01-14T23:00:00Z"); // Monday 2024-01-15 00:00 in Berlin
        let to = from + Duration::days(7);
        let starts = slot_starts(
            &available(&week, Berlin),
            &[],
            &settings(30, 30),
            long_ago(),
            from,
            to,
        );
        assert_eq!(starts.len(), 80);
        let monday: Vec<_> = starts
            .iter()
            .filter(|t| t.with_timezone(&Berlin).weekday() == chrono::Weekday::Mon)
            .collect();
        assert_eq!(monday.len(), 16);
        assert_eq!(*monday[0], utc("2024-01-15T08:00:00Z"));
        assert_eq!(*monday[15], utc("2024-01-15T15:30:00Z"));
        assert!(starts.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn resolve_local_keeps_times_that_exist_once() {
        assert_eq!(
            resolve_local(Berlin, naive("2024-01-15 09:00")),
            utc("2024-01-15T08:00:00Z")
        );
        assert_eq!(
            resolve_local(chrono_tz::Asia::Kathmandu, naive("2024-01-15 09:00")),
            utc("2024-01-15T03:15:00Z")
        );
    }

    #[test]
    fn resolve_local_moves_a_time_in_a_gap_forward_by_the_gap_length() {
        // Berlin skips 02:00–03:00 on 2024-03-31: 02:30 is read at +01:00, i.e. 03:30 CEST.
        assert_eq!(
            resolve_local(Berlin, naive("2024-03-31 02:30")),
            utc("2024-03-31T01:30:00Z")
        );
        assert_eq!(
            resolve_local(Berlin, naive("2024-03-31 02:00")),
            utc("2024-03-31T01:00:00Z")
        );
        // Lord Howe skips only 30 minutes (+10:30 → +11:00) on 2024-10-06 at 02:00.
        assert_eq!(
            resolve_local(chrono_tz::Australia::Lord_Howe, naive("2024-10-06 02:15")),
            utc("2024-10-05T15:45:00Z")
        );
        // Santiago skips its midnight (−04:00 → −03:00) on 2024-09-08.
        assert_eq!(
            resolve_local(chrono_tz::America::Santiago, naive("2024-09-08 00:30")),
            utc("2024-09-08T04:30:00Z")
        );
    }

    #[test]
    fn resolve_local_takes_the_earlier_instant_of_an_ambiguous_time() {
        // Berlin repeats 02:00–03:00 on 2024-10-27; the first 02:30 is CEST.
        assert_eq!(
            resolve_local(Berlin, naive("2024-10-27 02:30")),
            utc("2024-10-27T00:30:00Z")
        );
        // Lord Howe repeats 01:30–02:00 on 2024-04-07 (+11:00 → +10:30).
        assert_eq!(
            resolve_local(chrono_tz::Australia::Lord_Howe, naive("2024-04-07 01:45")),
            utc("2024-04-06T14:45:00Z")
        );
    }

    #[test]
    fn an_interval_starting_in_the_spring_forward_gap_starts_after_the_gap() {
        let sunday = schedule(&[(6, &[("02:30", "05:00")])]);
        let from = utc("2024-03-30T23:00:00Z");
        let starts = slot_starts(
            &available(&sunday, Berlin),
            &[],
            &settings(30, 30),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        // 02:30 becomes 03:30 CEST (01:30Z); 05:00 CEST is 03:00Z.
        assert_eq!(
            starts,
            [
                utc("2024-03-31T01:30:00Z"),
                utc("2024-03-31T02:00:00Z"),
                utc("2024-03-31T02:30:00Z")
            ]
        );
    }

    #[test]
    fn an_interval_starting_in_the_fall_back_overlap_starts_at_the_earlier_instant() {
        let sunday = schedule(&[(6, &[("02:30", "04:00")])]);
        let from = utc("2024-10-26T22:00:00Z");
        let starts = slot_starts(
            &available(&sunday, Berlin),
            &[],
            &settings(60, 60),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        // 02:30 CEST is 00:30Z; 04:00 CET is 03:00Z: two and a half hours of elapsed time.
        assert_eq!(
            starts,
            [utc("2024-10-27T00:30:00Z"), utc("2024-10-27T01:30:00Z")]
        );
        assert_eq!(local_times(&starts, Berlin), ["Sun 02:30", "Sun 02:30"]);
    }

    #[test]
    fn the_step_counts_elapsed_time_across_a_dst_change_inside_a_span() {
        let sunday = schedule(&[(6, &[("00:00", "06:00")])]);
        let hourly = settings(60, 60);
        // Fall back: six wall-clock hours are seven elapsed ones, and 02:00 is offered twice.
        let from = utc("2024-10-26T22:00:00Z");
        let autumn = slot_starts(
            &available(&sunday, Berlin),
            &[],
            &hourly,
            long_ago(),
            from,
            from + Duration::days(1),
        );
        assert_eq!(
            local_times(&autumn, Berlin),
            [
                "Sun 00:00",
                "Sun 01:00",
                "Sun 02:00",
                "Sun 02:00",
                "Sun 03:00",
                "Sun 04:00",
                "Sun 05:00"
            ]
        );
        // Spring forward: five elapsed hours, and no wall-clock 02:00 exists.
        let from = utc("2024-03-30T23:00:00Z");
        let spring = slot_starts(
            &available(&sunday, Berlin),
            &[],
            &hourly,
            long_ago(),
            from,
            from + Duration::days(1),
        );
        assert_eq!(
            local_times(&spring, Berlin),
            [
                "Sun 00:00",
                "Sun 01:00",
                "Sun 03:00",
                "Sun 04:00",
                "Sun 05:00"
            ]
        );
        // A 90-minute step keeps counting elapsed time: 00:00, 01:30, then 03:00 elapsed = 04:00 CEST.
        let spring = slot_starts(
            &available(&sunday, Berlin),
            &[],
            &settings(60, 90),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        assert_eq!(
            local_times(&spring, Berlin),
            ["Sun 00:00", "Sun 01:30", "Sun 04:00"]
        );
    }

    #[test]
    fn spans_touching_across_midnight_offer_a_slot_that_straddles_midnight() {
        let late = schedule(&[(0, &[("22:00", "24:00")]), (1, &[("00:00", "02:00")])]);
        let from = utc("2024-01-14T23:00:00Z"); // Monday in Berlin
        let starts = slot_starts(
            &available(&late, Berlin),
            &[],
            &settings(45, 45),
            long_ago(),
            from,
            from + Duration::days(2),
        );
        assert_eq!(
            local_times(&starts, Berlin),
            [
                "Mon 22:00",
                "Mon 22:45",
                "Mon 23:30",
                "Tue 00:15",
                "Tue 01:00"
            ]
        );
    }

    #[test]
    fn an_interval_ending_at_24_00_ends_at_the_next_midnight() {
        let monday = schedule(&[(0, &[("23:00", "24:00")])]);
        let from = utc("2024-01-14T23:00:00Z");
        let starts = slot_starts(
            &available(&monday, Berlin),
            &[],
            &settings(30, 30),
            long_ago(),
            from,
            from + Duration::days(2),
        );
        assert_eq!(local_times(&starts, Berlin), ["Mon 23:00", "Mon 23:30"]);
        let whole = slot_starts(
            &available(&monday, Berlin),
            &[],
            &settings(60, 30),
            long_ago(),
            from,
            from + Duration::days(2),
        );
        assert_eq!(local_times(&whole, Berlin), ["Mon 23:00"]);
    }

    #[test]
    fn buffers_keep_a_candidate_and_a_booking_apart_in_both_directions() {
        let monday = schedule(&[(0, &[("09:00", "13:00")])]);
        let from = utc("2024-01-14T23:00:00Z");
        let to = from + Duration::days(1);
        let booking = |before, after| BookedTime {
            start: utc("2024-01-15T09:30:00Z"), // 10:30–11:00 in Berlin
            end: utc("2024-01-15T10:00:00Z"),
            buffer_before_minutes: before,
            buffer_after_minutes: after,
        };
        let offered = |booking: BookedTime, before, after| {
            let settings = SlotSettings {
                buffer_before_minutes: before,
                buffer_after_minutes: after,
                ..settings(30, 30)
            };
            local_times(
                &slot_starts(
                    &available(&monday, Berlin),
                    &[booking],
                    &settings,
                    long_ago(),
                    from,
                    to,
                ),
                Berlin,
            )
        };
        // No buffers: only the meeting itself is taken.
        assert_eq!(
            offered(booking(0, 0), 0, 0),
            [
                "Mon 09:00",
                "Mon 09:30",
                "Mon 10:00",
                "Mon 11:00",
                "Mon 11:30",
                "Mon 12:00",
                "Mon 12:30"
            ]
        );
        // Our buffers must not reach its meeting: 10:00 + 30 + 15 runs into 10:30; 11:00 − 15 too.
        assert_eq!(
            offered(booking(0, 0), 15, 15),
            [
                "Mon 09:00",
                "Mon 09:30",
                "Mon 11:30",
                "Mon 12:00",
                "Mon 12:30"
            ]
        );
        // Our meeting must not reach its buffers: with 30 minutes before and after, they cover
        // 10:00–11:30, so 10:00 and 11:00 go.
        assert_eq!(
            offered(booking(30, 30), 0, 0),
            [
                "Mon 09:00",
                "Mon 09:30",
                "Mon 11:30",
                "Mon 12:00",
                "Mon 12:30"
            ]
        );
        // Buffers may overlap each other: at 11:30 its 30 after and our 30 before share
        // 11:00–11:30, and that is allowed; 11:00 is gone (our buffer would reach its meeting).
        assert_eq!(
            offered(booking(0, 30), 30, 0),
            [
                "Mon 09:00",
                "Mon 09:30",
                "Mon 10:00",
                "Mon 11:30",
                "Mon 12:00",
                "Mon 12:30"
            ]
        );
    }

    #[test]
    fn minimum_notice_and_horizon_bound_the_offered_starts() {
        let week = WeeklySchedule::business_hours();
        let from = utc("2024-01-14T23:00:00Z");
        let now = utc("2024-01-15T08:10:00Z"); // Monday 09:10 in Berlin
        let settings = SlotSettings {
            minimum_notice_minutes: 60,
            horizon_days: 1,
            ..settings(30, 30)
        };
        let starts = slot_starts(
            &available(&week, Berlin),
            &[],
            &settings,
            now,
            from,
            from + Duration::days(7),
        );
        // From 10:10 on Monday (so 10:30) to before 09:10 on Tuesday (so up to 09:00).
        assert_eq!(starts.first(), Some(&utc("2024-01-15T09:30:00Z")));
        assert_eq!(starts.last(), Some(&utc("2024-01-16T08:00:00Z")));
        assert_eq!(starts.len(), 13 + 1);
        // The bounds themselves: notice is inclusive, the horizon exclusive.
        assert!(within_notice_and_horizon(
            now + Duration::minutes(60),
            now,
            &settings
        ));
        assert!(!within_notice_and_horizon(
            now + Duration::minutes(59),
            now,
            &settings
        ));
        assert!(within_notice_and_horizon(
            now + Duration::days(1) - Duration::seconds(1),
            now,
            &settings
        ));
        assert!(!within_notice_and_horizon(
            now + Duration::days(1),
            now,
            &settings
        ));
        // candidate_starts ignores now altogether.
        assert_eq!(
            candidate_starts(
                &available(&week, Berlin),
                &[],
                &settings,
                from,
                from + Duration::days(7)
            )
            .len(),
            80
        );
    }

    #[test]
    fn a_blocking_exception_removes_the_slots_it_overlaps() {
        let week = WeeklySchedule::business_hours();
        let from = utc("2024-01-14T23:00:00Z");
        let blocked = [Span {
            start: utc("2024-01-15T09:15:00Z"),
            end: utc("2024-01-15T10:00:00Z"),
        }];
        let availability = Availability {
            blocking_exceptions: &blocked,
            ..available(&week, Berlin)
        };
        let monday = slot_starts(
            &availability,
            &[],
            &settings(30, 30),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        // 10:00 ends where the block begins; 10:00–10:30 and 10:30–11:00 overlap 10:15–11:00.
        assert!(monday.contains(&utc("2024-01-15T08:30:00Z")));
        assert!(!monday.contains(&utc("2024-01-15T09:00:00Z")));
        assert!(!monday.contains(&utc("2024-01-15T09:30:00Z")));
        assert!(monday.contains(&utc("2024-01-15T10:00:00Z")));
        assert_eq!(monday.len(), 14);
    }

    #[test]
    fn an_available_exception_adds_time_and_beats_a_blocking_one_but_not_a_booking() {
        let week = WeeklySchedule::business_hours();
        let from = utc("2024-01-20T23:00:00Z"); // Sunday 2024-01-21 in Berlin, no schedule
        let extra = [Span {
            start: utc("2024-01-21T09:00:00Z"),
            end: utc("2024-01-21T11:00:00Z"),
        }];
        let blocked = [Span {
            start: utc("2024-01-21T08:00:00Z"),
            end: utc("2024-01-21T09:40:00Z"),
        }];
        let booking = BookedTime {
            start: utc("2024-01-21T10:30:00Z"),
            end: utc("2024-01-21T11:00:00Z"),
            buffer_before_minutes: 0,
            buffer_after_minutes: 0,
        };
        let availability = Availability {
            available_exceptions: &extra,
            blocking_exceptions: &blocked,
            ..available(&week, Berlin)
        };
        let starts = slot_starts(
            &availability,
            &[booking],
            &settings(30, 30),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        // 09:00 and 09:30Z lie inside the available exception, so the block does not remove
        // them; 10:30Z is booked.
        assert_eq!(
            starts,
            [
                utc("2024-01-21T09:00:00Z"),
                utc("2024-01-21T09:30:00Z"),
                utc("2024-01-21T10:00:00Z")
            ]
        );
        // A span made only of an exception is anchored at the exception's start.
        let odd = [Span {
            start: utc("2024-01-21T09:07:00Z"),
            end: utc("2024-01-21T10:07:00Z"),
        }];
        let availability = Availability {
            available_exceptions: &odd,
            ..available(&week, Berlin)
        };
        let starts = slot_starts(
            &availability,
            &[],
            &settings(30, 30),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        assert_eq!(
            starts,
            [utc("2024-01-21T09:07:00Z"), utc("2024-01-21T09:37:00Z")]
        );
    }

    #[test]
    fn an_available_exception_overlapping_two_blocks_exempts_only_what_it_covers() {
        let empty = WeeklySchedule::default();
        let from = utc("2024-01-21T00:00:00Z");
        let extra = [
            Span {
                start: utc("2024-01-21T09:00:00Z"),
                end: utc("2024-01-21T10:00:00Z"),
            },
            Span {
                start: utc("2024-01-21T09:45:00Z"),
                end: utc("2024-01-21T11:00:00Z"),
            },
        ];
        let blocked = [Span {
            start: utc("2024-01-21T08:00:00Z"),
            end: utc("2024-01-21T12:00:00Z"),
        }];
        let availability = Availability {
            tz: chrono_tz::UTC,
            available_exceptions: &extra,
            blocking_exceptions: &blocked,
            ..available(&empty, Berlin)
        };
        let starts = slot_starts(
            &availability,
            &[],
            &settings(30, 10),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        // 09:40–10:10 lies in the union of the two exceptions but in neither alone, so the
        // block still removes it.
        let expected: Vec<_> = [
            "09:00", "09:10", "09:20", "09:30", "09:50", "10:00", "10:10", "10:20", "10:30",
        ]
        .iter()
        .map(|hm| utc(&format!("2024-01-21T{hm}:00Z")))
        .collect();
        assert_eq!(starts, expected);
    }

    #[test]
    fn a_round_the_clock_schedule_is_anchored_on_the_epoch_grid_whatever_the_range() {
        let always = every_day("00:00", "24:00");
        let settings = settings(25, 25);
        let availability = available(&always, Berlin);
        let from = utc("2024-03-29T10:07:00Z");
        let to = utc("2024-04-02T00:00:00Z");
        let starts = slot_starts(&availability, &[], &settings, long_ago(), from, to);
        assert!(starts.iter().all(|t| t.timestamp() % (25 * 60) == 0));
        assert!(starts[0] >= from && starts[0] - from < Duration::minutes(25));
        assert!(
            starts
                .windows(2)
                .all(|pair| pair[1] - pair[0] == Duration::minutes(25))
        );
        // A wider range offers the same starts inside the narrower one.
        let wider = slot_starts(
            &availability,
            &[],
            &settings,
            long_ago(),
            from - Duration::days(9),
            to + Duration::days(3),
        );
        let inside: Vec<_> = wider
            .into_iter()
            .filter(|t| *t >= from && *t < to)
            .collect();
        assert_eq!(inside, starts);
    }

    #[test]
    fn a_span_starting_after_the_first_generated_instant_is_anchored_at_its_start() {
        // 09:10–17:00 every day: the grid starts at 09:10 local, not on the epoch grid.
        let days = every_day("09:10", "17:00");
        let from = utc("2024-01-15T00:00:00Z");
        let starts = slot_starts(
            &available(&days, chrono_tz::UTC),
            &[],
            &settings(60, 60),
            long_ago(),
            from,
            from + Duration::days(1),
        );
        assert_eq!(starts.len(), 7);
        assert!(starts.iter().all(|t| t.minute() == 10));
        assert_eq!(starts[0].time(), NaiveTime::from_hms_opt(9, 10, 0).unwrap());
    }

    #[test]
    fn a_zero_step_or_an_empty_range_offers_nothing() {
        let always = every_day("00:00", "24:00");
        let from = utc("2024-01-15T00:00:00Z");
        let availability = available(&always, Berlin);
        assert!(
            slot_starts(
                &availability,
                &[],
                &settings(30, 0),
                long_ago(),
                from,
                from + Duration::days(1)
            )
            .is_empty()
        );
        assert!(
            slot_starts(
                &availability,
                &[],
                &settings(30, 30),
                long_ago(),
                from,
                from
            )
            .is_empty()
        );
    }
}
