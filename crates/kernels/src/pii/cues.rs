//! What the words just before a number say it is.
//!
//! A digit group's shape is weak evidence: `609 141 777` is a Polish mobile number in one
//! sentence and a stock-keeping unit in the next. People label what they write ("call me at",
//! "card number", "SKU", "tracking"), so the scanner reads the few words before a numeric
//! candidate and lets the nearest cue decide between readings. Cues are word stems in the
//! languages the phone regions cover; matching is by prefix, case-insensitive, so "telefono",
//! "téléphone" and "telefoonnummer" all meet `tel`/`tél`.
//!
//! The cue is looked up only for numeric candidates that need it, so its cost is paid on few
//! bytes of a text.

/// What the nearest cue before a number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cue {
    /// No cue word near.
    None,
    /// A telephone word ("call", "tel", "mobile", "WhatsApp"…).
    Phone,
    /// Only a word for "number" ("my number is"), which in running text most often means a
    /// telephone number, but weighs less than a named kind.
    Number,
    /// A payment card word ("card", "Visa", "CC"…).
    Card,
    /// A social security word ("SSN", "social security", "taxpayer id"…).
    Ssn,
    /// A word naming some other kind of number (order, tracking, SKU, licence, version…), or
    /// a number just before (the candidate continues something else).
    Other,
}

/// How far back cues are looked for: bytes, and words.
const WINDOW_BYTES: usize = 64;
const WINDOW_WORDS: usize = 6;

/// Telephone stems. Short ones that are common word beginnings in English are listed whole in
/// [`PHONE_WORDS`] instead.
const PHONE_STEMS: &[&str] = &[
    "phone",
    "tel",
    "tél",
    "mobil",
    "móvil",
    "movil",
    "cell",
    "celular",
    "fax",
    "whatsapp",
    "sms",
    "call",
    "dial",
    "landline",
    "hotline",
    "voicemail",
    "handy",
    "anruf",
    "rufen",
    "rufnummer",
    "appel",
    "llam",
    "chiam",
    "zadzwo",
    "puhelin",
    "ring",
    "reach",
    "contact",
    "kontakt",
    "contatt",
    "contacto",
    "ligar",
    "ligue",
    "bellen",
    "portable",
    "signal",
    "viber",
    "telegram",
];

/// Telephone words matched whole.
const PHONE_WORDS: &[&str] = &["text", "tlf", "tfn", "mob", "ph", "bel", "cel"];

/// Words that name an identifier without saying of what ("taxpayer id" is an SSN, "id" alone is
/// not a phone).
const ID_WORDS: &[&str] = &["id", "ids", "identifier"];

/// Words that say "number" without saying of what.
const NUMBER_WORDS: &[&str] = &[
    "number", "no", "nr", "num", "numero", "número", "numéro", "nummer", "numer", "n°", "nº",
];

const CARD_STEMS: &[&str] = &[
    "card",
    "visa",
    "mastercard",
    "amex",
    "maestro",
    "jcb",
    "discover",
    "diners",
    "unionpay",
    "credit",
    "debit",
    "karte",
    "kreditkart",
    "tarjeta",
    "cartão",
    "kaart",
    "charge",
    "pay",
    "paid",
];

const CARD_WORDS: &[&str] = &["cc", "pan", "carte", "cartes", "carta", "karta"];

const SSN_STEMS: &[&str] = &["ssn", "social", "taxpayer", "itin"];

const SSN_WORDS: &[&str] = &["ss", "ss#", "tin", "ssa", "sec"];

