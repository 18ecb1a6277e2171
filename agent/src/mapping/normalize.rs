//! Name normalisation: the level-1 form that decides automatic matches, the looser level-2 key
//! that only ever feeds suggestions, and the display form that makes invisible code points
//! visible.
//!
//! Level 1 (CASES.md): every White_Space character becomes an ASCII space, U+200B–U+200D and
//! U+FEFF are removed, the text is put in Unicode NFC, runs of spaces collapse to one and the
//! ends are trimmed. Two names equal after it are the same name. Level 2 additionally folds
//! case, accents, punctuation and legal suffixes; it must never decide a match by itself.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Zero-width code points removed by level-1 normalisation.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{FEFF}')
}

/// The level-1 form of a name: equal level-1 forms are the same name.
pub fn level1(name: &str) -> String {
    let mapped: String = name
        .chars()
        .filter(|&c| !is_zero_width(c))
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if mapped.is_ascii() {
        // ASCII text is already in NFC.
        return collapse_spaces(&mapped);
    }
    collapse_spaces(&mapped.nfc().collect::<String>())
}

fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Company-form words folded away at the end of a level-2 key, written as they read once
/// case and punctuation are folded ("L.L.C." reads "llc", "Pty. Ltd." reads "pty ltd").
const LEGAL_SUFFIXES: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "gmbh",
    "corp",
    "corporation",
    "co",
    "plc",
    "pty",
    "sa",
    "ag",
    "bv",
    "nv",
    "srl",
    "sarl",
    "sas",
    "spa",
    "ab",
    "oy",
    "kg",
    "pte",
    "pvt",
    "kk",
];

/// One step of the level-2 key, in the order they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fold {
    Case,
    Accents,
    Punctuation,
    LegalSuffix,
}

impl Fold {
    pub const ALL: [Fold; 4] = [Fold::Case, Fold::Accents, Fold::Punctuation, Fold::LegalSuffix];

    /// What differs between two names that this fold made equal.
    pub fn reason(self) -> &'static str {
        match self {
            Fold::Case => "case differs",
            Fold::Accents => "accents differ",
            Fold::Punctuation => "punctuation differs",
            Fold::LegalSuffix => "legal suffix differs",
        }
    }
}

/// The level-2 key of a name with every fold applied.
pub fn level2(name: &str) -> String {
    level2_with(name, &Fold::ALL)
}

/// The level-2 key with only the given folds applied (to tell which folds made two names meet).
pub fn level2_with(name: &str, folds: &[Fold]) -> String {
    let mut text = level1(name);
    if folds.contains(&Fold::Case) {
        text = text.to_lowercase();
    }
    if folds.contains(&Fold::Accents) && !text.is_ascii() {
        text = text.nfkd().filter(|&c| !is_combining_mark(c)).nfc().collect();
    }
    if folds.contains(&Fold::Punctuation) {
        text = fold_punctuation(&text);
    }
    if folds.contains(&Fold::LegalSuffix) {
        text = fold_legal_suffix(&text);
    }
    text
}

/// Drops dots and apostrophes inside words ("L.L.C." → "LLC", "O'Brien" → "OBrien"), turns
/// any other character that is neither a letter, a digit nor a space into a space, and writes
/// "&" as "and".
fn fold_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '.' | '\'' | '\u{2019}' => {}
            '&' => out.push_str(" and "),
            c if c.is_alphanumeric() || c == ' ' => out.push(c),
            _ => out.push(' '),
        }
    }
    collapse_spaces(&out)
}

/// Removes legal-form words from the end, but never the last remaining word.
fn fold_legal_suffix(text: &str) -> String {
    let mut words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    while words.len() > 1
        && words.last().is_some_and(|w| LEGAL_SUFFIXES.contains(&w.to_lowercase().as_str()))
    {
        words.pop();
    }
    words.join(" ")
}

/// The folds two names need to meet: each fold without which their keys would differ. Empty
/// when the names differ even with every fold, or are already equal at level 1.
pub fn folds_needed(a: &str, b: &str) -> Vec<Fold> {
    if level2(a) != level2(b) {
        return Vec::new();
    }
    Fold::ALL
        .into_iter()
        .filter(|fold| {
            let without: Vec<Fold> = Fold::ALL.into_iter().filter(|f| f != fold).collect();
            level2_with(a, &without) != level2_with(b, &without)
        })
        .collect()
}

