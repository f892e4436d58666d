//! A strict, single-pass JSON deserializer over one borrowed, UTF-8-checked record: the fast
//! path of [`crate::JsonDecoder`].
//!
//! It drives the same `Deserialize` impls as serde_json (the tolerant [`crate::json_record`]
//! types), so what a record decodes to does not depend on which parser read it. It is faster
//! on the records mailsentry reads because it checks UTF-8 once per record instead of once per
//! string, finds the end of a string eight bytes at a time, and builds no intermediate tape.
//!
//! It is deliberately narrower than JSON: it refuses — and the decoder then falls back to the
//! general parsers, which decide acceptance and name the reject — anything it does not read
//! exactly as serde_json would:
//! - any syntax error, trailing characters, nesting deeper than [`StrictJson::MAX_DEPTH`];
//! - floats and exponents, `-0`, integers outside `i64`/`u64` (their rounding is the general
//!   parsers' business);
//! - lone UTF-16 surrogates in `\u` escapes, unescaped control characters in strings.
//!
//! A refusal carries no detail: it only says "use the general path".

use crate::loose_json::{
    words_equal, CaseFoldIndex, Element, EmbeddedParse, KeyOrder, List, Loose, Nested,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;

/// Why the strict reader stopped: never shown to users (the general path names the reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused by the strict JSON reader")
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Refused
    }
}

type Result<T> = std::result::Result<T, Refused>;

/// The strict reader over one record.
pub struct StrictJson<'de, 's> {
    text: &'de str,
    pos: usize,
    depth: u32,
    buffers: &'s mut StrictBuffers,
}

/// What a strict reader keeps from one record to the next: the buffer strings are unescaped
/// into, and the key order of each nested record type (see [`KeyOrder`]), so the keys of
/// folders, items and name/value pairs are predicted like a record's own.
#[derive(Debug, Default)]
pub struct StrictBuffers {
    unescaped: Vec<u8>,
    nested_orders: Vec<(TypeId, KeyOrder)>,
}

impl StrictBuffers {
    /// Takes the key order of record type `id` (an empty one the first time).
    fn take_order(&mut self, id: TypeId) -> KeyOrder {
        self.nested_orders
            .iter_mut()
            .find(|(t, _)| *t == id)
            .map(|(_, order)| std::mem::take(order))
            .unwrap_or_default()
    }

    /// Puts back the key order of record type `id`.
    fn put_order(&mut self, id: TypeId, order: KeyOrder) {
        match self.nested_orders.iter_mut().find(|(t, _)| *t == id) {
            Some((_, slot)) => *slot = order,
            None => self.nested_orders.push((id, order)),
        }
    }
}

/// A string as read: borrowed from the record, or unescaped into the scratch buffer.
enum Text<'de, 's> {
    Borrowed(&'de str),
    Copied(&'s str),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `word` below `n` (exact for the lowest such byte; `n` ≤ 128).
#[inline]
fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// High bit set in every byte of `word` equal to `b` (exact for the lowest such byte).
#[inline]
fn bytes_equal(word: u64, b: u8) -> u64 {
    bytes_below(word ^ (ONES * u64::from(b)), 1)
}

/// The index of the first `"`, `\` or control character at or after `at`, or `bytes.len()`.
#[inline]
fn find_string_special(bytes: &[u8], mut at: usize) -> usize {
    #[inline]
    fn specials(chunk: &[u8]) -> u64 {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below(word, 0x20)
    }
    while let Some(chunk) = bytes.get(at..at + 8) {
        let hits = specials(chunk);
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && !matches!(bytes[at], b'"' | b'\\' | 0..=0x1f) {
        at += 1;
    }
    at
}

fn hex4(bytes: &[u8]) -> Result<u16> {
    let digits = bytes.get(..4).ok_or(Refused)?;
    let mut n = 0u16;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(Refused),
        };
        n = n << 4 | u16::from(v);
    }
    Ok(n)
}

/// The character of the escape whose letter is at `at` (after a `\\`), and the index after
/// it. A `\\u` escape must be a whole character: a surrogate pair or no surrogate at all.
fn decode_escape(bytes: &[u8], at: usize) -> Result<(char, usize)> {
    let c = match bytes.get(at).ok_or(Refused)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(&bytes[at + 1..])?;
            let (code, next) = match unit {
                0xD800..=0xDBFF => {
                    if bytes.get(at + 5..at + 7) != Some(b"\\u") {
                        return Err(Refused);
                    }
                    let low = hex4(&bytes[at + 7..])?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return Err(Refused);
                    }
                    let code =
                        0x1_0000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    (code, at + 11)
                }
                0xDC00..=0xDFFF => return Err(Refused),
                _ => (u32::from(unit), at + 5),
            };
            return Ok((char::from_u32(code).ok_or(Refused)?, next));
        }
        _ => return Err(Refused),
    };
    Ok((c, at + 1))
}

