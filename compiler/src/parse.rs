//! The `.mesh` parser: nom lexemes under a small recursive-descent grammar that knows, at every
//! point, what it expected, so a syntax error says `expected X, found Y` at the right column.
//!
//! Values stay raw (numbers unchecked, addresses as text); `lower` validates them.

use nom::bytes::complete::{tag, take_till, take_while, take_while1, take_while_m_n};
use nom::character::complete::{char, digit1, multispace1};
use nom::combinator::recognize;
use nom::multi::many0;
use nom::{IResult, Offset, Parser as _};

use crate::ast::{
    Address, Endpoint, File, Ident, Inbound, Item, Label, Number, Port, Protocol, Route, Service,
    Str, Subset, Workload,
};
use crate::diag::{Code, Diagnostic, FileId, SourceSpan, Span};

/// Parses one file; the first syntax error stops it.
pub(crate) fn parse_file(id: FileId, src: &str) -> Result<File, Diagnostic> {
    let parser = Parser { src };
    parser.file().map(|items| File { id, items }).map_err(|e| {
        let (code, message) = e.custom.unwrap_or_else(|| {
            (
                Code::Syntax,
                format!("expected {}, found {}", e.expected, e.found),
            )
        });
        let mut diagnostic = Diagnostic::new(
            code,
            SourceSpan {
                file: id,
                span: e.span,
            },
            message,
        );
        diagnostic.help = e.help;
        diagnostic
    })
}

/// Where the grammar failed and what it wanted there.
#[derive(Debug, Default, PartialEq, Eq)]
struct SyntaxError {
    span: Span,
    expected: String,
    found: String,
    help: Option<String>,
    /// A code and message replacing `expected ..., found ...` (a repeated setting is E0103).
    custom: Option<(Code, String)>,
}

type PResult<'s, T> = Result<(&'s str, T), SyntaxError>;
type Lex<'s, O> = IResult<&'s str, O, nom::error::Error<&'s str>>;

// ---- lexemes (nom) ----

/// Skips whitespace and `#` comments.
fn skip(i: &str) -> &str {
    let comment = recognize((char('#'), take_till(|c| c == '\n')));
    let result: Lex<'_, Vec<&str>> = many0(multispace1.or(comment)).parse(i);
    result.map_or(i, |(rest, _)| rest)
}

fn ident_lex(i: &str) -> Lex<'_, &str> {
    recognize((
        take_while_m_n(1, 1, |c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(is_ident_char),
    ))
    .parse(i)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Characters that continue a "word" when describing what was found.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '[' | ']' | '%')
}

fn address_lex(i: &str) -> Lex<'_, &str> {
    take_while1(|c: char| !c.is_whitespace() && !matches!(c, '{' | '}' | '#' | ',' | '"')).parse(i)
}

/// The token at `i`, for "found ..." messages: a word, a string up to its closing quote, or
/// one character.
fn token_at(i: &str) -> &str {
    if let Some(body) = i.strip_prefix('"') {
        let end = body
            .char_indices()
            .skip_while(|&(_, c)| c != '"' && c != '\n')
            .map(|(n, c)| if c == '"' { n + 2 } else { n + 1 })
            .next()
            .unwrap_or(i.len());
        return i[..end].trim_end();
    }
    let word: Lex<'_, &str> = take_while1(is_word_char).parse(i);
    match word {
        Ok((_, w)) => w,
        Err(_) => &i[..i.chars().next().map_or(0, char::len_utf8)],
    }
}

fn describe(token: &str) -> String {
    if token.is_empty() {
        "end of file".to_owned()
    } else if token.starts_with('"') {
        format!("string {token}")
    } else {
        format!("\"{token}\"")
    }
}

// ---- grammar ----

struct Parser<'s> {
    src: &'s str,
}

impl<'s> Parser<'s> {
    fn span_of(&self, slice: &str) -> Span {
        let start = self.src.offset(slice);
        Span::new(start, start + slice.len())
    }

    /// From the start of `from` to the start of `to` (both suffixes of the source).
    fn span_between(&self, from: &str, to: &str) -> Span {
        Span::new(self.src.offset(from), self.src.offset(to))
    }