/// The words of a level-2 key.
pub fn tokens(key: &str) -> Vec<&str> {
    let mut words: Vec<&str> = key.split(' ').filter(|w| !w.is_empty()).collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// The name with every invisible or unusual space shown as its code point, for mismatch
/// displays: `Contoso<U+00A0>Ltd`.
pub fn visible(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let hidden = (c.is_whitespace() && c != ' ')
            || is_zero_width(c)
            || c.is_control()
            || matches!(
                c,
                '\u{00AD}'
                    | '\u{115F}'
                    | '\u{1160}'
                    | '\u{180E}'
                    | '\u{200E}'
                    | '\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2064}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{3164}'
                    | '\u{FFA0}'
            );
        if hidden {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level1_maps_every_unicode_space_to_one_ascii_space() {
        for space in ['\u{00A0}', '\u{2003}', '\u{202F}', '\u{3000}', '\t', '\u{2028}', '\u{1680}']
        {
            assert_eq!(level1(&format!("Contoso{space}Ltd")), "Contoso Ltd", "{space:?}");
        }
    }

    #[test]
    fn level1_removes_zero_width_characters() {
        for zw in ['\u{200B}', '\u{200C}', '\u{200D}', '\u{FEFF}'] {
            assert_eq!(level1(&format!("{zw}Contoso Ltd{zw}")), "Contoso Ltd", "{zw:?}");
        }
    }

    #[test]
    fn level1_collapses_runs_and_trims() {
        assert_eq!(level1("  Contoso \u{00A0}\u{200B} Ltd  "), "Contoso Ltd");
        assert_eq!(level1("\u{200B}"), "");
    }

    #[test]
    fn level1_composes_to_nfc() {
        assert_eq!(level1("Cafe\u{0301}"), "Caf\u{00E9}");
        assert_eq!(level1("Cafe\u{200D}\u{0301}"), "Caf\u{00E9}");
    }

    #[test]
    fn level1_keeps_case_and_punctuation() {
        assert_ne!(level1("ACME Inc."), level1("Acme Inc."));
        assert_ne!(level1("Acme Inc"), level1("Acme Inc."));
    }

    #[test]
    fn level2_folds_case_punctuation_accents_and_suffixes() {
        assert_eq!(level2("Acme, Inc."), "acme");
        assert_eq!(level2("ACME, Inc"), "acme");
        assert_eq!(level2("Northwind Traders L.L.C."), "northwind traders");
        assert_eq!(level2("Northwind Traders LLC "), "northwind traders");
        assert_eq!(level2("Contoso Limited"), "contoso");
        assert_eq!(level2("Fabrikam Pty. Ltd."), "fabrikam");
        assert_eq!(level2("Café Müller GmbH"), "cafe muller");
        assert_eq!(level2("Smith & Sons"), "smith and sons");
        assert_eq!(level2("Acme Holdings Inc."), "acme holdings");
        assert_eq!(level2("Inc."), "inc", "the last word is never folded away");
    }

    #[test]
    fn folds_needed_names_each_difference() {
        assert_eq!(folds_needed("Acme Inc.", "Acme, Inc."), vec![Fold::Punctuation]);
        assert_eq!(folds_needed("ACME, Inc", "Acme, Inc."), vec![Fold::Case, Fold::Punctuation]);
        assert_eq!(folds_needed("Contoso Ltd", "Contoso Limited"), vec![Fold::LegalSuffix]);
        assert_eq!(folds_needed("Acme Inc.", "Acme Holdings Inc."), vec![]);
    }

    #[test]
    fn visible_shows_invisible_code_points() {
        assert_eq!(visible("Contoso\u{00A0}Ltd"), "Contoso<U+00A0>Ltd");
        assert_eq!(visible("Contoso Ltd\u{200B}"), "Contoso Ltd<U+200B>");
        assert_eq!(visible("Contoso Ltd"), "Contoso Ltd");
        // Direction marks and isolates, and fillers that render as nothing.
        assert_eq!(visible("Ltd\u{200E}\u{2067}x\u{2069}"), "Ltd<U+200E><U+2067>x<U+2069>");
        assert_eq!(visible("\u{3164}Contoso"), "<U+3164>Contoso");
    }
}
