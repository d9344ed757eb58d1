//! Person names in running text, without the row's own values to go by.
//!
//! The contextual detector finds the writer's own name; this one finds everybody else: agents,
//! relatives, people mentioned in passing. No model is downloaded: a name is a run of
//! capitalised words that dictionaries, titles and the words around it vouch for.
//!
//! - **Dictionaries** (`data/names/`, see its `SOURCE.md`): the U.S. Census Bureau's 1990
//!   given names and surnames (public domain), common Chinese, Korean and Japanese family
//!   names, common Russian given names, common given names and surnames of the European and
//!   Turkish locales (looked up with and without accents); Slavic surnames and patronymics are
//!   told by their endings.
//! - **Titles** ("Mr.", "Frau", "Mme", "Sr.", "Dr.") and **cue phrases** ("my name is",
//!   "Dear", "regards,", "spoke with", "my daughter") before a run.
//! - **Capitalisation**: a run of two or more capitalised words that are not ordinary
//!   capitalised words (sentence openers, months, product words) inside a sentence.
//!
//! Chinese, Korean and Japanese names are found as a short run of their script that begins
//! with a listed family name, bounded by other text (as names appear inside Latin-script
//! text); names inside continuous CJK prose are not found.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::cues::{prev_word, Lower};

/// The dictionaries and word lists, as sets built once on first use.
struct Dicts {
    given: HashSet<&'static str>,
    surnames: HashSet<&'static str>,
    cjk: HashSet<&'static str>,
    titles: HashSet<&'static str>,
    not_names: HashSet<&'static str>,
    strong: HashSet<&'static str>,
    weak: HashSet<&'static str>,
    closings: HashSet<&'static str>,
    after: HashSet<&'static str>,
    particles: HashSet<&'static str>,
}

fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn dicts() -> &'static Dicts {
    static DICTS: OnceLock<Dicts> = OnceLock::new();
    DICTS.get_or_init(|| Dicts {
        given: lines(include_str!("../../data/names/us_census_1990_given.txt"))
            .chain(lines(include_str!("../../data/names/ru_given.txt")))
            .chain(lines(include_str!("../../data/names/eu_given.txt")))
            .collect(),
        surnames: lines(include_str!("../../data/names/us_census_1990_surnames.txt"))
            .chain(lines(include_str!("../../data/names/eu_surnames.txt")))
            .collect(),
        cjk: lines(include_str!("../../data/names/cjk_surnames.txt")).collect(),
        titles: TITLES.iter().copied().collect(),
        not_names: NOT_NAMES.iter().copied().collect(),
        strong: STRONG_CUES.iter().copied().collect(),
        weak: WEAK_CUES.iter().copied().collect(),
        closings: CLOSINGS.iter().copied().collect(),
        after: AFTER_CUES.iter().copied().collect(),
        particles: PARTICLES.iter().copied().collect(),
    })
}

/// Titles written before a name (lower-case, without their dot).
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "prof",
    "sir",
    "dame",
    "herr",
    "frau",
    "hr",
    "fr",
    "m",
    "mme",
    "mlle",
    "monsieur",
    "madame",
    "mademoiselle",
    "sr",
    "sra",
    "srta",
    "señor",
    "señora",
    "señorita",
    "sig",
    "sigra",
    "signor",
    "signora",
    "dott",
    "dottssa",
    "pan",
    "pani",
    "dhr",
    "mevr",
    "fru",
    "rev",
    "don",
    "doña",
    "dona",
    "senhor",
    "senhora",
    "ing",
    "mag",
    "dra",
    "drs",
    "ir",
    "mgr",
    "inż",
    "bc",
    "doç",
    "yrd",
    "av",
    "op",
    "uzm",
    "tov",
    "тов",
    "lic",
    "eng",
];

/// Degrees and generational suffixes written after a name.
const SUFFIXES: &[&str] = &[
    "MBA", "B.Sc.", "M.Sc.", "BSc", "MSc", "B.A.", "M.A.", "PhD", "Ph.D.", "MD", "Jr.", "Jr",
    "Sr.", "II", "III", "IV", "DDS", "DVM", "B.Eng.", "M.Eng.",
];

