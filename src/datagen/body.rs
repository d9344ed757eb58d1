//! Ticket bodies: support-ticket prose with planted PII and harmless look-alikes.
//!
//! A body is a few sentences drawn from templates. About 40% of bodies carry personal data
//! (e-mail addresses, phone numbers, SSNs, card numbers, IPv4 addresses, IBANs, the writer's
//! own name), and every planted value is recorded as a byte span so PII detection can be scored
//! exactly. Bodies also hold values that look like PII but are not (order numbers, prices,
//! timestamps, version strings, ISBNs, UUIDs), non-ASCII text and emoji next to the hits, and
//! the commas, quotes and occasional line breaks that make CSV quoting matter.

use std::sync::OnceLock;

use rand::Rng;

use super::names::{CARRIERS, FIRST_NAMES, LAST_NAMES, PRODUCTS, WEEKDAYS};
use super::pii::{push_card, push_iban, push_ipv4, push_ssn, EmailRecipe, Phone, PiiKind};
use super::random::{pick, pick_ref, weighted};
use super::text::{push_date, push_datetime, push_padded, push_uint};

/// Share of bodies that carry personal data.
const PII_SHARE: f64 = 0.4;

/// Share of bodies with a line break inside.
const NEWLINE_SHARE: f64 = 0.01;

/// Sentences about the problem, without personal data.
const GENERAL: &[&str] = &[
    "My order {order} still hasn't arrived, and the tracking page hasn't changed since {date}.",
    "I was charged {price} twice for order {order}.",
    "The app keeps crashing on startup since the update to {version}.",
    "I can't log in, the page just says \"Invalid credentials\" even after a password reset.",
    "The parcel shows as delivered by {carrier} on {date} but nothing was at the door.",
    "Please cancel my subscription before the next billing, I don't want to pay {price} again.",
    "The book I ordered (ISBN {isbn}) arrived with a torn cover.",
    "Error reference {uuid} comes up every time I try to check out.",
    "I asked for a refund of {price} {days} days ago and haven't heard back.",
    "Since {ts} the sync has been stuck at 99%.",
    "Two-factor codes arrive so late that they have already expired.",
    "The {product} I received is the wrong colour; I ordered black and got white.",
    "Your website shows {price} but at checkout it's {price}, why the difference?",
    "Bonjour, ma commande {order} n'est toujours pas arrivée. 😕",
    "Hallo, seit {days} Tagen warte ich auf eine Antwort zu Bestellung {order}.",
    "Hola, el cargo de {price} aparece dos veces en mi extracto.",
    "The invoice for {order} shows the wrong VAT amount.",
    "After upgrading to {version}, dark mode no longer works on my tablet.",
    "I tried the \"Forgot password\" link, but the email never arrives.",
    "Delivery was promised for {weekday}, it's now {days} days late 📦",
    "The discount code SPRING25 was rejected at checkout, although it's valid until {date}.",
    "My account was locked after {n} failed attempts, but I never tried to log in.",
    "The {product} stopped charging after {days} days; I'd like a replacement.",
    "Tracking has said \"label created\" since {date}, is it lost?",
    "Can you merge my two accounts? I created the second one by mistake.",
    "Your courier ({carrier}) left the parcel with a neighbour, which I never agreed to.",
    "I was billed {price} on {date} for a plan I had already downgraded.",
    "Export to CSV fails with error {uuid}.",
    "Great service overall, but the {product} arrived damaged 😞",
    "The app on {version} shows prices in the wrong currency.",
    "Orders {order} and {order} were both shipped to my old address.",
    "Why does the status page say \"all systems operational\" when nothing loads?",
    "I'd like to return the {product}, it's still unopened.",
    "Le remboursement de {price} n'apparaît toujours pas, merci de vérifier.",
    "Die Lieferung für {order} kam beschädigt an, bitte um Ersatz 🙁",
    "The payment of {price} failed at {time}, but my bank shows it as pending.",
    "I've been a customer since {date} and this is the first time something like this happened.",
    "The chat agent closed my ticket without an answer at {time}.",
];

