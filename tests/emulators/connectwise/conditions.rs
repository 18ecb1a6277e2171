//! The `conditions` query language of ConnectWise's REST API: a tokenizer, a recursive-descent
//! parser that checks every field and value against the resource's field table, and an
//! evaluator. Supported: `= != < <= > >= contains like in not in`, `and`/`or` (any case) with
//! parentheses, double-quoted strings with `\"` and `\\` escapes, decimal numbers,
//! `true`/`false`/`null`, and instants in square brackets. A date anywhere else is refused, as
//! ConnectWise refuses it. Text compares without regard to case, like ConnectWise's database;
//! a null field satisfies only `= null` (SQL semantics). This module never sees HTTP: it takes
//! the already-decoded text and answers a match or a `ConditionError`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::fields::{Field, Kind, Record, Scalar, text_cmp};
use super::state::State;
use super::timestamps::parse_instant;

/// Why a `conditions` (or `orderBy`) text was refused; becomes a 400 body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionError {
    pub message: String,
    /// The field the error is about, when there is one.
    pub field: Option<String>,
}

impl ConditionError {
    fn at(position: usize, message: impl fmt::Display) -> ConditionError {
        ConditionError { message: format!("{message} at position {position}"), field: None }
    }

    fn field(field: &str, message: impl fmt::Display) -> ConditionError {
        ConditionError { message: message.to_string(), field: Some(field.to_owned()) }
    }
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Like,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Contains => "contains",
            CmpOp::Like => "like",
        }
    }
}

/// A value written in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Number(Decimal),
    Text(String),
    Flag(bool),
    Instant(OffsetDateTime),
}

impl Literal {
    fn describe(&self) -> &'static str {
        match self {
            Literal::Null => "null",
            Literal::Number(_) => "a number",
            Literal::Text(_) => "a string",
            Literal::Flag(_) => "a boolean",
            Literal::Instant(_) => "a date",
        }
    }
}

/// A parsed condition over records of type `T`, with every field resolved.
pub enum Condition<T: 'static> {
    Compare { field: &'static Field<T>, op: CmpOp, value: Literal },
    In { field: &'static Field<T>, negated: bool, values: Vec<Literal> },
    And(Vec<Condition<T>>),
    Or(Vec<Condition<T>>),
}

impl<T: 'static> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare { field, op, value } => {
                write!(f, "{} {} {:?}", field.path, op.symbol(), value)
            }
            Condition::In { field, negated, values } => {
                let not = if *negated { "not " } else { "" };
                write!(f, "{} {not}in {values:?}", field.path)
            }
            Condition::And(parts) => f.debug_tuple("And").field(parts).finish(),
            Condition::Or(parts) => f.debug_tuple("Or").field(parts).finish(),
        }
    }
}

/// Parses `text` against the fields of `T`.
pub fn parse<T: Record>(text: &str) -> Result<Condition<T>, ConditionError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, next: 0, end: text.chars().count(), depth: 0 };
    let condition = parser.parse_or::<T>()?;
    match parser.peek() {
        None => Ok(condition),
        Some(t) => Err(ConditionError::at(t.at, format!("Unexpected {}", t.token.describe()))),
    }
}

impl<T: Record> Condition<T> {
    pub fn matches(&self, record: &T, state: &State) -> bool {
        match self {
            Condition::Compare { field, op, value } => {
                compare((field.get)(record, state), *op, value)
            }
            Condition::In { field, negated, values } => {
                let actual = (field.get)(record, state);
                if actual == Scalar::Null {
                    return false;
                }
                let found = values.iter().any(|v| compare(actual.clone(), CmpOp::Eq, v));
                found != *negated
            }
            Condition::And(parts) => parts.iter().all(|p| p.matches(record, state)),
            Condition::Or(parts) => parts.iter().any(|p| p.matches(record, state)),
        }
    }
}

