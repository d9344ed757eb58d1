//! Word lists the generator draws from: people's names, e-mail domains, countries, products.
//!
//! The lists are fixed so that a seed always means the same dataset. Names come from many
//! origins and some carry non-ASCII letters, because PII detectors and tokenizers that only ever
//! see "John Smith" fail on real data.

use std::sync::OnceLock;

/// Given names, about 200, from many origins.
#[rustfmt::skip]
pub(crate) const FIRST_NAMES: &[&str] = &[
    // English-speaking countries
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Christopher", "Nancy", "Daniel", "Lisa", "Matthew", "Betty", "Anthony",
    "Margaret", "Mark", "Sandra", "Emily", "Ashley", "Joshua", "Amanda", "Andrew", "Megan", "Ryan",
    "Hannah", "Tyler", "Olivia", "Ethan", "Emma", "Noah", "Ava", "Liam", "Sophia", "Mason",
    "Chloe", "Logan", "Grace",
    // Spanish and Portuguese
    "José", "María", "Juan", "Carmen", "Luis", "Lucía", "Carlos", "Sofía", "Miguel", "Valentina",
    "Alejandro", "Camila", "Diego", "Isabela", "Javier", "Paula", "Andrés", "Mariana", "Raúl",
    "Inés", "Mateo", "Gabriel", "João", "Ana", "Pedro", "Beatriz", "Thiago", "Larissa", "Gonçalo",
    "Fernanda",
    // French
    "Jean", "Camille", "Louis", "Chloé", "Hugo", "Léa", "Théo", "Manon", "Étienne", "Amélie",
    "François", "Margaux", "Noémie", "Renée",
    // German, Nordic
    "Lukas", "Anna", "Jonas", "Lena", "Maximilian", "Leonie", "Felix", "Jürgen", "Sören", "Mia",
    "Matthias", "Katharina", "Sven", "Astrid", "Björn", "Ingrid", "Lars", "Freya", "Søren",
    "Sigrid",
    // Polish, Russian
    "Łukasz", "Agnieszka", "Piotr", "Katarzyna", "Wojciech", "Małgorzata", "Tomasz", "Zofia",
    "Dmitri", "Olga", "Ivan", "Natalia",
    // Vietnamese, Chinese
    "Minh", "Linh", "Anh", "Huong", "Tuấn", "Thảo", "Wei", "Li", "Jing", "Hao", "Xiaoming", "Mei",
    "Yan", "Jun",
    // Indian
    "Aarav", "Priya", "Rahul", "Ananya", "Vikram", "Deepika", "Arjun", "Kavya", "Rohan", "Sneha",
    "Sanjay", "Lakshmi",
    // Arabic, Turkish
    "Mohammed", "Fatima", "Ahmed", "Aisha", "Omar", "Layla", "Youssef", "Noor", "Karim", "Zainab",
    "Amir", "Emre", "Elif", "Mehmet", "Zeynep", "Ayşe",
    // West, East and Southern African
    "Chinedu", "Ngozi", "Kwame", "Amara", "Oluwaseun", "Adaeze", "Tendai", "Thandiwe", "Kofi",
    "Abena", "Chidi", "Ifeoma",
    // Japanese, Korean
    "Haruto", "Yui", "Sota", "Sakura", "Ji-woo", "Min-jun", "Seo-yeon", "Hyun-woo",
    // Italian, Greek, Irish
    "Giulia", "Marco", "Francesca", "Alessandro", "Chiara", "Matteo", "Nikos", "Eleni", "Siobhán",
    "Niamh", "Seán", "Zoë",
];

/// Family names, about 200, from many origins.
#[rustfmt::skip]
pub(crate) const LAST_NAMES: &[&str] = &[
    // English-speaking countries
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris",
    "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Hill",
    "Green", "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Campbell", "Roberts", "Evans",
    "Turner", "Parker", "Collins", "O'Brien", "Murphy", "Kelly", "Sullivan", "Walsh",
    // Spanish and Portuguese
    "García", "Rodríguez", "Martínez", "Hernández", "López", "González", "Pérez", "Sánchez",
    "Ramírez", "Torres", "Flores", "Rivera", "Gómez", "Díaz", "Morales", "Jiménez", "Ruiz",
    "Álvarez", "Castillo", "Núñez", "Silva", "Santos", "Oliveira", "Souza", "Pereira", "Costa",
    "Ferreira", "Almeida", "Carvalho", "Gonçalves",
    // French
    "Bernard", "Dubois", "Durand", "Lefèvre", "Moreau", "Laurent", "Girard", "Rousseau",
    "Fontaine", "Leroy", "Bonnet", "Mercier",
    // German, Dutch, Nordic
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Koch", "Schäfer", "Köhler", "Weiß", "de Jong", "Jansen", "de Vries", "van Dijk",
    "Bakker", "Visser", "Johansson", "Andersson", "Nilsson", "Hansen", "Larsen", "Sørensen",
    "Berg", "Lindqvist", "Virtanen", "Korhonen",
    // Polish, Russian, Ukrainian
    "Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski", "Zieliński",
    "Szymański", "Ivanov", "Petrova", "Smirnov", "Kuznetsova", "Popov", "Shevchenko",
    "Kovalenko",
    // Vietnamese, Chinese, Korean, Japanese
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Wang", "Zhang", "Liu", "Chen", "Yang",
    "Huang", "Zhao", "Wu", "Zhou", "Xu", "Kim", "Park", "Choi", "Jung", "Sato", "Suzuki",
    "Takahashi", "Tanaka", "Watanabe", "Yamamoto",
    // Indian
    "Patel", "Sharma", "Singh", "Kumar", "Gupta", "Reddy", "Iyer", "Nair", "Mehta", "Chatterjee",
    "Desai", "Rao",
    // Arabic, Turkish, Greek
    "Haddad", "Khalil", "Mansour", "Nasser", "Saleh", "El-Amin", "Abdullah", "Rahman", "Hussain",
    "Farouk", "Yılmaz", "Kaya", "Demir", "Öztürk", "Papadopoulos", "Georgiou",
    // African
    "Okafor", "Adeyemi", "Mensah", "Okonkwo", "Nwosu", "Boateng", "Mwangi", "Dlamini", "Abubakar",
    "Diallo",
    // Italian
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
];