impl<'de, 's> StrictJson<'de, 's> {
    /// Deepest nesting read (serde_json's limit is 128; deeper records take the general path).
    pub const MAX_DEPTH: u32 = 100;

    /// A reader over `text`, with the `buffers` kept from the records before.
    pub fn new(text: &'de str, buffers: &'s mut StrictBuffers) -> Self {
        StrictJson {
            text,
            pos: 0,
            depth: 0,
            buffers,
        }
    }

    /// Succeeds when nothing but whitespace follows the value read.
    pub fn end(&mut self) -> Result<()> {
        self.skip_whitespace();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            Err(Refused)
        }
    }

    #[inline]
    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline]
    fn peek_token(&mut self) -> Result<u8> {
        self.skip_whitespace();
        self.peek().ok_or(Refused)
    }

    #[inline]
    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek_token()? == b {
            self.pos += 1;
            Ok(())
        } else {
            Err(Refused)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// Reads the opening `bracket` of an object or array and goes one level deeper.
    fn open(&mut self, bracket: u8) -> Result<()> {
        self.expect(bracket)?;
        self.enter()
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > Self::MAX_DEPTH {
            return Err(Refused);
        }
        Ok(())
    }

    /// Reads the string whose opening quote is at `self.pos`.
    fn string(&mut self) -> Result<Text<'de, '_>> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let mut at = find_string_special(bytes, start);
        match bytes.get(at) {
            Some(b'"') => {
                self.pos = at + 1;
                // Quotes are ASCII, so both ends are character boundaries of the checked text.
                return Ok(Text::Borrowed(&self.text[start..at]));
            }
            Some(b'\\') => {}
            _ => return Err(Refused),
        }
        self.buffers.unescaped.clear();
        let mut run = start;
        loop {
            self.buffers.unescaped.extend_from_slice(&bytes[run..at]);
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    break;
                }
                Some(b'\\') => {
                    at = self.escape(at + 1)?;
                    run = at;
                    at = find_string_special(bytes, at);
                }
                _ => return Err(Refused),
            }
        }
        // Whole characters of valid UTF-8 were copied and escapes encode valid characters.
        let copied = std::str::from_utf8(&self.buffers.unescaped).map_err(|_| Refused)?;
        Ok(Text::Copied(copied))
    }

    /// Appends the escape whose letter is at `at`; returns the index after it.
    fn escape(&mut self, at: usize) -> Result<usize> {
        let (c, next) = decode_escape(self.bytes(), at)?;
        let mut buf = [0u8; 4];
        self.buffers
            .unescaped
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(next)
    }

    /// Skips the string whose opening quote is at `self.pos`, checking its escapes.
    fn skip_string(&mut self) -> Result<()> {
        let bytes = self.bytes();
        let mut at = find_string_special(bytes, self.pos + 1);
        loop {
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    at = decode_escape(bytes, at + 1)?.1;
                    at = find_string_special(bytes, at);
                }
                _ => return Err(Refused),
            }
        }
    }

    /// Reads an integer at `self.pos`: `Ok(Ok(u))` for non-negative, `Ok(Err(i))` for negative.
    fn integer(&mut self) -> Result<std::result::Result<u64, i64>> {
        let bytes = self.bytes();
        let negative = bytes[self.pos] == b'-';
        let mut at = self.pos + usize::from(negative);
        let first = at;
        let mut value: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = bytes.get(at) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(Refused)?;
            at += 1;
        }
        let digits = at - first;
        if digits == 0 || digits > 1 && bytes[first] == b'0' {
            return Err(Refused);
        }
        if let Some(b'.' | b'e' | b'E') = bytes.get(at) {
            return Err(Refused);
        }
        self.pos = at;
        if !negative {
            return Ok(Ok(value));
        }
        if value == 0 || value > i64::MAX as u64 + 1 {
            return Err(Refused);
        }
        Ok(Err((value as i64).wrapping_neg()))
    }

    /// Skips any value, checking its syntax as strictly as reading it would.
    pub fn skip_value(&mut self) -> Result<()> {
        match self.peek_token()? {
            b'"' => self.skip_string(),
            b'{' => {
                self.open(b'{')?;
                let mut first = true;
                while self.another_entry(&mut first, b'}')? {
                    if self.peek_token()? != b'"' {
                        return Err(Refused);
                    }
                    self.skip_string()?;
                    self.expect(b':')?;
                    self.skip_value()?;
                }
                self.leave();
                Ok(())
            }
            b'[' => {
                self.open(b'[')?;
                let mut first = true;
                while self.another_entry(&mut first, b']')? {
                    self.skip_value()?;
                }
                self.leave();
                Ok(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer().map(drop),
            _ => Err(Refused),
        }
    }
}

/// Record reading without serde's visitors, for [`case_insensitive_record!`] types
/// (`fill_strict`, `from_strict`): objects key by key, scalar fields straight into [`Loose`].
///
/// [`case_insensitive_record!`]: crate::loose_json
impl<'de> StrictJson<'de, '_> {
    /// Opens an object.
    pub fn begin_object(&mut self) -> Result<()> {
        self.open(b'{')
    }

    /// The next key of the object opened by [`StrictJson::begin_object`], as the field `index`
    /// names (`Some(None)` for keys not looked for), with its `:` read; `None` once the object
    /// is closed. `first` is true before the first key. The key the records before had at this
    /// place (`order`) is compared in the input itself, without scanning for the end of the
    /// string first.
    pub fn next_key(
        &mut self,
        first: &mut bool,
        order: &mut KeyOrder,
        index: &CaseFoldIndex<u16>,
    ) -> Result<Option<Option<u16>>> {
        if !self.another_entry(first, b'}')? {
            self.leave();
            return Ok(None);
        }
        if self.peek_token()? != b'"' {
            return Err(Refused);
        }
        let start = self.pos + 1;
        let expected = order.expected_raw().and_then(|raw| {
            let input = self.bytes().get(start..start + raw.len())?;
            words_equal(input, raw, 0).then_some(raw.len())
        });
        let field = match expected {
            Some(len) => {
                self.pos = start + len;
                order.take_expected()
            }
            None => match self.string()? {
                Text::Borrowed(key) => order.field(key.as_bytes(), |k| index.get(k)),
                Text::Copied(key) => order.field(key.as_bytes(), |k| index.get(k)),
            },
        };
        self.expect(b':')?;
        Ok(Some(field))
    }

    /// The key order kept for nested records of type `id`, taken out until
    /// [`StrictJson::put_nested_order`] returns it.
    pub fn take_nested_order(&mut self, id: TypeId) -> KeyOrder {
        self.buffers.take_order(id)
    }

    /// Returns the key order taken by [`StrictJson::take_nested_order`].
    pub fn put_nested_order(&mut self, id: TypeId, order: KeyOrder) {
        self.buffers.put_order(id, order);
    }

    /// Whether another element follows in the array opened before (its separator read);
    /// false once the array is closed. `first` is true before the first element.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        let more = self.another_entry(first, b']')?;
        if !more {
            self.leave();
        }
        Ok(more)
    }

    /// Whether another entry follows before `close` (its `,` read); false at `close`, which
    /// is left unread. `first` is true before the first entry.
    fn another_entry(&mut self, first: &mut bool, close: u8) -> Result<bool> {
        let b = self.peek_token()?;
        if b == close {
            return Ok(false);
        }
        if !std::mem::replace(first, false) {
            if b != b',' {
                return Err(Refused);
            }
            self.pos += 1;
        }
        Ok(true)
    }

    /// Reads the closing `bracket` a visitor stopped before and leaves the container.
    fn close(&mut self, bracket: u8) -> Result<()> {
        self.expect(bracket)?;
        self.depth -= 1;
        Ok(())
    }

    /// Reads the closing byte [`StrictJson::another_entry`] stopped at and leaves the container.
    fn leave(&mut self) {
        self.pos += 1;
        self.depth -= 1;
    }

    /// A field's value: `None` for `null` (which leaves the field as it was, as serde's
    /// `Option` does), else the value read.
    pub fn field_value<T: StrictField<'de>>(&mut self) -> Result<Option<T>> {
        if self.peek_token()? == b'n' {
            self.literal(b"null")?;
            return Ok(None);
        }
        T::read_value(self).map(Some)
    }

    /// Any value as a [`Loose`] scalar, as [`Loose`]'s `Deserialize` reads it.
    fn loose(&mut self) -> Result<Loose<'de>> {
        Ok(match self.peek_token()? {
            b'"' => Loose::Str(match self.string()? {
                Text::Borrowed(s) => Cow::Borrowed(s),
                Text::Copied(s) => Cow::Owned(s.to_owned()),
            }),
            b'{' | b'[' => {
                self.skip_value()?;
                Loose::Complex
            }
            b't' => {
                self.literal(b"true")?;
                Loose::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Loose::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Loose::Null
            }
            b'-' | b'0'..=b'9' => match self.integer()? {
                Ok(u) => i64::try_from(u).map_or(Loose::UInt(u), Loose::Int),
                Err(i) => Loose::Int(i),
            },
            _ => return Err(Refused),
        })
    }
}