/// Sentences that carry personal data; each has at least one PII slot.
const PERSONAL: &[&str] = &[
    "You can reach me at {email} or on {phone}.",
    "Please send the invoice to {email}, not to my old address.",
    "My new email is {email}, please update my profile ✅",
    "Call me back on {phone}, I'm free after 5pm.",
    "Best number to reach me: {phone} 📞",
    "The agent asked for my SSN, it's {ssn}.",
    "For the tax form: SSN {ssn}, name {full}.",
    "Social Security number {ssn} (needed for the 1099, as your colleague said).",
    "I paid with card {card} and was charged twice ({price}).",
    "Please refund to the card {card}, not as store credit.",
    "Card number {card}, expiry 09/27; it was declined but the money is gone.",
    "Someone logged in from {ip} at {time}, that wasn't me!",
    "My router's IP is {ip} if that helps with the connection error.",
    "Bitte überweisen Sie die Erstattung auf meine IBAN {iban}. Danke! 🙏",
    "Refund to my bank account please: IBAN {iban}.",
    "Merci de rembourser sur le compte {iban}, cordialement.",
    "Hi, this is {full}, I spoke with someone yesterday about order {order}.",
    "My name is {full} and my account email is {own_email}.",
    "{first} here again: still waiting on {order}.",
    "Account holder: {full}, phone {phone}, email {email}.",
    "The login alert mentioned IP {ip}; I was in Lisbon at the time.",
    "Please update the phone on file to {phone} and the email to {email}.",
    "My husband used the card {card} by mistake, can we switch it to mine?",
    "Direct debit should come from {iban}, not from the old account.",
    "lol my email is literally {email}, why does the form keep saying it's invalid??",
    "Firewall logs show requests from {ip} and {ip} right before the lockout.",
    "Hola, soy {first}; mi teléfono es {phone}.",
    "Sent from {email} on {ts}.",
    "The delivery is for {name}, and the courier can call {phone}.",
    "Mon numéro: {phone} — merci d'avance 😊",
];

/// Closing lines that name the writer (personal data).
const NAMED_SIGNOFFS: &[&str] = &[
    "Thanks, {first}",
    "Regards, {full}",
    "— {name} 😊",
    "Grüße aus München, {name}",
    "Merci, {first} 🙏",
    "Best, {name}",
];

/// Closing lines without personal data.
const SIGNOFFS: &[&str] = &[
    "Thanks!",
    "Thank you.",
    "Merci 🙏",
    "Danke!",
    "Cheers",
    "Please help ASAP!!",
    "Gracias 😊",
    "Thx",
    "Regards.",
];

/// One byte range of a body that holds a planted personal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// First byte of the value.
    pub(crate) start: u32,
    /// One past its last byte.
    pub(crate) end: u32,
    pub(crate) kind: PiiKind,
}

/// The writer of a ticket, as the body may mention them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub(crate) first: &'a str,
    pub(crate) last: &'a str,
    pub(crate) full: &'a str,
    pub(crate) email: &'a str,
    pub(crate) phone: &'a str,
}

/// A template slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Order,
    Price,
    Version,
    Isbn,
    Uuid,
    Timestamp,
    Date,
    Time,
    Days,
    Count,
    Weekday,
    Product,
    Carrier,
    Email,
    OwnEmail,
    Phone,
    Ssn,
    Card,
    Ip,
    Iban,
    Name,
    First,
    Full,
}

impl Slot {
    fn parse(name: &str) -> Option<Slot> {
        Some(match name {
            "order" => Slot::Order,
            "price" => Slot::Price,
            "version" => Slot::Version,
            "isbn" => Slot::Isbn,
            "uuid" => Slot::Uuid,
            "ts" => Slot::Timestamp,
            "date" => Slot::Date,
            "time" => Slot::Time,
            "days" => Slot::Days,
            "n" => Slot::Count,
            "weekday" => Slot::Weekday,
            "product" => Slot::Product,
            "carrier" => Slot::Carrier,
            "email" => Slot::Email,
            "own_email" => Slot::OwnEmail,
            "phone" => Slot::Phone,
            "ssn" => Slot::Ssn,
            "card" => Slot::Card,
            "ip" => Slot::Ip,
            "iban" => Slot::Iban,
            "name" => Slot::Name,
            "first" => Slot::First,
            "full" => Slot::Full,
            _ => return None,
        })
    }

    /// The PII type this slot plants, if any.
    fn pii(self) -> Option<PiiKind> {
        Some(match self {
            Slot::Email | Slot::OwnEmail => PiiKind::Email,
            Slot::Phone => PiiKind::Phone,
            Slot::Ssn => PiiKind::Ssn,
            Slot::Card => PiiKind::Card,
            Slot::Ip => PiiKind::Ipv4,
            Slot::Iban => PiiKind::Iban,
            Slot::Name | Slot::First | Slot::Full => PiiKind::Name,
            _ => return None,
        })
    }
}