fn compare(actual: Scalar<'_>, op: CmpOp, wanted: &Literal) -> bool {
    if *wanted == Literal::Null {
        return match op {
            CmpOp::Eq => actual == Scalar::Null,
            CmpOp::Ne => actual != Scalar::Null,
            _ => false,
        };
    }
    match (op, &actual, wanted) {
        (_, Scalar::Null, _) => false,
        (CmpOp::Contains, Scalar::Text(text), Literal::Text(part)) => {
            text.to_lowercase().contains(&part.to_lowercase())
        }
        (CmpOp::Like, Scalar::Text(text), Literal::Text(pattern)) => like(text, pattern),
        (CmpOp::Contains | CmpOp::Like, _, _) => false,
        _ => {
            let Some(ordering) = order(&actual, wanted) else { return false };
            match op {
                CmpOp::Eq => ordering == Ordering::Equal,
                CmpOp::Ne => ordering != Ordering::Equal,
                CmpOp::Lt => ordering == Ordering::Less,
                CmpOp::Le => ordering != Ordering::Greater,
                CmpOp::Gt => ordering == Ordering::Greater,
                CmpOp::Ge => ordering != Ordering::Less,
                CmpOp::Contains | CmpOp::Like => false,
            }
        }
    }
}

fn order(actual: &Scalar<'_>, wanted: &Literal) -> Option<Ordering> {
    match (actual, wanted) {
        (Scalar::Number(a), Literal::Number(b)) => Some(a.cmp(b)),
        (Scalar::Text(a), Literal::Text(b)) => Some(text_cmp(a, b)),
        (Scalar::Flag(a), Literal::Flag(b)) => Some(a.cmp(b)),
        (Scalar::Instant(a), Literal::Instant(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// SQL-style `like` with `*` or `%` as the wildcard for any run of characters, ignoring case.
fn like(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let pattern = pattern.to_lowercase();
    let parts: Vec<&str> = pattern.split(['*', '%']).collect();
    let [first, middle @ .., last] = parts.as_slice() else { return text == pattern };
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Path(String),
    Text(String),
    Number(Decimal),
    Instant(OffsetDateTime),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    In,
    True,
    False,
    Null,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Path(p) => format!("field '{p}'"),
            Token::Text(t) => format!("string \"{t}\""),
            Token::Number(n) => format!("number {n}"),
            Token::Instant(_) => "date".to_owned(),
            Token::Op(op) => format!("operator '{}'", op.symbol()),
            Token::LParen => "'('".to_owned(),
            Token::RParen => "')'".to_owned(),
            Token::Comma => "','".to_owned(),
            Token::And => "'and'".to_owned(),
            Token::Or => "'or'".to_owned(),
            Token::Not => "'not'".to_owned(),
            Token::In => "'in'".to_owned(),
            Token::True => "'true'".to_owned(),
            Token::False => "'false'".to_owned(),
            Token::Null => "'null'".to_owned(),
        }
    }
}

#[derive(Debug)]
struct Spanned {
    token: Token,
    /// Character position in the condition text, for error messages.
    at: usize,
}

fn tokenize(text: &str) -> Result<Vec<Spanned>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Token::LParen
            }
            ')' => {
                i += 1;
                Token::RParen
            }
            ',' => {
                i += 1;
                Token::Comma
            }
            '=' => {
                i += 1;
                Token::Op(CmpOp::Eq)
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::Op(CmpOp::Ne)
            }
            '<' | '>' => {
                let or_equal = chars.get(i + 1) == Some(&'=');
                i += if or_equal { 2 } else { 1 };
                match (c, or_equal) {
                    ('<', false) => Token::Op(CmpOp::Lt),
                    ('<', true) => Token::Op(CmpOp::Le),
                    (_, false) => Token::Op(CmpOp::Gt),
                    (_, true) => Token::Op(CmpOp::Ge),
                }
            }
            '"' => {
                let (value, next) = lex_string(&chars, i)?;
                i = next;
                Token::Text(value)
            }
            '[' => {
                let Some(close) = chars[i..].iter().position(|&c| c == ']') else {
                    return Err(ConditionError::at(start, "Unterminated date: missing ']'"));
                };
                let inner: String = chars[i + 1..i + close].iter().collect();
                i += close + 1;
                match parse_instant(&inner) {
                    Some(at) => Token::Instant(at),
                    None => {
                        return Err(ConditionError::at(
                            start,
                            format!("Unsupported date format [{inner}]: use ISO-8601 in UTC"),
                        ));
                    }
                }
            }
            c if c.is_ascii_digit() || (c == '-' && next_is_digit(&chars, i)) => {
                let end = scan(&chars, i + 1, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '+')
                });
                let word: String = chars[i..end].iter().collect();
                i = end;
                match Decimal::from_str(&word).or_else(|_| Decimal::from_scientific(&word)) {
                    Ok(n) => Token::Number(n),
                    Err(_) if parse_instant(&word).is_some() => {
                        return Err(ConditionError::at(
                            start,
                            format!(
                                "Unsupported format for date {word}: dates must be ISO-8601 in \
                                 UTC inside square brackets, e.g. [2024-05-01T19:04:05Z]"
                            ),
                        ));
                    }
                    Err(_) => {
                        return Err(ConditionError::at(start, format!("Invalid number '{word}'")));
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let end = scan(&chars, i + 1, |c| c.is_alphanumeric() || matches!(c, '_' | '/'));
                let word: String = chars[i..end].iter().collect();
                i = end;
                keyword(&word).unwrap_or(Token::Path(word))
            }
            other => {
                return Err(ConditionError::at(start, format!("Unexpected character '{other}'")));
            }
        };
        tokens.push(Spanned { token, at: start });
    }
    Ok(tokens)
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

