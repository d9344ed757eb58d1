//! One support ticket: the row-level fields and how they are drawn.
//!
//! A [`Ticket`] is a reusable buffer: the generator fills it once per row and the writers read
//! it, so the hot loop allocates nothing.

use chrono::NaiveDate;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use super::body::{write_body, Span, Writer};
use super::population::Subject;
use super::random::{weighted, IdPermutation};

/// `provenance` values and their shares in per mille.
const PROVENANCE: &[(&str, u32)] = &[
    ("app", 450),
    ("web", 350),
    ("partner_api", 120),
    ("scraped", 80),
];

/// Non-empty `consent_purposes` values (purposes in a fixed order) with weights.
const PURPOSES: &[(&str, u32)] = &[
    ("training;analytics;marketing", 20),
    ("training;analytics", 20),
    ("training", 15),
    ("analytics", 10),
    ("training;marketing", 8),
    ("analytics;marketing", 7),
    ("marketing", 5),
];

/// `consent_status` values (`None` = missing) with shares in per mille.
const STATUS: &[(Option<&str>, u32)] = &[
    (Some("given"), 800),
    (Some("withdrawn"), 120),
    (Some("expired"), 70),
    (None, 10),
];

/// `satisfaction` scores (`None` = not answered) with weights.
const SATISFACTION: &[(Option<i64>, u32)] = &[
    (None, 10),
    (Some(1), 7),
    (Some(2), 9),
    (Some(3), 18),
    (Some(4), 29),
    (Some(5), 27),
];

/// `priority` levels with weights.
const PRIORITY: &[(i64, u32)] = &[(1, 30), (2, 40), (3, 20), (4, 10)];

/// The `consent_purposes` cell: missing, empty, or a `;`-joined list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Purposes {
    /// No value at all (null; an empty CSV field).
    #[default]
    Missing,
    /// An empty list (an empty string; `""` in CSV).
    Empty,
    /// One or more purposes.
    Listed(&'static str),
}

/// The row-level draws shared by all rows: id permutation, time window, distributions.
#[derive(Debug)]
pub(crate) struct TicketDraws {
    ticket_ids: IdPermutation,
    created_from: i64,
    created_to: i64,
    handle_time: LogNormal<f64>,
}

impl TicketDraws {
    /// Largest number of tickets: ticket ids have nine digits.
    pub(crate) const MAX_TICKETS: u64 = 1_000_000_000;

    pub(crate) fn new(rng: &mut impl Rng) -> TicketDraws {
        let at = |y, m, d, h, mi, s| {
            NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(h, mi, s))
                .expect("valid date")
                .and_utc()
                .timestamp()
        };
        TicketDraws {
            ticket_ids: IdPermutation::new(Self::MAX_TICKETS, 15, rng),
            created_from: at(2019, 1, 1, 0, 0, 0),
            created_to: at(2026, 10, 31, 23, 59, 59),
            // Median 12 minutes, long right tail.
            handle_time: LogNormal::new(12f64.ln(), 0.75).expect("valid parameters"),
        }
    }
}

/// One ticket row (a reusable buffer).
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    /// The number in `T123456789`.
    pub(crate) id: u64,
    pub(crate) provenance: &'static str,
    pub(crate) purposes: Purposes,
    pub(crate) status: Option<&'static str>,
    /// Unix seconds.
    pub(crate) created_at: i64,
    pub(crate) priority: i64,
    /// Handle time in hundredths of a minute (the CSV shows two decimals).
    pub(crate) handle_time_centi: u64,
    pub(crate) satisfaction: Option<i64>,
    pub(crate) body: String,
    pub(crate) spans: Vec<Span>,
    /// The subject's full name, e-mail and phone, rendered for this row.
    pub(crate) full_name: String,
    pub(crate) email: String,
    pub(crate) phone: String,
}

impl Ticket {
    /// Fills this buffer with record `index`, filed by `subject`. With `allow_pii` false the
    /// body carries no personal data (used for malformed records, which are not annotated).
    pub(crate) fn fill(
        &mut self,
        index: u64,
        subject: &Subject,
        allow_pii: bool,
        draws: &TicketDraws,
        rng: &mut impl Rng,
    ) {
        self.full_name.clear();
        subject.push_full_name(&mut self.full_name);
        self.email.clear();
        subject.push_email(&mut self.email);
        self.phone.clear();
        subject.phone.push(&mut self.phone);

        self.id = draws.ticket_ids.apply(index);
        self.provenance = weighted(rng, PROVENANCE);
        self.purposes = match rng.random_range(0..100) {
            0..2 => Purposes::Missing,
            2..10 => Purposes::Empty,
            _ => Purposes::Listed(weighted(rng, PURPOSES)),
        };
        self.status = weighted(rng, STATUS);
        self.created_at = rng.random_range(draws.created_from..=draws.created_to);
        self.priority = weighted(rng, PRIORITY);
        let minutes = draws.handle_time.sample(rng).clamp(0.5, 600.0);
        self.handle_time_centi = (minutes * 100.0).round() as u64;
        self.satisfaction = weighted(rng, SATISFACTION);

        let writer = Writer {
            first: subject.first_name(),
            last: subject.last_name(),
            full: &self.full_name,
            email: &self.email,
            phone: &self.phone,
        };
        write_body(rng, &writer, allow_pii, &mut self.body, &mut self.spans);
    }

    /// The `consent_purposes` value, `None` when missing.
    pub(crate) fn purposes_text(&self) -> Option<&'static str> {
        match self.purposes {
            Purposes::Listed(list) => Some(list),
            Purposes::Empty => Some(""),
            Purposes::Missing => None,
        }
    }
}
