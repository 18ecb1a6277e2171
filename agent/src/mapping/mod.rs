//! Mapping: vendor accounts to PSA companies, vendor services to PSA products.

/// The commented starter mapping file `tally init` writes.
pub const STARTER: &str = r#"# tally mapping file: vendor accounts -> PSA companies, vendor services -> PSA products.
# Accounts whose name equals a PSA company's name are matched automatically; everything here
# wins over automatic matches. `tally map suggest --format toml` prints entries to paste.
#
# [[account]]
# vendor = "safedns"
# id = "acct-1001"              # the vendor's account id
# company = 250                 # a PSA company id, or a unique company name
#
# [[account]]
# vendor = "safedns"
# id = "internal-lab"
# exclude = true                # not billed
#
# [[service]]
# vendor = "safedns"
# id = "safedns-pro"
# product = "SAFEDNS-SEAT"      # a PSA product id, identifier or unique name
# rounding = "ceil"             # ceil | round | exact
"#;