/// Stems of words that name another kind of number.
const OTHER_STEMS: &[&str] = &[
    "order",
    "invoice",
    "track",
    "serial",
    "sku",
    "licen",
    "routing",
    "account",
    "ticket",
    "refer",
    "barcode",
    "ean",
    "upc",
    "isbn",
    "issn",
    "build",
    "version",
    "release",
    "case",
    "policy",
    "epoch",
    "timestamp",
    "item",
    "product",
    "part",
    "model",
    "batch",
    "booking",
    "confirmation",
    "transaction",
    "receipt",
    "shipment",
    "parcel",
    "package",
    "container",
    "postcode",
    "postal",
    "zip",
    "room",
    "floor",
    "unit",
    "page",
    "bestell",
    "rechnung",
    "commande",
    "facture",
    "pedido",
    "factura",
    "ordine",
    "fattura",
    "kundennummer",
    "auftrag",
    "artikel",
    "sendung",
    "patient",
    "member",
    "customer",
    "passport",
    "vin",
    "iban",
    "bic",
    "swift",
    "aba",
    "sort",
    "price",
    "total",
    "amount",
    "qty",
    "quantity",
    "weight",
];

const OTHER_WORDS: &[&str] = &[
    "po", "ref", "inc", "err", "error", "code", "v", "ver", "lot", "bin", "kg", "km", "usd", "eur",
    "gbp", "sn", "dl",
];

/// The cue that the words before byte `start` of `text` give: the nearest word that is a cue
/// decides; words for "number" or "id" count only when nothing stronger is near.
pub(crate) fn cue_before(text: &str, start: usize) -> Cue {
    let from = floor_char_boundary(text, start.saturating_sub(WINDOW_BYTES));
    let window = &text[from..start];
    let mut weak = Cue::None;
    let mut words = 0;
    let mut end = window.len();
    // Walk words right to left. A word is a run of alphanumerics (and `#`, `°`, `º` so that
    // "SS#" and "n°" stay whole).
    while end > 0 && words < WINDOW_WORDS {
        let (ws, we) = match prev_word(window, end, is_word_char) {
            Some(r) => r,
            None => break,
        };
        // A line break or a bar ends the context: it is another field or another line. So
        // does the end of a sentence, except right before the number ("Tel. 030 …").
        let gap = &window[we..end];
        let mut buf = Lower::default();
        let w = buf.of(&window[ws..we]);
        let abbreviation =
            || NUMBER_WORDS.contains(&w) || matches!(w, "tel" | "mob" | "ph" | "tlf");
        if gap.contains(['\n', '|', ';']) || (words > 0 && ends_sentence(gap) && !abbreviation()) {
            break;
        }
        end = ws;
        words += 1;
        // A word glued to its neighbours without a space ("ana_carter@mail.example",
        // "example.com/cart") is part of an address or an id, not a cue.
        if glued_before(window, ws) || glued_after(window, we) {
            continue;
        }
        if w.bytes().all(|b| b.is_ascii_digit()) {
            // A number right before (one separator away) is a phrase this one continues.
            return if words == 1 { Cue::Other } else { Cue::None };
        }
        if is(w, PHONE_STEMS, PHONE_WORDS) {
            return Cue::Phone;
        }
        if is(w, CARD_STEMS, CARD_WORDS) {
            return Cue::Card;
        }
        if is(w, SSN_STEMS, SSN_WORDS) {
            return Cue::Ssn;
        }
        if is(w, OTHER_STEMS, OTHER_WORDS) {
            return Cue::Other;
        }
        if weak == Cue::None {
            if NUMBER_WORDS.contains(&w) {
                weak = Cue::Number;
            } else if ID_WORDS.contains(&w) {
                weak = Cue::Other;
            }
        }
    }
    weak
}