/// Words right before a name that say a name follows, whatever the name looks like.
const STRONG_CUES: &[&str] = &[
    "dear",
    "hi",
    "hello",
    "hey",
    "hallo",
    "bonjour",
    "hola",
    "ciao",
    "olá",
    "ola",
    "hej",
    "regards",
    "sincerely",
    "cheers",
    "greetings",
    "grüße",
    "grüßen",
    "gruß",
    "cordialement",
    "saludos",
    "saluti",
    "atenciosamente",
    "groet",
    "groeten",
    "pozdrawiam",
    "daughter",
    "son",
    "wife",
    "husband",
    "mother",
    "father",
    "brother",
    "sister",
    "friend",
    "neighbour",
    "neighbor",
    "colleague",
    "manager",
    "agent",
    "supervisor",
    "technician",
    "nurse",
    "partner",
    "grandson",
    "granddaughter",
    "mom",
    "mum",
    "dad",
    "aunt",
    "uncle",
    "cousin",
    "boss",
    "tochter",
    "sohn",
    "frau",
    "mann",
    "fille",
    "fils",
    "hija",
    "hijo",
    "figlia",
    "figlio",
    "filha",
    "filho",
    "dochter",
    "zoon",
    "holder",
    "named",
    "signed",
    "witnessed",
    "behalf",
    "sehr",
    "geehrte",
    "geehrter",
    "chère",
    "cher",
    "estimado",
    "estimada",
    "gentile",
    "caro",
    "cara",
    "geachte",
    "beste",
    "szanowny",
    "szanowna",
    "soy",
    "sono",
    "suis",
];

/// Closing words that, followed by a comma, put the writer's name after them ("Thanks,
/// Agnieszka").
const CLOSINGS: &[&str] = &[
    "thanks",
    "thank",
    "best",
    "merci",
    "danke",
    "gracias",
    "grazie",
    "obrigado",
    "obrigada",
    "cheers",
    "bedankt",
    "dzięki",
    "tack",
    "kiitos",
    "love",
    "yours",
    "respectfully",
    "cordially",
];

/// Pairs of words (the nearer last) right before a name that say a name follows.
const STRONG_PAIRS: &[(&str, &str)] = &[
    ("name", "is"),
    ("name", "ist"),
    ("nome", "é"),
    ("naam", "is"),
    ("i", "am"),
    ("this", "is"),
    ("me", "llamo"),
    ("mi", "chiamo"),
    ("je", "m'appelle"),
    ("ich", "heiße"),
    ("ich", "bin"),
    ("nazywam", "się"),
    ("spoke", "with"),
    ("spoke", "to"),
    ("talked", "to"),
    ("speak", "to"),
    ("transferred", "to"),
    ("thanks", "to"),
    ("ask", "for"),
    ("account", "holder"),
];

/// Words before a name that make a name likely when the name looks like one.
const WEAK_CUES: &[&str] = &[
    "with", "to", "by", "from", "ask", "tell", "contact", "call", "thanks", "thank", "cc", "for",
    "and", "or", "reach", "email", "told", "asked", "met", "saw", "von", "mit", "avec", "con",
    "de", "di", "par", "por", "per", "und", "et", "y", "e",
];

/// Words after a single given name that show it is someone's name ("Emma called").
const AFTER_CUES: &[&str] = &[
    "called",
    "said",
    "says",
    "wrote",
    "asked",
    "left",
    "from",
    "will",
    "has",
    "had",
    "is",
    "was",
    "lives",
    "read",
    "confirmed",
    "mentioned",
    "reported",
    "signed",
    "replied",
    "answered",
    "phoned",
    "emailed",
    "requested",
    "opened",
    "sent",
    "and",
    "changed",
    "wants",
    "needs",
    "paid",
    "ordered",
    "bought",
    "returned",
    "cancelled",
    "canceled",
    "complained",
    "here",
];