    fn error<T>(&self, at: &'s str, expected: impl Into<String>) -> PResult<'s, T> {
        Err(self.syntax_error(at, expected))
    }

    fn syntax_error(&self, at: &'s str, expected: impl Into<String>) -> SyntaxError {
        let token = token_at(skip(at));
        SyntaxError {
            span: self.span_of(token),
            expected: expected.into(),
            found: describe(token),
            help: None,
            custom: None,
        }
    }

    /// The next identifier-shaped word, if any.
    fn word(&self, i: &'s str) -> Option<(&'s str, &'s str)> {
        ident_lex(skip(i)).ok()
    }

    /// Consumes keyword `kw` if it is next.
    fn keyword(&self, i: &'s str, kw: &str) -> Option<(&'s str, Span)> {
        match self.word(i) {
            Some((rest, w)) if w == kw => Some((rest, self.span_of(w))),
            _ => None,
        }
    }

    /// Consumes punctuation `p` if it is next.
    fn punct(&self, i: &'s str, p: &str) -> Option<(&'s str, Span)> {
        let result: Lex<'_, &str> = tag(p).parse(skip(i));
        result.ok().map(|(rest, t)| (rest, self.span_of(t)))
    }

    fn expect_punct(&self, i: &'s str, p: &str) -> PResult<'s, Span> {
        match self.punct(i, p) {
            Some(ok) => Ok(ok),
            None => self.error(i, format!("`{p}`")),
        }
    }

    fn ident(&self, i: &'s str, what: &str) -> PResult<'s, Ident> {
        match self.word(i) {
            Some((rest, w)) => Ok((
                rest,
                Ident {
                    name: w.to_owned(),
                    span: self.span_of(w),
                },
            )),
            None => self.error(i, what),
        }
    }

    fn number(&self, i: &'s str, what: &str) -> PResult<'s, Number> {
        let i = skip(i);
        let digits: Lex<'_, &str> = digit1(i);
        match digits {
            Ok((rest, d)) if !rest.starts_with(is_ident_char) => Ok((
                rest,
                Number {
                    // Only overflow can fail here; saturate so lowering reports it as out of range.
                    value: d.parse().unwrap_or(u64::MAX),
                    span: self.span_of(d),
                },
            )),
            _ => self.error(i, what),
        }
    }

    fn string(&self, i: &'s str, what: &str) -> PResult<'s, Str> {
        let i = skip(i);
        let Some(body) = i.strip_prefix('"') else {
            return self.error(i, what);
        };
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((n, c)) = chars.next() {
            match c {
                '"' => {
                    let rest = &body[n + 1..];
                    let span = self.span_between(i, rest);
                    return Ok((rest, Str { value, span }));
                }
                '\n' => break,
                '\\' => match chars.next() {
                    Some((_, '"')) => value.push('"'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    other => {
                        let end = other.map_or(body.len(), |(m, e)| m + e.len_utf8());
                        return Err(SyntaxError {
                            span: Span::new(
                                self.src.offset(&body[n..]),
                                self.src.offset(body) + end,
                            ),
                            expected: "an escape (\\\", \\\\, \\n or \\t)".to_owned(),
                            found: format!("\"{}\"", &body[n..end]),
                            help: None,
                            custom: None,
                        });
                    }
                },
                _ => value.push(c),
            }
        }
        let line_end = body.find('\n').unwrap_or(body.len());
        Err(SyntaxError {
            span: Span::new(self.src.offset(i), self.src.offset(body) + line_end),
            expected: "a closing `\"`".to_owned(),
            found: "end of line".to_owned(),
            help: Some("strings cannot span lines".to_owned()),
            custom: None,
        })
    }

    fn address(&self, i: &'s str) -> PResult<'s, Address> {
        match address_lex(skip(i)) {
            Ok((rest, a)) => Ok((
                rest,
                Address {
                    text: a.to_owned(),
                    span: self.span_of(a),
                },
            )),
            Err(_) => self.error(i, "a socket address (e.g. 127.0.0.1:8080)"),
        }
    }

    fn protocol(&self, i: &'s str) -> PResult<'s, Protocol> {
        const EXPECTED: &str = "a protocol (http, http2, grpc, tcp)";
        // Protocols are plain words, so `tcp->` reads as `tcp` `->`, not as the identifier `tcp-`.
        let word: Lex<'_, &str> = take_while1(|c: char| c.is_ascii_alphanumeric()).parse(skip(i));
        let Ok((rest, w)) = word else {
            return self.error(i, EXPECTED);
        };
        if rest.starts_with(is_ident_char) && !rest.starts_with("->") {
            return self.error(i, EXPECTED);
        }
        let value = match w {
            "http" => spec::Protocol::Http,
            "http2" => spec::Protocol::Http2,
            "grpc" => spec::Protocol::Grpc,
            "tcp" => spec::Protocol::Tcp,
            _ => return self.error(i, EXPECTED),
        };
        let span = self.span_of(w);
        Ok((rest, Protocol { value, span }))
    }

    fn file(&self) -> Result<Vec<Item>, SyntaxError> {
        let mut items = Vec::new();
        let mut i = skip(self.src);
        while !i.is_empty() {
            let (rest, item) = match self.word(i) {
                Some((rest, w)) if w == "service" => self.service(rest, self.span_of(w))?,
                Some((rest, w)) if w == "route" => self.route(rest, self.span_of(w))?,
                Some((rest, w)) if w == "workload" => self.workload(rest, self.span_of(w))?,
                Some((rest, w)) if security::ITEM_KEYWORDS.contains(&w) => {
                    self.security_item(rest, w, self.span_of(w))?
                }
                _ => {
                    return Err(self.syntax_error(
                        i,
                        "`service`, `route`, `workload`, `authorization`, `authentication`, \
                         `peer_authentication` or `telemetry`",
                    ))
                }
            };
            items.push(item);
            i = skip(rest);
        }
        Ok(items)
    }

    fn service(&self, i: &'s str, keyword: Span) -> PResult<'s, Item> {
        let (i, name) = self.ident(i, "a service name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut service = Service {
            keyword,
            name,
            namespaces: Vec::new(),
            ports: Vec::new(),
            endpoints: Vec::new(),
            addresses: Vec::new(),
            subsets: Vec::new(),
            policies: Vec::new(),
            close: Span::default(),
            origin: crate::ast::Origin::Mesh,
        };
        loop {
            if let Some((rest, close)) = self.punct(i, "}") {
                service.close = close;
                return Ok((rest, Item::Service(service)));
            }
            i = match self.word(i) {
                Some((rest, "namespace")) => {
                    let (rest, ns) = self.ident(rest, "a namespace name")?;
                    service.namespaces.push(ns);
                    rest
                }
                Some((rest, "port")) => {
                    let (rest, number) = self.number(rest, "a port number")?;
                    let (rest, protocol) = self.protocol(rest)?;
                    service.ports.push(Port { number, protocol });
                    rest
                }
                Some((rest, "endpoint")) => {
                    let (mut rest, address) = self.address(rest)?;
                    let mut labels = Vec::new();
                    if self.punct(rest, "{").is_some() {
                        (rest, labels) = self.labels(rest)?;
                    }
                    let mut weight = None;
                    if let Some((after, _)) = self.keyword(rest, "weight") {
                        let (after, w) = self.number(after, "a weight")?;
                        (rest, weight) = (after, Some(w));
                    }
                    service.endpoints.push(Endpoint {
                        file: None,
                        address,
                        labels,
                        weight,
                    });
                    rest
                }
                Some((mut rest, "address")) => loop {
                    let address;
                    (rest, address) = self.address(rest)?;
                    service.addresses.push(address);
                    match self.punct(rest, ",") {
                        Some((after, _)) => rest = after,
                        None => break rest,
                    }
                },
                Some((rest, "subset")) => {
                    let (rest, name) = self.ident(rest, "a subset name")?;
                    let (mut rest, selector) = self.labels(rest)?;
                    let mut policy = None;
                    if let Some((after, keyword)) = self.subset_policy(rest) {
                        let block = format!("subset `{}`", name.name);
                        let (after, p) = self.policy(after, keyword, &block)?;
                        (rest, policy) = (after, Some(p));
                    }
                    service.subsets.push(Subset {
                        file: None,
                        name,
                        selector,
                        policy,
                    });
                    rest
                }
                Some((rest, w @ "policy")) => {
                    let block = format!("service `{}`", service.name.name);
                    let (rest, p) = self.policy(rest, self.span_of(w), &block)?;
                    service.policies.push(p);
                    rest
                }
                _ => {
                    return self.error(
                        i,
                        "`namespace`, `port`, `endpoint`, `subset`, `policy` or `}`",
                    )
                }
            };
        }
    }

    /// `{ key = "value", ... }`; a trailing comma is allowed.
    fn labels(&self, i: &'s str) -> PResult<'s, Vec<Label>> {
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut labels = Vec::new();
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, labels));
            }
            let (rest, key) = self.ident(i, "a label name or `}`")?;
            let (rest, _) = self.expect_punct(rest, "=")?;
            let (rest, value) = self.string(rest, "a label value in double quotes")?;
            labels.push(Label { key, value });
            i = match self.punct(rest, ",") {
                Some((rest, _)) => rest,
                None if self.punct(rest, "}").is_some() => rest,
                None => return self.error(rest, "`,` or `}`"),
            };
        }
    }

    fn route(&self, i: &'s str, keyword: Span) -> PResult<'s, Item> {
        let (i, service) = self.ident(i, "a service name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut rules = Vec::new();
        loop {
            if !rules.is_empty() {
                if let Some((rest, _)) = self.punct(i, "}") {
                    let route = Route {
                        keyword,
                        service,
                        rules,
                    };
                    return Ok((rest, Item::Route(route)));
                }
            }
            let Some((rest, rule_kw)) = self.keyword(i, "rule") else {
                let expected = if rules.is_empty() {
                    "`rule` (a route needs at least one rule)"
                } else {
                    "`rule` or `}`"
                };
                return self.error(i, expected);
            };
            let (rest, rule) = self.rule(rest, rule_kw)?;
            rules.push(rule);
            i = rest;
        }
    }

    fn workload(&self, i: &'s str, keyword: Span) -> PResult<'s, Item> {
        let (i, name) = self.ident(i, "a workload name")?;
        let (mut i, _) = self.expect_punct(i, "{")?;
        let mut workload = Workload {
            labels: Default::default(),
            namespace: Default::default(),
            serves: Vec::new(),
            telemetry: None,
            outbound_traffic: Vec::new(),
            keyword,
            name,
            identities: Vec::new(),
            inbound: Vec::new(),
            outbound: None,
        };
        loop {
            if let Some((rest, _)) = self.punct(i, "}") {
                return Ok((rest, Item::Workload(workload)));
            }
            i = match self.word(i) {
                Some((rest, "identity")) => {
                    let (rest, id) = self.string(rest, "a SPIFFE identity in double quotes")?;
                    workload.identities.push(id);
                    rest
                }
                Some((rest, "inbound")) => {
                    let (rest, port) = self.number(rest, "a port number")?;
                    let (rest, protocol) = self.protocol(rest)?;
                    let (rest, _) = self.expect_punct(rest, "->")?;
                    let (rest, target) = self.address(rest)?;
                    let (rest, mtls) = self.inbound_mtls(rest)?;
                    workload.inbound.push(Inbound {
                        mtls,
                        port,
                        protocol,
                        target,
                    });
                    rest
                }
                Some((rest, "outbound_traffic")) => {
                    let (rest, mode) = self.ident(rest, "`allow_any` or `registry_only`")?;
                    workload.outbound_traffic.push(mode);
                    rest
                }
                Some((rest, "outbound")) => {
                    let (mut rest, first) = self.ident(rest, "a service name")?;
                    let outbound = workload.outbound.get_or_insert_with(Vec::new);
                    outbound.push(first);
                    while let Some((after, _)) = self.punct(rest, ",") {
                        let (after, next) = self.ident(after, "a service name")?;
                        outbound.push(next);
                        rest = after;
                    }
                    rest
                }
                _ => match self.workload_line(i, &mut workload)? {
                    Some(rest) => rest,
                    None => {
                        return self.error(
                            i,
                            "`identity`, `inbound`, `outbound`, `outbound_traffic`, `serves`, \
                             `namespace`, `labels`, `telemetry` or `}`",
                        )
                    }
                },
            };
        }
    }
}

mod security;
mod traffic;

pub(crate) use traffic::{duration_millis, percent_per_million};

#[cfg(test)]
mod tests;
