//! Words the emulators' generated fixtures draw from, shared so that every PSA's generated MSP
//! sells the same product families. Data only: nothing here decides how a fixture is built.

/// Product families of a generated MSP: an SKU prefix and what it sells.
pub(crate) const SKU_FAMILIES: [(&str, &str); 8] = [
    ("DNS", "DNS filtering"),
    ("M365", "Microsoft 365"),
    ("BKP", "Backup"),
    ("EDR", "Endpoint protection"),
    ("SAT", "Security training"),
    ("MAIL", "Email security"),
    ("RMM", "Remote monitoring"),
    ("VOIP", "Hosted voice"),
];