/// Capitalised words that are not names: sentence openers, pronouns, weekdays, months,
/// greetings and closings, words of support text, and their like in the other languages of
/// the default regions.
const NOT_NAMES: &[&str] = &[
    // English function words and openers.
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "it",
    "its",
    "i",
    "i'm",
    "me",
    "my",
    "we",
    "our",
    "you",
    "your",
    "he",
    "his",
    "she",
    "her",
    "they",
    "their",
    "them",
    "who",
    "what",
    "when",
    "where",
    "why",
    "how",
    "which",
    "if",
    "as",
    "at",
    "on",
    "in",
    "of",
    "to",
    "for",
    "from",
    "with",
    "by",
    "and",
    "or",
    "but",
    "so",
    "not",
    "no",
    "yes",
    "ok",
    "okay",
    "please",
    "thanks",
    "thank",
    "hi",
    "hello",
    "hey",
    "dear",
    "kind",
    "best",
    "warm",
    "regards",
    "sincerely",
    "cheers",
    "can",
    "could",
    "would",
    "should",
    "will",
    "shall",
    "may",
    "might",
    "must",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "after",
    "before",
    "since",
    "until",
    "also",
    "again",
    "just",
    "still",
    "all",
    "any",
    "some",
    "every",
    "each",
    "new",
    "old",
    "first",
    "last",
    "next",
    "one",
    "two",
    "three",
    "mon",
    "today",
    "tomorrow",
    "yesterday",
    "sorry",
    "note",
    "update",
    "updated",
    "re",
    "fw",
    "fwd",
    "subject",
    "attn",
    "urgent",
    "important",
    "help",
    "contact",
    "reply",
    "sent",
    "spoke",
    "called",
    "customer",
    "client",
    "user",
    "account",
    "holder",
    "order",
    "orders",
    "ticket",
    "invoice",
    "payment",
    "refund",
    "card",
    "visa",
    "mastercard",
    "amex",
    "maestro",
    "paypal",
    "iban",
    "ssn",
    "tel",
    "phone",
    "mobile",
    "email",
    "e-mail",
    "fax",
    "whatsapp",
    "sms",
    "team",
    "billing",
    "support",
    "service",
    "services",
    "sales",
    "returns",
    "shipping",
    "delivery",
    "department",
    "office",
    "desk",
    "manager",
    "agent",
    "admin",
    "administrator",
    "app",
    "website",
    "web",
    "online",
    "store",
    "shop",
    "bank",
    "company",
    "inc",
    "ltd",
    "llc",
    "gmbh",
    "co",
    "street",
    "st",
    "road",
    "rd",
    "avenue",
    "ave",
    "lane",
    "drive",
    "city",
    "north",
    "south",
    "east",
    "west",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "am",
    "pm",
    "utc",
    "gmt",
    "eur",
    "usd",
    "gbp",
    "q1",
    "q2",
    "q3",
    "q4",
    "ceo",
    "cto",
    "cfo",
    "vip",
    "faq",
    "pdf",
    "id",
    "pin",
    "otp",
    "url",
    "ip",
    "api",
    "firmware",
    "version",
    "build",
    "event",
    "request",
    "requests",
    "error",
    "warning",
    "routing",
    "tracking",
    "serial",
    "barcode",
    "isbn",
    "sku",
    "driver",
    "licence",
    "license",
    "postcode",
    "revenue",
    "room",
    "sizes",
    "scores",
    "coordinates",
    "population",
    "the",
    "social",
    "security",
    "number",
    "taxpayer",
    "applicant",
    "applicant's",
    "client",
    "public",
    "private",
    "direct",
    "debit",
    "credit",
    "transfer",
    "deposit",
    "reference",
    "mr",
    "mrs",
    "login",
    "password",
    "reset",
    "cc",
    "bcc",
    "ps",
    "nb",
    "ps.",
    "via",
    "per",
    "re:",
    // Street and place words of addresses.
    "viale",
    "piazza",
    "strada",
    "rotonda",
    "contrada",
    "borgo",
    "vicolo",
    "corso",
    "travessa",
    "rua",
    "avenida",
    "alameda",
    "largo",
    "circuito",
    "pasadizo",
    "calle",
    "camino",
    "carrera",
    "callejón",
    "paseo",
    "plaza",
    "ronda",
    "glorieta",
    "urbanización",
    "rue",
    "chemin",
    "boulevard",
    "bd",
    "allée",
    "impasse",
    "place",
    "quai",
    "route",
    "strasse",
    "straße",
    "str",
    "weg",
    "gasse",
    "platz",
    "allee",
    "damm",
    "ufer",
    "laan",
    "straat",
    "plein",
    "gracht",
    "kade",
    "ulica",
    "ul",
    "aleja",
    "plac",
    "osiedle",
    "gatan",
    "vägen",
    "gade",
    "vej",
    "gate",
    "veien",
    "sokak",
    "sokağı",
    "cadde",
    "caddesi",
    "mahalle",
    "mahallesi",
    "soseaua",
    "șoseaua",
    "aleea",
    "bulevardul",
    "calea",
    "splaiul",
    "piata",
    "court",
    "ct",
    "square",
    "terrace",
    "walk",
    "walks",
    "way",
    "crescent",
    "close",
    "grove",
    "gardens",
    "parkway",
    "ville",
    "villa",
    "apt",
    "apartment",
    "suite",
    "unit",
    "floor",
    "nr",
    "bl",
    "sc",
    "ap",
    "piso",
    "appartamento",
    "apartamento",
    "andar",
    "bloco",
    "condomínio",
    "vila",
    "estrada",
    "fazenda",
    "quadra",
    "setor",
    "conjunto",
    "lote",
    "colonia",
    "privada",
    "cerrada",
    "andador",
    "prolongación",
    // German.
    "ich",
    "sie",
    "wir",
    "er",
    "es",
    "der",
    "die",
    "das",
    "ein",
    "eine",
    "und",
    "oder",
    "bitte",
    "danke",
    "mit",
    "von",
    "für",
    "guten",
    "tag",
    "hallo",
    "liebe",
    "lieber",
    "sehr",
    "geehrte",
    "geehrter",
    "grüße",
    "freundlichen",
    "rufen",
    "buchen",
    "meine",
    "mein",
    "karte",
    "bankverbindung",
    "telefon",
    "handy",
    "herr",
    "frau",
    // French.
    "je",
    "vous",
    "nous",
    "il",
    "elle",
    "le",
    "la",
    "les",
    "un",
    "une",
    "et",
    "ou",
    "merci",
    "bonjour",
    "madame",
    "monsieur",
    "cher",
    "chère",
    "mon",
    "ma",
    "mes",
    "numéro",
    "cordialement",
    // Spanish, Portuguese, Italian.
    "yo",
    "usted",
    "el",
    "los",
    "las",
    "una",
    "gracias",
    "hola",
    "mi",
    "mis",
    "teléfono",
    "io",
    "lei",
    "il",
    "lo",
    "gli",
    "grazie",
    "ciao",
    "buongiorno",
    "eu",
    "você",
    "os",
    "as",
    "obrigado",
    "obrigada",
    "meu",
    "minha",
    "olá",
    "telefone",
    "numero",
    "número",
    // Dutch, Polish, Nordic.
    "ik",
    "jij",
    "wij",
    "het",
    "een",
    "dank",
    "mijn",
    "beste",
    "geachte",
    "telefoonnummer",
    "mój",
    "moja",
    "numer",
    "telefonu",
    "dzień",
    "dobry",
    "dziękuję",
    "jag",
    "du",
    "vi",
    "hej",
    "tack",
    "min",
    "mitt",
];