/// A field type of a [`case_insensitive_record!`](crate::loose_json) record, read by the strict
/// reader: [`Loose`] directly, everything else through its `Deserialize` impl.
pub trait StrictField<'de>: Sized {
    /// Reads a value that is not `null`.
    fn read_value(de: &mut StrictJson<'de, '_>) -> Result<Self>;
}

impl<'de> StrictField<'de> for Loose<'de> {
    fn read_value(de: &mut StrictJson<'de, '_>) -> Result<Self> {
        de.loose()
    }
}

/// A record type read field by field by the strict reader (implemented by
/// [`case_insensitive_record!`](crate::loose_json) types), so lists and nested objects of
/// records skip serde's visitors too.
pub trait StrictRecord<'de>: Sized {
    /// Reads the object at the reader's position.
    fn read_record(de: &mut StrictJson<'de, '_>) -> Result<Self>;
}

impl<'de, T> StrictField<'de> for List<T>
where
    T: StrictRecord<'de> + Deserialize<'de> + EmbeddedParse,
{
    fn read_value(de: &mut StrictJson<'de, '_>) -> Result<Self> {
        match de.peek_token()? {
            b'[' => {
                de.open(b'[')?;
                let mut items = Vec::new();
                let mut first = true;
                while de.next_element(&mut first)? {
                    items.push(if de.peek_token()? == b'{' {
                        Element::Value(T::read_record(de)?)
                    } else {
                        Element::deserialize(&mut *de)?
                    });
                }
                Ok(List::Items(items))
            }
            b'{' => Ok(List::Items(vec![Element::Value(T::read_record(de)?)])),
            _ => List::deserialize(de),
        }
    }
}