fn scan(chars: &[char], from: usize, keep: impl Fn(char) -> bool) -> usize {
    chars[from..].iter().position(|&c| !keep(c)).map_or(chars.len(), |n| from + n)
}

/// Reads a double-quoted string starting at `open`; returns its value and the index after it.
fn lex_string(chars: &[char], open: usize) -> Result<(String, usize), ConditionError> {
    let mut value = String::new();
    let mut i = open + 1;
    while let Some(&c) = chars.get(i) {
        match c {
            '"' => return Ok((value, i + 1)),
            '\\' => match chars.get(i + 1) {
                Some(&escaped @ ('"' | '\\')) => {
                    value.push(escaped);
                    i += 2;
                }
                // Any other backslash is taken literally.
                _ => {
                    value.push('\\');
                    i += 1;
                }
            },
            _ => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(ConditionError::at(open, "Unterminated string"))
}

fn keyword(word: &str) -> Option<Token> {
    let token = match word.to_ascii_lowercase().as_str() {
        "and" => Token::And,
        "or" => Token::Or,
        "not" => Token::Not,
        "in" => Token::In,
        "contains" => Token::Op(CmpOp::Contains),
        "like" => Token::Op(CmpOp::Like),
        "true" => Token::True,
        "false" => Token::False,
        "null" => Token::Null,
        _ => return None,
    };
    Some(token)
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    /// Position reported for errors at the end of the text.
    end: usize,
    /// Parentheses currently open; bounded so that no input can exhaust the stack.
    depth: usize,
}

/// More nested parentheses than any real query needs.
const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<&Spanned> {
        let token = self.tokens.get(self.next);
        self.next += 1;
        token
    }

    fn expect_more(&mut self, what: &str) -> Result<&Spanned, ConditionError> {
        let end = self.end;
        self.bump().ok_or_else(|| ConditionError::at(end, format!("Expected {what}")))
    }

    fn parse_or<T: Record>(&mut self) -> Result<Condition<T>, ConditionError> {
        let mut parts = vec![self.parse_and::<T>()?];
        while self.peek().is_some_and(|t| t.token == Token::Or) {
            self.next += 1;
            parts.push(self.parse_and::<T>()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Condition::Or(parts) })
    }

    fn parse_and<T: Record>(&mut self) -> Result<Condition<T>, ConditionError> {
        let mut parts = vec![self.parse_primary::<T>()?];
        while self.peek().is_some_and(|t| t.token == Token::And) {
            self.next += 1;
            parts.push(self.parse_primary::<T>()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Condition::And(parts) })
    }

    fn parse_primary<T: Record>(&mut self) -> Result<Condition<T>, ConditionError> {
        let first = self.expect_more("a field or '('")?;
        let at = first.at;
        match first.token.clone() {
            Token::LParen => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(ConditionError::at(at, "Conditions are nested too deeply"));
                }
                let inner = self.parse_or::<T>()?;
                self.depth -= 1;
                let close = self.expect_more("')'")?;
                if close.token != Token::RParen {
                    let message = format!("Expected ')' but found {}", close.token.describe());
                    return Err(ConditionError::at(close.at, message));
                }
                Ok(inner)
            }
            Token::Path(path) => self.parse_comparison::<T>(&path, at),
            other => {
                let message = format!("Expected a field name but found {}", other.describe());
                Err(ConditionError::at(at, message))
            }
        }
    }

    fn parse_comparison<T: Record>(
        &mut self,
        path: &str,
        at: usize,
    ) -> Result<Condition<T>, ConditionError> {
        let field = T::field(path).ok_or_else(|| {
            let message = format!("Unknown field '{path}' for {} at position {at}", T::RESOURCE);
            ConditionError::field(path, message)
        })?;
        let operator = self.expect_more(&format!("an operator after '{path}'"))?;
        let (op_at, op_token) = (operator.at, operator.token.clone());
        match op_token {
            Token::Op(op) => {
                let value = self.parse_value()?;
                check(field, op, &value)?;
                Ok(Condition::Compare { field, op, value })
            }
            Token::In => self.parse_in(field, false),
            Token::Not => {
                let after = self.expect_more("'in' after 'not'")?;
                if after.token != Token::In {
                    let message =
                        format!("Expected 'in' after 'not', found {}", after.token.describe());
                    return Err(ConditionError::at(after.at, message));
                }
                self.parse_in(field, true)
            }
            other => {
                let message =
                    format!("Expected an operator after '{path}' but found {}", other.describe());
                Err(ConditionError::at(op_at, message))
            }
        }
    }

    fn parse_in<T: Record>(
        &mut self,
        field: &'static Field<T>,
        negated: bool,
    ) -> Result<Condition<T>, ConditionError> {
        let open = self.expect_more("'(' after 'in'")?;
        if open.token != Token::LParen {
            let message = format!("Expected '(' after 'in', found {}", open.token.describe());
            return Err(ConditionError::at(open.at, message));
        }
        let mut values = Vec::new();
        loop {
            let value = self.parse_value()?;
            if value == Literal::Null {
                return Err(ConditionError::field(
                    field.path,
                    "null is not allowed in an 'in' list",
                ));
            }
            check(field, CmpOp::Eq, &value)?;
            values.push(value);
            let separator = self.expect_more("',' or ')' in the 'in' list")?;
            match separator.token {
                Token::Comma => continue,
                Token::RParen => break,
                ref other => {
                    let message = format!("Expected ',' or ')' but found {}", other.describe());
                    return Err(ConditionError::at(separator.at, message));
                }
            }
        }
        Ok(Condition::In { field, negated, values })
    }

    fn parse_value(&mut self) -> Result<Literal, ConditionError> {
        let token = self.expect_more("a value")?;
        let literal = match &token.token {
            Token::Text(s) => Literal::Text(s.clone()),
            Token::Number(n) => Literal::Number(*n),
            Token::Instant(at) => Literal::Instant(*at),
            Token::True => Literal::Flag(true),
            Token::False => Literal::Flag(false),
            Token::Null => Literal::Null,
            other => {
                let message = format!("Expected a value but found {}", other.describe());
                return Err(ConditionError::at(token.at, message));
            }
        };
        Ok(literal)
    }
}