/// Lower-case words that join the parts of a name ("Ludwig van Beethoven").
const PARTICLES: &[&str] = &[
    "van", "von", "de", "der", "den", "du", "da", "das", "dos", "di", "del", "della", "le", "la",
    "y", "e", "bin", "al", "el", "ter", "ten", "af", "av",
];

/// What a capitalised word is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Title,
    NotName,
    Given,
    Surname,
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    start: usize,
    end: usize,
    class: Class,
}

const MAX_TOKENS: usize = 6;

/// A person's name starting at `i`, a word start whose first character is upper-case (or a
/// CJK character): its span. The span takes in a title before ("Mr. Larsen", "pan Łukasz
/// Graboń") and a degree after ("Winkler MBA").
pub(crate) fn person_at(text: &str, i: usize) -> Option<(usize, usize)> {
    let first = text[i..].chars().next()?;
    if is_cjk(first) {
        let end = cjk_name_at(text, i)?;
        return Some((title_before(text, i).unwrap_or(i), end));
    }
    if !first.is_uppercase() {
        return None;
    }
    let (start, end) = latin_name_at(text, i)?;
    let start = if start == i {
        title_before(text, i).unwrap_or(i)
    } else {
        start
    };
    Some((start, suffix_after(text, end)))
}

/// The start of a title word right before `i` (one space apart), in any case.
fn title_before(text: &str, i: usize) -> Option<usize> {
    let head = text[..i].strip_suffix(' ')?;
    let head = head.strip_suffix('.').unwrap_or(head);
    let ws = head
        .char_indices()
        .rev()
        .find(|&(_, c)| !c.is_alphabetic())
        .map_or(0, |(k, c)| k + c.len_utf8());
    let mut buf = Lower::default();
    let word = buf.of(&head[ws..]);
    (!word.is_empty() && dicts().titles.contains(word)).then_some(ws)
}