#[derive(Debug)]
enum Piece {
    Text(&'static str),
    Slot(Slot),
}

/// A template split into literal text and slots.
#[derive(Debug)]
struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Splits `{slot}` markers out of `text`.
    fn parse(text: &'static str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed slot in {text:?}"))?;
            if open > 0 {
                pieces.push(Piece::Text(&rest[..open]));
            }
            let name = &rest[open + 1..open + close];
            let slot =
                Slot::parse(name).ok_or_else(|| format!("unknown slot {{{name}}} in {text:?}"))?;
            pieces.push(Piece::Slot(slot));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest));
        }
        Ok(Template { pieces })
    }

    #[cfg(test)]
    fn has_pii(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Slot(s) if s.pii().is_some()))
    }
}

/// All templates, parsed once.
struct Templates {
    general: Vec<Template>,
    personal: Vec<Template>,
    named_signoffs: Vec<Template>,
    signoffs: Vec<Template>,
}

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let parse = |list: &[&'static str]| -> Vec<Template> {
            list.iter()
                .map(|t| Template::parse(t).unwrap_or_else(|e| panic!("bad body template: {e}")))
                .collect()
        };
        Templates {
            general: parse(GENERAL),
            personal: parse(PERSONAL),
            named_signoffs: parse(NAMED_SIGNOFFS),
            signoffs: parse(SIGNOFFS),
        }
    })
}

/// The sentences of one body, in order (at most six; no allocation per row).
#[derive(Default)]
struct Sentences {
    items: [Option<&'static Template>; 6],
    len: usize,
}

impl Sentences {
    fn add(&mut self, template: &'static Template) {
        self.items[self.len] = Some(template);
        self.len += 1;
    }
}

/// Writes a ticket body into `out` (cleared first) and the planted PII spans into `spans`.
/// With `allow_pii` false the body holds no personal data at all.
pub(crate) fn write_body(
    rng: &mut impl Rng,
    writer: &Writer<'_>,
    allow_pii: bool,
    out: &mut String,
    spans: &mut Vec<Span>,
) {
    out.clear();
    spans.clear();
    let t = templates();
    let mut parts = Sentences::default();

    if allow_pii && rng.random_bool(PII_SHARE) {
        let lead = rng.random_bool(0.7);
        if lead {
            parts.add(pick_ref(rng, &t.general));
        }
        parts.add(pick_ref(rng, &t.personal));
        if rng.random_bool(0.25) {
            parts.add(pick_ref(rng, &t.personal));
        }
        if !lead && rng.random_bool(0.5) {
            parts.add(pick_ref(rng, &t.general));
        }
        if rng.random_bool(0.3) {
            parts.add(pick_ref(rng, &t.named_signoffs));
        }
    } else {
        for _ in 0..weighted(rng, &[(1, 50), (2, 35), (3, 15)]) {
            parts.add(pick_ref(rng, &t.general));
        }
    }
    if rng.random_bool(0.25) {
        parts.add(pick_ref(rng, &t.signoffs));
    }
    let newline = rng.random_bool(NEWLINE_SHARE);
    if newline && parts.len == 1 {
        parts.add(pick_ref(rng, &t.signoffs));
    }

    let n = parts.len;
    for (i, template) in parts.items[..n].iter().flatten().enumerate() {
        if i > 0 {
            out.push(if newline && i == n - 1 { '\n' } else { ' ' });
        }
        for piece in &template.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Slot(slot) => {
                    let start = out.len();
                    push_slot(rng, writer, *slot, out);
                    if let Some(kind) = slot.pii() {
                        spans.push(Span {
                            start: start as u32,
                            end: out.len() as u32,
                            kind,
                        });
                    }
                }
            }
        }
    }
}