impl<'de, T> StrictField<'de> for Nested<T>
where
    T: StrictRecord<'de> + Deserialize<'de> + EmbeddedParse,
{
    fn read_value(de: &mut StrictJson<'de, '_>) -> Result<Self> {
        if de.peek_token()? == b'{' {
            return T::read_record(de).map(Nested::Value);
        }
        Nested::deserialize(de)
    }
}

impl<'de> Deserializer<'de> for &mut StrictJson<'de, '_> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek_token()? {
            b'"' => match self.string()? {
                Text::Borrowed(s) => visitor.visit_borrowed_str(s),
                Text::Copied(s) => visitor.visit_str(s),
            },
            b'{' => {
                self.open(b'{')?;
                let value = visitor.visit_map(Entries::new(self))?;
                self.close(b'}')?;
                Ok(value)
            }
            b'[' => {
                self.open(b'[')?;
                let value = visitor.visit_seq(Entries::new(self))?;
                self.close(b']')?;
                Ok(value)
            }
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            b'-' | b'0'..=b'9' => match self.integer()? {
                Ok(u) => visitor.visit_u64(u),
                Err(i) => visitor.visit_i64(i),
            },
            _ => Err(Refused),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek_token()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// The entries of an object or the elements of an array being read.
struct Entries<'a, 'de, 's> {
    de: &'a mut StrictJson<'de, 's>,
    first: bool,
}

impl<'a, 'de, 's> Entries<'a, 'de, 's> {
    fn new(de: &'a mut StrictJson<'de, 's>) -> Self {
        Entries { de, first: true }
    }

    /// True when another entry follows (its separator consumed); false at the closing `close`.
    fn has_next(&mut self, close: u8) -> Result<bool> {
        self.de.another_entry(&mut self.first, close)
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de, '_> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.has_next(b'}')? {
            return Ok(None);
        }
        if self.de.peek_token()? != b'"' {
            return Err(Refused);
        }
        seed.deserialize(Key { de: &mut *self.de }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.de.expect(b':')?;
        seed.deserialize(&mut *self.de)
    }
}

impl<'de> SeqAccess<'de> for Entries<'_, 'de, '_> {
    type Error = Refused;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.has_next(b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

/// An object key (always a string, at the reader's position).
struct Key<'a, 'de, 's> {
    de: &'a mut StrictJson<'de, 's>,
}

impl<'de> Deserializer<'de> for Key<'_, 'de, '_> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.de.string()? {
            Text::Borrowed(s) => visitor.visit_borrowed_str(s),
            Text::Copied(s) => visitor.visit_str(s),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.skip_string()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// Reads `T` from a whole record with the strict reader; `None` when it refuses (the caller
/// then uses the general parsers).
pub fn read_strict<'de, T>(
    text: &'de str,
    buffers: &mut StrictBuffers,
    read: impl FnOnce(&mut StrictJson<'de, '_>) -> Result<T>,
) -> Option<T> {
    let mut de = StrictJson::new(text, buffers);
    let value = read(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}