/// The end of a degree or generational suffix after a name ending at `end`, or `end`.
fn suffix_after(text: &str, end: usize) -> usize {
    let rest = text[end..]
        .strip_prefix(", ")
        .or_else(|| text[end..].strip_prefix(' '));
    let Some(rest) = rest else { return end };
    let at = text.len() - rest.len();
    SUFFIXES
        .iter()
        .filter(|s| rest.starts_with(**s))
        .map(|s| at + s.len())
        .find(|&e| {
            text[e..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric())
        })
        .unwrap_or(end)
}

/// A Latin, Greek or Cyrillic name at `i` (an upper-case letter): its span.
fn latin_name_at(text: &str, i: usize) -> Option<(usize, usize)> {
    let mut tokens = [Token {
        start: 0,
        end: 0,
        class: Class::Unknown,
    }; MAX_TOKENS];
    let n = read_run(text, i, &mut tokens);
    let run = &tokens[..n];
    // Leading words that are no names ("Thanks John Smith"): the name, if any, follows.
    let lead = run.iter().take_while(|t| t.class == Class::NotName).count();
    let titles = run[lead..]
        .iter()
        .take_while(|t| t.class == Class::Title)
        .count();
    let body_from = lead + titles;
    let body_len = run[body_from..]
        .iter()
        .enumerate()
        // After a title even an ordinary word is a name ("Ms Sales").
        .take_while(|&(k, t)| {
            matches!(t.class, Class::Given | Class::Surname | Class::Unknown)
                || (k == 0 && titles > 0 && t.class == Class::NotName)
        })
        .count();
    if lead > 0 || body_len == 0 {
        // Leading ordinary words: a name after them is decided where it starts, with these
        // words as its cue.
        return None;
    }
    let body = &run[body_from..body_from + body_len];
    let start = run[0].start;
    let end = body[body_len - 1].end;
    let named = body
        .iter()
        .any(|t| matches!(t.class, Class::Given | Class::Surname));
    if titles > 0 {
        return Some((start, end));
    }
    let cue = cue_before(text, start);
    if cue == NameCue::Strong {
        return Some((start, end));
    }
    let initial = sentence_initial(text, start);
    // A run of name words that an ordinary capitalised word ends is a title-case phrase
    // ("Apple Pay Support"), not a name.
    let cut = body_from + body_len < n;
    let accept = if body_len >= 2 {
        named || !cut || !initial || cue == NameCue::Weak
    } else {
        let t = body[0];
        (cue == NameCue::Weak && t.class != Class::Unknown)
            || (t.class == Class::Given && after_cue(text, t.end))
    };
    accept.then_some((start, end))
}