fn push_slot(rng: &mut impl Rng, writer: &Writer<'_>, slot: Slot, out: &mut String) {
    match slot {
        Slot::Order => {
            out.push('#');
            out.push(char::from(rng.random_range(b'A'..=b'Z')));
            out.push('-');
            push_uint(out, rng.random_range(10_000..100_000));
        }
        Slot::Price => push_price(rng, out),
        Slot::Version => {
            out.push('v');
            push_uint(out, rng.random_range(1..10));
            out.push('.');
            push_uint(out, rng.random_range(0..31));
            out.push('.');
            push_uint(out, rng.random_range(0..21));
        }
        Slot::Isbn => push_isbn(rng, out),
        Slot::Uuid => push_uuid(rng, out),
        Slot::Timestamp => {
            let secs = rng.random_range(1_546_300_800..1_793_491_200); // 2019 .. 2026-11
            if rng.random_bool(0.6) {
                push_datetime(out, secs, ' ');
            } else {
                push_datetime(out, secs, 'T');
                out.push('Z');
            }
        }
        Slot::Date => {
            let days = rng.random_range(17_897..20_758); // 2019-01-01 .. 2026-10-31
            match rng.random_range(0..4) {
                0 | 1 => push_date(out, days),
                2 => {
                    let date = super::text::date_from_unix_days(days);
                    out.push_str(&date.format("%-d %B").to_string());
                }
                _ => {
                    let date = super::text::date_from_unix_days(days);
                    out.push_str(&date.format("%m/%d/%Y").to_string());
                }
            }
        }
        Slot::Time => {
            let (h, m) = (rng.random_range(0..24u64), rng.random_range(0..60u64));
            if rng.random_bool(0.6) {
                push_padded(out, h, 2);
                out.push(':');
                push_padded(out, m, 2);
            } else {
                push_uint(out, (h + 11) % 12 + 1);
                out.push(':');
                push_padded(out, m, 2);
                out.push_str(if h < 12 { " am" } else { " pm" });
            }
        }
        Slot::Days => push_uint(out, rng.random_range(2..31)),
        Slot::Count => push_uint(out, rng.random_range(3..16)),
        Slot::Weekday => out.push_str(pick(rng, WEEKDAYS)),
        Slot::Product => out.push_str(pick(rng, PRODUCTS)),
        Slot::Carrier => out.push_str(pick(rng, CARRIERS)),
        Slot::Email if rng.random_bool(0.5) => out.push_str(writer.email),
        Slot::Email => {
            // Someone else's address: a colleague, a spouse, an old account.
            let first = rng.random_range(0..FIRST_NAMES.len());
            let last = rng.random_range(0..LAST_NAMES.len());
            EmailRecipe::random(rng).push(out, first, last);
        }
        Slot::OwnEmail => out.push_str(writer.email),
        Slot::Phone if rng.random_bool(0.4) => out.push_str(writer.phone),
        Slot::Phone => Phone::random(rng).push(out),
        Slot::Ssn => push_ssn(rng, out),
        Slot::Card => push_card(rng, out),
        Slot::Ip => push_ipv4(rng, out),
        Slot::Iban => push_iban(rng, out),
        Slot::Name => {
            let name = weighted(
                rng,
                &[(writer.full, 40), (writer.first, 35), (writer.last, 25)],
            );
            push_name(rng, name, 0.15, out);
        }
        Slot::First => push_name(rng, writer.first, 0.15, out),
        Slot::Full => push_name(rng, writer.full, 0.1, out),
    }
}

/// Appends `name`, lower-cased with probability `lower` (people type their own name carelessly).
fn push_name(rng: &mut impl Rng, name: &str, lower: f64, out: &mut String) {
    if rng.random_bool(lower) {
        out.extend(name.chars().flat_map(char::to_lowercase));
    } else {
        out.push_str(name);
    }
}

/// Appends a price such as `$1,299.00`, `€49.99`, `£12.50` or `1.299,00 €`.
fn push_price(rng: &mut impl Rng, out: &mut String) {
    let units: u64 = match rng.random_range(0..10) {
        0..6 => rng.random_range(1..100),
        6..9 => rng.random_range(100..1000),
        _ => rng.random_range(1000..3000),
    };
    let any_cents = rng.random_range(0..100);
    let cents: u64 = weighted(rng, &[(0, 4), (99, 3), (50, 1), (any_cents, 2)]);
    let (symbol, thousands, decimal, symbol_first) = weighted(
        rng,
        &[
            (("$", ',', '.', true), 55),
            (("€", ',', '.', true), 15),
            (("£", ',', '.', true), 15),
            (("€", '.', ',', false), 15),
        ],
    );
    if symbol_first {
        out.push_str(symbol);
    }
    if units >= 1000 {
        push_uint(out, units / 1000);
        out.push(thousands);
        push_padded(out, units % 1000, 3);
    } else {
        push_uint(out, units);
    }
    out.push(decimal);
    push_padded(out, cents, 2);
    if !symbol_first {
        out.push(' ');
        out.push_str(symbol);
    }
}