/// Words that, right after a number, make it a quantity: units, currencies and the things
/// people count.
const QUANTITY_WORDS: &[&str] = &[
    "b",
    "byte",
    "bytes",
    "kb",
    "mb",
    "gb",
    "tb",
    "request",
    "requests",
    "times",
    "s",
    "sec",
    "secs",
    "second",
    "seconds",
    "ms",
    "min",
    "mins",
    "minute",
    "minutes",
    "h",
    "hr",
    "hrs",
    "hour",
    "hours",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "item",
    "items",
    "unit",
    "units",
    "user",
    "users",
    "people",
    "persons",
    "customers",
    "clients",
    "rows",
    "records",
    "entries",
    "points",
    "pts",
    "votes",
    "views",
    "visits",
    "downloads",
    "pieces",
    "pcs",
    "pairs",
    "orders",
    "tickets",
    "messages",
    "emails",
    "files",
    "pages",
    "words",
    "characters",
    "chars",
    "km",
    "kg",
    "g",
    "lb",
    "lbs",
    "m",
    "cm",
    "mm",
    "miles",
    "mi",
    "ft",
    "meters",
    "metres",
    "liters",
    "litres",
    "l",
    "ml",
    "eur",
    "euro",
    "euros",
    "usd",
    "dollars",
    "gbp",
    "pounds",
    "chf",
    "yen",
    "percent",
    "inhabitants",
    "residents",
    "copies",
    "steps",
    "likes",
    "followers",
    "subscribers",
    "members",
    "devices",
    "transactions",
    "errors",
    "attempts",
    "tokens",
    "lines",
    "calls",
    "stück",
    "einwohner",
    "habitants",
    "personas",
    "abitanti",
    "pessoas",
];

/// The cue that the word right after byte `end` of `text` gives: [`Cue::Other`] when it is a
/// unit or a counted thing ("93897944634 bytes"), or a `%`.
pub(crate) fn cue_after(text: &str, end: usize) -> Cue {
    let rest = &text[end..];
    let trimmed = rest.trim_start_matches([' ', '\u{a0}']);
    if trimmed.starts_with('%') {
        return Cue::Other;
    }
    if trimmed.len() == rest.len() && !rest.is_empty() && !rest.starts_with(['.', ',', ')']) {
        // Glued to a following character: not a separate word.
        return Cue::None;
    }
    let word_end = trimmed
        .char_indices()
        .find(|&(_, c)| !c.is_alphanumeric())
        .map_or(trimmed.len(), |(i, _)| i);
    let mut buf = Lower::default();
    if QUANTITY_WORDS.contains(&buf.of(&trimmed[..word_end])) {
        Cue::Other
    } else {
        Cue::None
    }
}

/// Whether the word starting at `ws` continues a token: a joining character right before it
/// and an alphanumeric before that ("mail.example", "ana_carter").
fn glued_before(s: &str, ws: usize) -> bool {
    let mut back = s[..ws].chars().rev();
    back.next().is_some_and(joins) && back.next().is_some_and(char::is_alphanumeric)
}

/// Whether the word ending at `we` runs on into a token ("carter@", "cart/"), a dot that ends
/// a sentence or an abbreviation aside.
fn glued_after(s: &str, we: usize) -> bool {
    let mut ahead = s[we..].chars();
    ahead.next().is_some_and(|c| joins(c) && c != '.')
        && ahead.next().is_some_and(char::is_alphanumeric)
        || s[we..].starts_with('.')
            && s[we + 1..]
                .chars()
                .next()
                .is_some_and(char::is_alphanumeric)
}

/// Characters that join words into one token (addresses, paths, ids).
fn joins(c: char) -> bool {
    matches!(
        c,
        '@' | '.' | '_' | '/' | '-' | '+' | '=' | '&' | '?' | '#' | '%' | '\\'
    )
}

/// Whether the text between two words ends a sentence: `.`, `!` or `?` then a space.
fn ends_sentence(gap: &str) -> bool {
    let b = gap.as_bytes();
    b.windows(2)
        .any(|w| matches!(w[0], b'.' | b'!' | b'?') && w[1].is_ascii_whitespace())
}

/// Whether `w` starts with one of `stems` or equals one of `words`.
fn is(w: &str, stems: &[&str], words: &[&str]) -> bool {
    stems.iter().any(|s| w.starts_with(s)) || words.contains(&w)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '#' | '°' | 'º')
}