/// Mail domains. All are reserved for documentation or testing (RFC 2606, RFC 6761), so a
/// generated address can never reach a real mailbox.
pub(crate) const EMAIL_DOMAINS: &[(&str, u32)] = &[
    ("example.com", 40),
    ("example.org", 15),
    ("example.net", 15),
    ("mail.example", 10),
    ("inbox.example", 8),
    ("post.example", 5),
    ("webmail.test", 4),
    ("corp.example", 3),
];

/// ISO 3166-1 alpha-2 codes with weights in per mille: a US-heavy customer base.
pub(crate) const COUNTRIES: &[(&str, u32)] = &[
    ("US", 380),
    ("GB", 120),
    ("DE", 90),
    ("FR", 70),
    ("IN", 70),
    ("BR", 50),
    ("CA", 50),
    ("AU", 30),
    ("ES", 25),
    ("IT", 25),
    ("NL", 20),
    ("MX", 20),
    ("PL", 15),
    ("JP", 15),
    ("SE", 10),
    ("VN", 10),
];

/// Things customers complain about.
pub(crate) const PRODUCTS: &[&str] = &[
    "wireless earbuds",
    "phone case",
    "smart watch",
    "coffee grinder",
    "desk lamp",
    "running shoes",
    "backpack",
    "e-reader",
    "USB-C charger",
    "air fryer",
    "yoga mat",
    "gaming mouse",
    "kettle",
    "winter jacket",
    "baby monitor",
];

/// Parcel carriers.
pub(crate) const CARRIERS: &[&str] = &[
    "UPS",
    "DHL",
    "FedEx",
    "USPS",
    "Royal Mail",
    "La Poste",
    "Hermes",
    "DPD",
    "Correos",
];

/// Days of the week, as customers write them.
pub(crate) const WEEKDAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The given names folded to lowercase ASCII, index-aligned with [`FIRST_NAMES`].
pub(crate) fn first_names_ascii() -> &'static [String] {
    static FOLDED: OnceLock<Vec<String>> = OnceLock::new();
    FOLDED.get_or_init(|| FIRST_NAMES.iter().map(|n| ascii_fold(n)).collect())
}

/// The family names folded to lowercase ASCII, index-aligned with [`LAST_NAMES`].
pub(crate) fn last_names_ascii() -> &'static [String] {
    static FOLDED: OnceLock<Vec<String>> = OnceLock::new();
    FOLDED.get_or_init(|| LAST_NAMES.iter().map(|n| ascii_fold(n)).collect())
}

/// Folds a name to the lowercase ASCII letters an e-mail local part would use:
/// "José" → "jose", "Łukasz" → "lukasz", "O'Brien" → "obrien", "Weiß" → "weiss".
///
/// Only the letters that occur in the lists above are mapped; the tests check that none is lost.
pub(crate) fn ascii_fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() {
            out.push(ch);
            continue;
        }
        let folded = match ch {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ạ' | 'ả' | 'ấ' | 'ầ' | 'ă' => "a",
            'é' | 'è' | 'ê' | 'ë' | 'ễ' | 'ế' | 'ệ' => "e",
            'í' | 'ì' | 'î' | 'ï' | 'ı' => "i",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'ồ' | 'ơ' => "o",
            'ú' | 'ù' | 'û' | 'ü' | 'ũ' | 'ư' => "u",
            'ç' | 'ć' => "c",
            'ñ' | 'ń' => "n",
            'ł' => "l",
            'ś' | 'ş' => "s",
            'ź' | 'ż' => "z",
            'ß' => "ss",
            _ => "",
        };
        out.push_str(folded);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_have_about_two_hundred_distinct_names() {
        for list in [FIRST_NAMES, LAST_NAMES] {
            assert!((190..=220).contains(&list.len()), "{} names", list.len());
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "duplicate name");
        }
    }

    #[test]
    fn lists_include_non_ascii_names() {
        for name in ["José", "Zoë", "Łukasz"] {
            assert!(FIRST_NAMES.contains(&name), "{name}");
        }
        assert!(LAST_NAMES.contains(&"Nguyễn"));
    }

    #[test]
    fn every_letter_of_every_name_folds() {
        for name in FIRST_NAMES.iter().chain(LAST_NAMES) {
            let folded = ascii_fold(name);
            let letters = name.chars().filter(|c| c.is_alphabetic()).count();
            let extra = name.matches('ß').count();
            assert_eq!(folded.len(), letters + extra, "{name} → {folded}");
            assert!(
                folded.bytes().all(|b| b.is_ascii_lowercase()),
                "{name} → {folded}"
            );
        }
        assert_eq!(ascii_fold("Nguyễn"), "nguyen");
        assert_eq!(ascii_fold("Étienne"), "etienne");
        assert_eq!(ascii_fold("van Dijk"), "vandijk");
    }

    #[test]
    fn weights_add_up() {
        let countries: u32 = COUNTRIES.iter().map(|c| c.1).sum();
        assert_eq!(countries, 1000);
        assert!(COUNTRIES.iter().all(|(code, _)| code.len() == 2));
    }
}