/// Reads a run of capitalised words from `i` (with titles' dots and joining particles);
/// returns how many it put in `out`.
fn read_run(text: &str, i: usize, out: &mut [Token; MAX_TOKENS]) -> usize {
    let b = text.as_bytes();
    let mut n = 0;
    let mut j = i;
    loop {
        if n > 0 && suffix_after(text, j - 1) > j {
            // A degree after the name ("Winkler B.Sc.") is not a word of it.
            break;
        }
        let Some(end) = word_end(text, j) else { break };
        let mut class = classify(&text[j..end]);
        let mut e = end;
        // "Perrin Le Teixeira", "De Luca": a particle written capitalised inside a name.
        if class == Class::NotName && n > 0 && is_particle(&text[j..end]) {
            if let Some(next) = after_space(text, end) {
                if starts_upper(text, next) {
                    class = Class::Unknown;
                }
            }
        }
        if b.get(e) == Some(&b'.') && (class == Class::Title || end - j == 1) {
            // "Mr." "Dr." and initials ("J.") keep their dot.
            e += 1;
            if class != Class::Title {
                class = Class::Unknown;
            }
        }
        out[n] = Token {
            start: j,
            end: e,
            class,
        };
        n += 1;
        if n == MAX_TOKENS || (class == Class::NotName && n > 1) {
            break;
        }
        // One space, then a capitalised word or a particle and one.
        let Some(next) = after_space(text, e) else {
            break;
        };
        let next = match particle_then_word(text, next) {
            Some(w) => w,
            None if starts_upper(text, next) => next,
            None => break,
        };
        // A particle joins two name words: the token before keeps its class.
        j = next;
    }
    n
}

/// The end of a name word at `j`: an upper-case letter, then letters, with inner hyphens and
/// apostrophes ("Hill-Miller", "O'Brien", "Schuylenborch-van").
fn word_end(text: &str, j: usize) -> Option<usize> {
    let mut chars = text[j..].char_indices().peekable();
    let (_, c0) = chars.next()?;
    if !c0.is_uppercase() {
        return None;
    }
    let mut end = j + c0.len_utf8();
    while let Some((k, c)) = chars.next() {
        if c.is_alphabetic() {
            end = j + k + c.len_utf8();
        } else if matches!(c, '-' | '\'' | '’')
            && chars.peek().is_some_and(|&(_, d)| d.is_alphabetic())
        {
            continue;
        } else {
            break;
        }
    }
    // A word that runs into digits ("A1", "Q3") is a code, not a name.
    if text[end..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric())
    {
        return None;
    }
    Some(end)
}

fn starts_upper(text: &str, i: usize) -> bool {
    text[i..].chars().next().is_some_and(char::is_uppercase)
}

/// The byte after one space (or no-break space) at `i`.
fn after_space(text: &str, i: usize) -> Option<usize> {
    let rest = text.get(i..)?;
    if rest.starts_with(' ') {
        Some(i + 1)
    } else if rest.starts_with('\u{a0}') {
        Some(i + 2)
    } else {
        None
    }
}

/// One or two lower-case particles at `i`, each followed by one space, then a capitalised
/// word ("van Beethoven", "de la Monnier"): that word.
fn particle_then_word(text: &str, i: usize) -> Option<usize> {
    let mut at = i;
    for _ in 0..2 {
        let rest = &text[at..];
        let len = rest.find(' ')?;
        if !dicts().particles.contains(&rest[..len]) {
            return None;
        }
        at += len + 1;
        if starts_upper(text, at) {
            return Some(at);
        }
    }
    None
}

fn is_particle(word: &str) -> bool {
    let mut buf = Lower::default();
    dicts().particles.contains(buf.of(word))
}

/// What the capitalised word `w` is.
fn classify(w: &str) -> Class {
    let d = dicts();
    let mut buf = Lower::default();
    let key = buf.of(w).trim_end_matches('.');
    if d.titles.contains(key) {
        return Class::Title;
    }
    if d.not_names.contains(key) {
        return Class::NotName;
    }
    // An all-capitals word of two or more letters is an acronym ("SSN", "IBAN").
    if w.chars().count() > 1 && w.chars().all(|c| !c.is_lowercase()) {
        return Class::NotName;
    }
    // The Census lists are unaccented: "José" is looked up as "jose" too.
    let in_set = |set: &HashSet<&'static str>, w: &str| {
        set.contains(w) || folded_of(w).is_some_and(|f| set.contains(f.as_str()))
    };
    let parts = || key.split(['-', '\'', '’']).filter(|p| !p.is_empty());
    if in_set(&d.given, key) {
        return Class::Given;
    }
    if in_set(&d.surnames, key) || parts().any(|p| in_set(&d.surnames, p)) {
        return Class::Surname;
    }
    if parts().any(|p| in_set(&d.given, p)) {
        return Class::Given;
    }
    if slavic_surname(key) {
        return Class::Surname;
    }
    Class::Unknown
}