/// The byte range of the last word of `s[..end]`, a word being a run of characters
/// `is_word` accepts.
pub(crate) fn prev_word(
    s: &str,
    end: usize,
    is_word: impl Fn(char) -> bool,
) -> Option<(usize, usize)> {
    let head = &s[..end];
    let we = head
        .char_indices()
        .rev()
        .find(|&(_, c)| is_word(c))
        .map(|(i, c)| i + c.len_utf8())?;
    let ws = head[..we]
        .char_indices()
        .rev()
        .find(|&(_, c)| !is_word(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    Some((ws, we))
}

/// A lower-cased word, on the stack for the ASCII words nearly all cues are. Only a word's
/// first [`Lower::CAP`] bytes are kept: no cue is longer, so a longer word still matches by
/// its stem and never matches whole.
#[derive(Default)]
pub(crate) struct Lower {
    ascii: [u8; Lower::CAP],
    other: String,
}

impl Lower {
    const CAP: usize = 24;

    pub(crate) fn of(&mut self, word: &str) -> &str {
        if word.is_ascii() {
            let n = word.len().min(Self::CAP);
            self.ascii[..n].copy_from_slice(&word.as_bytes()[..n]);
            self.ascii[..n].make_ascii_lowercase();
            // ASCII bytes are always valid UTF-8.
            std::str::from_utf8(&self.ascii[..n]).unwrap_or_default()
        } else {
            self.other = word.to_lowercase();
            &self.other
        }
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(text: &str) -> Cue {
        let at = text.find('@').expect("marker");
        cue_before(text, at)
    }

    #[test]
    fn the_nearest_cue_decides() {
        assert_eq!(cue("Please call me at @"), Cue::Phone);
        assert_eq!(cue("My phone number is @"), Cue::Phone);
        assert_eq!(cue("Mon numéro de téléphone est le @"), Cue::Phone);
        assert_eq!(cue("Mijn telefoonnummer is @"), Cue::Phone);
        assert_eq!(cue("Il mio numero è @"), Cue::Number);
        assert_eq!(cue("Serial number @"), Cue::Other);
        assert_eq!(cue("Tracking number @"), Cue::Other);
        assert_eq!(cue("Phone 555 / order @"), Cue::Other);
        assert_eq!(cue("Card number: @"), Cue::Card);
        assert_eq!(cue("Please verify SS# @"), Cue::Ssn);
        assert_eq!(cue("Taxpayer id @"), Cue::Ssn);
        assert_eq!(cue("ids @"), Cue::Other);
        // Words inside an address or an id are no cues; "Carter" is no card word.
        assert_eq!(
            cue("reach me at ana_carter@corp.example or on @"),
            Cue::Phone
        );
        assert_eq!(cue("Thanks, John Carter @"), Cue::None);
        assert_eq!(cue("see shop.example/order-status @"), Cue::None);
        assert_eq!(cue("the id number @"), Cue::Number);
        assert_eq!(cue("The weather was nice @"), Cue::None);
        assert_eq!(cue("@"), Cue::None);
        assert_eq!(cue("card 2131 @"), Cue::Other);
        assert_eq!(cue("Tel: 030\ntotal @"), Cue::Other);
        assert_eq!(cue("Tel:\nsee @"), Cue::None);
        assert_eq!(cue("the VAT amount. Mon numéro: @"), Cue::Number);
        assert_eq!(cue("Tel. @"), Cue::Phone);
        assert_eq!(cue("social security no. is @"), Cue::Ssn);
    }

    #[test]
    fn a_unit_after_makes_a_quantity() {
        assert_eq!(cue_after("93897944634 bytes", 11), Cue::Other);
        assert_eq!(cue_after("12 %", 2), Cue::Other);
        assert_eq!(cue_after("555-1234 is my line", 8), Cue::None);
        assert_eq!(cue_after("555-1234", 8), Cue::None);
        assert_eq!(cue_after("5 Einwohner", 1), Cue::Other);
    }

    #[test]
    fn cues_are_found_only_near() {
        let far = format!("call {} @", "word ".repeat(WINDOW_WORDS));
        assert_eq!(cue(&far), Cue::None);
        // Multi-byte text at the window's edge is cut on a char boundary.
        let text = format!("{}é call @", "é".repeat(40));
        assert_eq!(cue(&text), Cue::Phone);
    }
}