/// Appends a hyphenated ISBN-13 with a correct check digit, e.g. `978-3-16-148410-0`.
fn push_isbn(rng: &mut impl Rng, out: &mut String) {
    let mut digits = [9u8, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for d in &mut digits[3..12] {
        *d = rng.random_range(0..10);
    }
    let weighted_sum: u32 = digits[..12]
        .iter()
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    digits[12] = ((10 - weighted_sum % 10) % 10) as u8;
    for (i, d) in digits.iter().enumerate() {
        if matches!(i, 3 | 4 | 6 | 12) {
            out.push('-');
        }
        out.push(char::from(b'0' + d));
    }
}

/// Appends a random (version 4) UUID in lowercase hex.
fn push_uuid(rng: &mut impl Rng, out: &mut String) {
    let mut bytes: [u8; 16] = rng.random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::random::{stream_rng, Stream};

    const WRITER: Writer<'static> = Writer {
        first: "Zoë",
        last: "Nguyễn",
        full: "Zoë Nguyễn",
        email: "zoe.nguyen@example.com",
        phone: "+44 20 7946 0958",
    };

    #[test]
    fn templates_parse_and_sort_correctly() {
        let t = templates();
        assert!(t.general.iter().all(|t| !t.has_pii()));
        assert!(t.signoffs.iter().all(|t| !t.has_pii()));
        assert!(t.personal.iter().all(Template::has_pii));
        assert!(t.named_signoffs.iter().all(Template::has_pii));
        assert!(Template::parse("a {nope} b").is_err());
        assert!(Template::parse("a {order").is_err());
    }

    #[test]
    fn spans_cover_exactly_the_planted_values() {
        let mut rng = stream_rng(1, Stream::Row, 0);
        let (mut body, mut spans) = (String::new(), Vec::new());
        let mut with_pii = 0;
        for _ in 0..5000 {
            write_body(&mut rng, &WRITER, true, &mut body, &mut spans);
            with_pii += usize::from(!spans.is_empty());
            let mut last_end = 0;
            for s in &spans {
                assert!(s.start >= last_end && s.start < s.end, "{spans:?}");
                let text = &body[s.start as usize..s.end as usize];
                assert_eq!(text.trim(), text, "span has padding: {text:?}");
                last_end = s.end;
            }
        }
        assert!(
            (1700..2300).contains(&with_pii),
            "{with_pii} of 5000 bodies with PII"
        );
    }

    #[test]
    fn bodies_without_pii_allowed_have_no_spans_and_no_writer_data() {
        let mut rng = stream_rng(2, Stream::Row, 0);
        let (mut body, mut spans) = (String::new(), Vec::new());
        for _ in 0..2000 {
            write_body(&mut rng, &WRITER, false, &mut body, &mut spans);
            assert!(spans.is_empty());
            assert!(!body.contains("Nguy") && !body.contains('@'), "{body}");
        }
    }

    #[test]
    fn some_bodies_have_newlines_quotes_and_commas() {
        let mut rng = stream_rng(3, Stream::Row, 0);
        let (mut body, mut spans) = (String::new(), Vec::new());
        let (mut newlines, mut quotes, mut commas) = (0, 0, 0);
        for _ in 0..10_000 {
            write_body(&mut rng, &WRITER, true, &mut body, &mut spans);
            newlines += usize::from(body.contains('\n'));
            quotes += usize::from(body.contains('"'));
            commas += usize::from(body.contains(','));
        }
        assert!((50..200).contains(&newlines), "{newlines}");
        assert!(quotes > 100 && commas > 1000, "{quotes} {commas}");
    }

    #[test]
    fn look_alikes_have_their_documented_shapes() {
        let mut rng = stream_rng(4, Stream::Row, 0);
        for _ in 0..200 {
            let mut s = String::new();
            push_isbn(&mut rng, &mut s);
            let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
            assert_eq!(digits.len(), 13, "{s}");
            let sum: u32 = digits
                .iter()
                .enumerate()
                .map(|(i, d)| d * if i % 2 == 0 { 1 } else { 3 })
                .sum();
            assert_eq!(sum % 10, 0, "{s}");

            s.clear();
            push_uuid(&mut rng, &mut s);
            assert_eq!(s.len(), 36);
            assert_eq!(&s[14..15], "4");

            s.clear();
            push_price(&mut rng, &mut s);
            assert!(s.contains(['$', '€', '£']), "{s}");
        }
        let mut s = String::new();
        let mut rng = stream_rng(5, Stream::Row, 0);
        while !s.contains(',') {
            s.clear();
            push_price(&mut rng, &mut s);
        }
    }
}