/// `w` without the accents of Latin letters ("józsef" → "jozsef"), when it has any.
fn folded_of(w: &str) -> Option<String> {
    if w.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        out.push(match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'ď' => 'd',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
            'ğ' => 'g',
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' => 'i',
            'ł' | 'ľ' | 'ĺ' => 'l',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
            'ř' => 'r',
            'ś' | 'š' | 'ş' | 'ș' => 's',
            'ť' | 'ţ' | 'ț' => 't',
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
            'ý' | 'ÿ' => 'y',
            'ź' | 'ż' | 'ž' => 'z',
            c => c,
        });
    }
    (out != w).then_some(out)
}

/// Russian, Ukrainian and other Slavic surnames and patronymics by their endings.
fn slavic_surname(w: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "ов", "ова", "ев", "ева", "ёв", "ёва", "ин", "ина", "ын", "ына", "ский", "ская", "цкий",
        "цкая", "енко", "ович", "евич", "овна", "евна", "ична", "ук", "юк", "ских", "ых", "owski",
        "owska", "ewski", "ewska", "icz", "czyk",
    ];
    w.chars().count() >= 5 && ENDINGS.iter().any(|e| w.ends_with(e))
}

/// What the words before a run say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameCue {
    None,
    Weak,
    Strong,
}

/// The cue in the one or two words before byte `start` (in the same sentence).
fn cue_before(text: &str, start: usize) -> NameCue {
    let head = &text[..start];
    let mut words: [&str; 2] = ["", ""];
    let mut end = head.len();
    for slot in &mut words {
        let Some((ws, we)) = prev_word(head, end, |c| c.is_alphanumeric() || c == '\'') else {
            break;
        };
        if head[we..end].contains(['.', '!', '?', '\n', ';']) {
            break;
        }
        *slot = &head[ws..we];
        end = ws;
    }
    let (mut b1, mut b2) = (Lower::default(), Lower::default());
    let (w1, w2) = (b1.of(words[0]), b2.of(words[1]));
    if w1.is_empty() {
        return NameCue::None;
    }
    let d = dicts();
    // A closing and a comma right before: "Thanks, Agnieszka", "Best, Jean".
    if head.trim_end().ends_with(',') && d.closings.contains(w1) {
        return NameCue::Strong;
    }
    if d.strong.contains(w1) || STRONG_PAIRS.iter().any(|&(a, b)| a == w2 && b == w1) {
        return NameCue::Strong;
    }
    if d.weak.contains(w1) {
        return NameCue::Weak;
    }
    NameCue::None
}

/// Whether the word after byte `end` shows a name before it ("Emma called").
fn after_cue(text: &str, end: usize) -> bool {
    let rest = text[end..].trim_start_matches([' ', ',']);
    let len = rest
        .char_indices()
        .find(|&(_, c)| !c.is_alphabetic())
        .map_or(rest.len(), |(k, _)| k);
    let mut buf = Lower::default();
    dicts().after.contains(buf.of(&rest[..len]))
}

/// Whether byte `start` opens a sentence (or the text).
fn sentence_initial(text: &str, start: usize) -> bool {
    let prev = text[..start].trim_end().chars().next_back();
    matches!(
        prev,
        None | Some('.' | '!' | '?' | '\n' | '"' | '“' | '(' | '-' | '–' | '—')
    )
}

/// Han, kana and Hangul: the scripts whose names are matched by family name.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff)
}