/// Checks that `value` fits `field` under `op`, as ConnectWise does before running the query.
fn check<T>(field: &Field<T>, op: CmpOp, value: &Literal) -> Result<(), ConditionError> {
    let path = field.path;
    if *value == Literal::Null {
        return match op {
            CmpOp::Eq | CmpOp::Ne => Ok(()),
            _ => {
                Err(ConditionError::field(path, format!("Cannot use '{}' with null", op.symbol())))
            }
        };
    }
    if matches!(op, CmpOp::Contains | CmpOp::Like) && field.kind != Kind::Text {
        let message = format!("'{}' applies only to strings, and {path} is not one", op.symbol());
        return Err(ConditionError::field(path, message));
    }
    if field.kind == Kind::Flag && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        let message = format!("Cannot use '{}' with the boolean {path}", op.symbol());
        return Err(ConditionError::field(path, message));
    }
    let fits = matches!(
        (field.kind, value),
        (Kind::Number, Literal::Number(_))
            | (Kind::Text, Literal::Text(_))
            | (Kind::Flag, Literal::Flag(_))
            | (Kind::Instant, Literal::Instant(_))
    );
    if fits {
        return Ok(());
    }
    let message = if field.kind == Kind::Instant {
        format!(
            "Unsupported format applied to {path}: dates must be ISO-8601 in UTC inside square \
             brackets, e.g. [2024-05-01T19:04:05Z]"
        )
    } else {
        format!(
            "{path} is {} and cannot be compared with {}",
            field.kind.describe(),
            value.describe()
        )
    };
    Err(ConditionError::field(path, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectwise::model::Company;

    fn company(id: i64, name: &str) -> Company {
        Company::new(id, &format!("C{id}"), name)
    }

    fn check_matches(text: &str, company: &Company) -> bool {
        let condition = parse::<Company>(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        condition.matches(company, &State::default())
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let c = company(5, "Acme");
        assert!(check_matches("id=1 or id=5 and name=\"Acme\"", &c));
        assert!(!check_matches("(id=1 or id=5) and name=\"Other\"", &c));
        assert!(check_matches("id=5 AND (name=\"x\" Or name=\"ACME\")", &c));
    }

    #[test]
    fn like_wildcards() {
        assert!(like("Contoso Ltd", "cont*"));
        assert!(like("Contoso Ltd", "%ltd"));
        assert!(like("Contoso Ltd", "c*o*d"));
        assert!(!like("Contoso Ltd", "c*x*d"));
        assert!(like("abc", "abc"));
        assert!(!like("abcd", "abc"));
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        let pieces = [
            "id",
            "name",
            "_info/lastUpdated",
            "=",
            "!=",
            "<",
            ">=",
            "(",
            ")",
            ",",
            "\"",
            "\\",
            "\"a\\\"b\"",
            "[",
            "]",
            "[2024-05-01T00:00:00Z]",
            "and",
            "OR",
            "not",
            "in",
            "like",
            "contains",
            "null",
            "true",
            "-",
            "1.5",
            "-7",
            "é",
            "\u{200b}",
            " ",
            "*",
            "%",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            if let Ok(condition) = parse::<Company>(&text) {
                condition.matches(&company(1, "x"), &State::default());
            }
        }
        let deep = format!("{}id=1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse::<Company>(&deep).unwrap_err().message.contains("too deeply"));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse::<Company>("nosuch=1").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("nosuch"));
        assert!(parse::<Company>("name=").unwrap_err().message.contains("Expected a value"));
        assert!(parse::<Company>("(id=1").unwrap_err().message.contains("')'"));
        assert!(parse::<Company>("name=\"abc").unwrap_err().message.contains("Unterminated"));
        assert!(parse::<Company>("id=1 id=2").is_err());
        assert!(parse::<Company>("deletedFlag>true").is_err());
        assert!(parse::<Company>("id contains \"1\"").is_err());
        let date = parse::<Company>("_info/lastUpdated>2024-05-01T19:04:05Z").unwrap_err();
        assert!(date.message.contains("square brackets"), "{date:?}");
        let quoted = parse::<Company>("_info/lastUpdated>\"2024-05-01T19:04:05Z\"").unwrap_err();
        assert!(quoted.message.contains("square brackets"), "{quoted:?}");
    }
}