/// A CJK name at `i`: a run of 2–4 CJK characters that begins with a listed family name, or a
/// family name alone followed by a space and 1–3 CJK characters (Japanese order with a space).
fn cjk_name_at(text: &str, i: usize) -> Option<usize> {
    let run_end = |from: usize| {
        text[from..]
            .char_indices()
            .find(|&(_, c)| !is_cjk(c))
            .map_or(text.len(), |(k, _)| from + k)
    };
    let end = run_end(i);
    let run = &text[i..end];
    let chars = run.chars().count();
    let d = dicts();
    let by_surname = || {
        let surname_len = (1..=3).rev().filter(|&k| k <= chars).find(|&k| {
            let cut = run.char_indices().nth(k).map_or(run.len(), |(b, _)| b);
            d.cjk.contains(&run[..cut])
        })?;
        if (2..=4).contains(&chars) && surname_len < chars {
            return Some(end);
        }
        if surname_len < chars {
            return None;
        }
        // "山本 浩": the given name after one space.
        let next = after_space(text, end)?;
        if !text[next..].chars().next().is_some_and(is_cjk) {
            return None;
        }
        let given_end = run_end(next);
        let given = text[next..given_end].chars().count();
        (1..=3).contains(&given).then_some(given_end)
    };
    by_surname().or_else(|| {
        // After a title or a cue word ("Mr. 刘", "my daughter 영숙"), a short run is a name.
        let cued = title_before(text, i).is_some() || cue_before(text, i) == NameCue::Strong;
        ((1..=4).contains(&chars) && cued).then_some(end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name found in `text`, trying each word start as the scanner does.
    fn names(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let starts = text.is_char_boundary(i)
                && text[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric());
            if starts {
                if let Some((s, e)) = person_at(text, i) {
                    out.push(&text[s..e]);
                    i = e;
                    continue;
                }
            }
            i += 1;
        }
        out
    }

    #[test]
    fn names_by_dictionary_title_and_cue() {
        assert_eq!(
            names("Spoke with Christopher Larsen about it."),
            ["Christopher Larsen"]
        );
        assert_eq!(names("Mr. Larsen said the box was empty."), ["Mr. Larsen"]);
        assert_eq!(
            names("Dear Zoé-Claude Carlier, thanks."),
            ["Zoé-Claude Carlier"]
        );
        assert_eq!(
            names("Kind regards, Jamie Schuylenborch-van Westfalen"),
            ["Jamie Schuylenborch-van Westfalen"]
        );
        assert_eq!(names("My daughter Emelie opened it."), ["Emelie"]);
        assert_eq!(names("Hi Hilkka, the part ships Monday."), ["Hilkka"]);
        assert_eq!(names("Emma called about the bill."), ["Emma"]);
        assert_eq!(
            names("Ask for Ludwig van Beethoven please"),
            ["Ludwig van Beethoven"]
        );
        assert_eq!(
            names("Prof. Dr. Balogh Botond Attila wrote"),
            ["Prof. Dr. Balogh Botond Attila"]
        );
        assert_eq!(
            names("Spoke with Громова Таисия Максимовна today"),
            ["Громова Таисия Максимовна"]
        );
        assert_eq!(
            names("Thanks to 山本 浩 and 庞桂花 for help"),
            ["山本 浩", "庞桂花"]
        );
        assert_eq!(names("Spoke with 이정웅 yesterday"), ["이정웅"]);
        assert_eq!(names("Mr. 刘 said so; ask for 平."), ["Mr. 刘", "平"]);
        assert_eq!(names("pan Łukasz Graboń asked"), ["pan Łukasz Graboń"]);
        assert_eq!(
            names("Kind regards, Ing. Bernfried Winkler B.Sc."),
            ["Ing. Bernfried Winkler B.Sc."]
        );
        assert_eq!(
            names("Charlotte Perrin Le Teixeira changed it"),
            ["Charlotte Perrin Le Teixeira"]
        );
        assert_eq!(names("Ms Sales will be back."), ["Ms Sales"]);
        assert_eq!(
            names("Bariş Bilir (SSN 201-02-1937) asked"),
            ["Bariş Bilir"]
        );
    }

    #[test]
    fn ordinary_capitalised_words_are_no_names() {
        assert!(names("Please update the Visa Card on my Account.").is_empty());
        assert!(names("The invoice was sent on Monday, March 3.").is_empty());
        assert!(names("Firmware Update failed; Customer Support will call.").is_empty());
        assert!(names("Bitte buchen Sie von meiner Karte ab.").is_empty());
        assert!(names("SSN and IBAN were masked. Q3 revenue rose.").is_empty());
        assert!(names("Go to Settings and press Save.").is_empty());
        assert!(names("He lives at Via Roma 5, Piazza Navona.").is_empty());
        assert!(names("这是一段很长的中文句子没有名字在里面").is_empty());
    }
}
