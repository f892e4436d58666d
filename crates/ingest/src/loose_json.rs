//! Tolerant JSON building blocks.
//!
//! Real exports drift: a count is `"50"` in one record and `50` in the next, a nested object is
//! sometimes an object and sometimes a string holding JSON (Sentinel), and PowerShell exports
//! flatten objects into `@{Name=MailAccessType; Value=Bind}` or `System.Object[]`. These types
//! accept all of that without failing the record: a value that cannot be read becomes
//! [`Loose::Complex`] / [`Nested::Unreadable`] / [`List::Unreadable`], and the decoder names the
//! field as unreadable while keeping the record.
//!
//! [`case_insensitive_record!`] builds structs whose keys match case-insensitively (Panther
//! lower-cases Microsoft 365 keys; Sentinel capitalises Entra ones), borrowing strings from the
//! input where they need no unescaping.

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::field_values::{clean_text, float_to_count, parse_bool, parse_count};

/// Any JSON value, kept only as far as a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose<'a> {
    /// A string (borrowed from the input when it had no escapes).
    Str(Cow<'a, str>),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
    /// An object or array where a scalar was expected.
    Complex,
}

impl<'a> Loose<'a> {
    /// The trimmed text of a string, or the decimal form of a number; `None` for null,
    /// placeholders (`<null>`, `-`, empty) and complex values.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Loose::Str(s) => clean_text(s).map(Cow::Borrowed),
            Loose::Int(n) => Some(Cow::Owned(n.to_string())),
            Loose::UInt(n) => Some(Cow::Owned(n.to_string())),
            Loose::Float(f) => Some(Cow::Owned(f.to_string())),
            Loose::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Loose::Null | Loose::Complex => None,
        }
    }

    /// [`Loose::text`] as an owned string.
    pub fn string(&self) -> Option<String> {
        self.text().map(Cow::into_owned)
    }

    /// An integer, from a number or a numeric string.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Loose::Int(n) => Some(*n),
            Loose::UInt(n) => i64::try_from(*n).ok(),
            Loose::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e18 => {
                Some(*f as i64)
            }
            Loose::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        }
    }

    /// A non-negative count, from a number (integer or float) or a numeric string.
    pub fn as_count(&self) -> Option<u64> {
        match self {
            Loose::Int(n) => u64::try_from(*n).ok(),
            Loose::UInt(n) => Some(*n),
            Loose::Float(f) => float_to_count(*f),
            Loose::Str(s) => parse_count(s),
            _ => None,
        }
    }

    /// A boolean, from `true`, `"True"`, `"False"`, `1`, `0`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Loose::Bool(b) => Some(*b),
            Loose::Int(n) => match n {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
            Loose::Str(s) => parse_bool(s),
            _ => None,
        }
    }

    /// True for objects and arrays found where a scalar was expected.
    pub fn is_complex(&self) -> bool {
        matches!(self, Loose::Complex)
    }

    /// Detaches the value from the input buffer.
    pub fn into_owned(self) -> Loose<'static> {
        match self {
            Loose::Str(s) => Loose::Str(Cow::Owned(s.into_owned())),
            Loose::Int(n) => Loose::Int(n),
            Loose::UInt(n) => Loose::UInt(n),
            Loose::Float(f) => Loose::Float(f),
            Loose::Bool(b) => Loose::Bool(b),
            Loose::Null => Loose::Null,
            Loose::Complex => Loose::Complex,
        }
    }
}

struct LooseVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(n) => Loose::Int(n),
            Err(_) => Loose::UInt(v),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Complex)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Complex)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor(PhantomData))
    }
}

/// Parses a PowerShell hashtable rendering `@{Name=MailAccessType; Value=Bind}` into its pairs.
/// Returns `None` when the text is not of that shape.
pub fn parse_powershell_hashtable(text: &str) -> Option<Vec<(String, String)>> {
    let inner = text.trim().strip_prefix("@{")?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    for part in inner.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=')?;
        pairs.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Some(pairs)
}

/// A PowerShell hashtable rendering as a JSON object of strings, so the usual deserializers
/// (and their `Option` handling) apply to it.
pub fn powershell_hashtable_as_json(text: &str) -> Option<serde_json::Value> {
    let pairs = parse_powershell_hashtable(text)?;
    let map = pairs
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    Some(serde_json::Value::Object(map))
}

/// What PowerShell writes for a nested object or array it did not expand.
pub fn is_powershell_placeholder(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("System.") || t.starts_with("@{")
}

/// A nested object that may arrive as an object, as a string holding JSON, or as something
/// unreadable.
#[derive(Debug, Clone, PartialEq)]
pub enum Nested<T> {
    /// Read.
    Value(T),
    /// `null` or an empty string.
    Empty,
    /// Present but not readable (a PowerShell placeholder, a number, malformed embedded JSON).
    Unreadable,
}

impl<T> Nested<T> {
    /// The value when it was read.
    pub fn value(&self) -> Option<&T> {
        match self {
            Nested::Value(v) => Some(v),
            _ => None,
        }
    }
}

struct NestedVisitor<T>(PhantomData<T>);

impl<'de, T> Visitor<'de> for NestedVisitor<T>
where
    T: Deserialize<'de> + EmbeddedParse,
{
    type Value = Nested<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or a string holding one")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Nested::Value)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim().is_empty() {
            return Ok(Nested::Empty);
        }
        Ok(T::parse_embedded(v).map_or(Nested::Unreadable, Nested::Value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Nested::Empty)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Nested::Empty)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Nested::Unreadable)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Nested::Unreadable)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Nested::Unreadable)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Nested::Unreadable)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Nested::Unreadable)
    }
}

/// How a type reads itself from a string holding embedded JSON. Implemented by every type
/// usable inside [`Nested`] and [`List`].
pub trait EmbeddedParse: Sized {
    /// Parses embedded JSON (or a PowerShell rendering).
    fn parse_embedded(text: &str) -> Option<Self>;
    /// Parses an embedded JSON array of these.
    fn parse_embedded_list(text: &str) -> Option<Vec<Self>>;
}

impl<'de, T> Deserialize<'de> for Nested<T>
where
    T: Deserialize<'de> + EmbeddedParse,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NestedVisitor(PhantomData))
    }
}

/// A list that may arrive as an array, a single object, a string holding a JSON array, or a
/// PowerShell placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum List<T> {
    /// Read (elements that could not be read are [`Element::Unreadable`]).
    Items(Vec<Element<T>>),
    /// `null` or empty string.
    Empty,
    /// Present but not readable (`System.Object[]`, malformed embedded JSON).
    Unreadable,
}

impl<T> List<T> {
    /// The readable elements.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        let items: &[Element<T>] = match self {
            List::Items(items) => items,
            _ => &[],
        };
        items.iter().filter_map(|e| match e {
            Element::Value(v) => Some(v),
            Element::Unreadable => None,
        })
    }

    /// True when the list, or any element, could not be read.
    pub fn has_unreadable(&self) -> bool {
        match self {
            List::Unreadable => true,
            List::Items(items) => items.iter().any(|e| matches!(e, Element::Unreadable)),
            List::Empty => false,
        }
    }
}

/// One list element: an object, or a PowerShell `@{...}` rendering of one.
#[derive(Debug, Clone, PartialEq)]
pub enum Element<T> {
    /// Read.
    Value(T),
    /// Not readable.
    Unreadable,
}

struct ElementVisitor<T>(PhantomData<T>);

impl<'de, T> Visitor<'de> for ElementVisitor<T>
where
    T: Deserialize<'de> + EmbeddedParse,
{
    type Value = Element<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list element")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Element::Value)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(T::parse_embedded(v).map_or(Element::Unreadable, Element::Value))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Element::Unreadable)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Element::Unreadable)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Element::Unreadable)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Element::Unreadable)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Element::Unreadable)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Element::Unreadable)
    }
}

impl<'de, T> Deserialize<'de> for Element<T>
where
    T: Deserialize<'de> + EmbeddedParse,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T> Visitor<'de> for ListVisitor<T>
where
    T: Deserialize<'de> + EmbeddedParse,
{
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Element<T>>()? {
            items.push(item);
        }
        Ok(List::Items(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let one = T::deserialize(MapAccessDeserializer::new(map))?;
        Ok(List::Items(vec![Element::Value(one)]))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(List::Empty);
        }
        if t.starts_with('[') {
            return Ok(T::parse_embedded_list(t).map_or(List::Unreadable, |items| {
                List::Items(items.into_iter().map(Element::Value).collect())
            }));
        }
        if t.starts_with("@{") || t.starts_with('{') {
            return Ok(T::parse_embedded(t).map_or(List::Unreadable, |one| {
                List::Items(vec![Element::Value(one)])
            }));
        }
        Ok(List::Unreadable)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List::Empty)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List::Empty)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(List::Unreadable)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(List::Unreadable)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(List::Unreadable)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(List::Unreadable)
    }
}

impl<'de, T> Deserialize<'de> for List<T>
where
    T: Deserialize<'de> + EmbeddedParse,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// Implements [`EmbeddedParse`] for element types that borrow from the input (`T<'a>`): the
/// embedded text is a temporary, so what is parsed from it is owned (`T<'static>`).
macro_rules! borrowed_embedded_parse {
    ($($t:ident),* $(,)?) => {$(
        impl $crate::loose_json::EmbeddedParse for $t<'_> {
            fn parse_embedded(text: &str) -> Option<Self> {
                let t = text.trim_start();
                if t.starts_with('{') {
                    $crate::loose_json::parse_owned::<$t<'static>>(t)
                } else {
                    let json = $crate::loose_json::powershell_hashtable_as_json(t)?;
                    <$t<'static> as serde::Deserialize<'static>>::deserialize(json).ok()
                }
            }
            fn parse_embedded_list(text: &str) -> Option<Vec<Self>> {
                let raw = $crate::loose_json::parse_owned::<Vec<$crate::loose_json::Element<$t<'static>>>>(text)?;
                Some(raw.into_iter().filter_map(|e| match e {
                    $crate::loose_json::Element::Value(v) => Some(v),
                    $crate::loose_json::Element::Unreadable => None,
                }).collect())
            }
        }
    )*};
}
pub(crate) use borrowed_embedded_parse;

/// Parses a whole JSON text into a value that owns its strings (a reader-backed deserializer
/// never borrows, so `T` may be any `T<'static>`).
pub fn parse_owned<T: Deserialize<'static>>(text: &str) -> Option<T> {
    let mut de = serde_json::Deserializer::from_reader(text.as_bytes());
    let value = T::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// Case-insensitive lookup of a record's known keys, without copying the key.
///
/// Keys are hashed eight bytes at a time with the ASCII case bit set on every byte (so `ClientIP`,
/// `clientip` and `CLIENTIP` hash alike) into an open-addressed table of eight slots per key;
/// a hit is confirmed by comparing the case-folded words, which is exact for keys of letters
/// only (others are confirmed with `eq_ignore_ascii_case`: folding also maps `_` onto DEL).
/// This replaced a lower-cased stack copy looked up in an `FxHashMap`, which was 13% of
/// decoding time. Small records' keys are compared one by one instead of hashed.
pub struct CaseFoldIndex<F> {
    /// Open-addressed slots: 1 + the entry's index, 0 when empty (2 bytes each, so the table
    /// of ~100 keys stays in L1).
    slots: Box<[u16]>,
    entries: Vec<IndexEntry<F>>,
    shift: u32,
}

struct IndexEntry<F> {
    hash: u64,
    key: &'static [u8],
    /// Only ASCII letters: equal case-folded words mean equal keys.
    letters: bool,
    field: F,
}

impl<F> IndexEntry<F> {
    #[inline]
    fn matches(&self, key: &[u8]) -> bool {
        words_equal(self.key, key, FOLD) && (self.letters || self.key.eq_ignore_ascii_case(key))
    }
}

/// The ASCII case bit in every byte of a word.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The case-folded hash of a key (the case bit `0x20` set on every byte; callers confirm hits).
#[inline]
fn case_fold_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) | FOLD;
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ (u64::from_le_bytes(tail) | FOLD)).wrapping_mul(K);
    }
    h
}

impl<F: Copy> CaseFoldIndex<F> {
    /// Builds the index over lower-case keys.
    pub fn new(keys: &[(&'static str, F)]) -> Self {
        let size = (keys.len() * 8).next_power_of_two().max(16);
        let shift = 64 - size.trailing_zeros();
        let mut slots = vec![0u16; size].into_boxed_slice();
        let mut entries = Vec::with_capacity(keys.len());
        for &(key, field) in keys {
            let hash = case_fold_hash(key.as_bytes());
            let mut at = Self::home(hash, shift);
            while slots[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            entries.push(IndexEntry {
                hash,
                key: key.as_bytes(),
                letters: key.bytes().all(|b| b.is_ascii_lowercase()),
                field,
            });
            slots[at] = u16::try_from(entries.len()).expect("fewer than 65,535 keys");
        }
        CaseFoldIndex {
            slots,
            entries,
            shift,
        }
    }

    /// Fibonacci hashing: the top bits of the product, which depend on every input bit.
    #[inline]
    fn home(hash: u64, shift: u32) -> usize {
        (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
    }

    /// Up to this many spellings are compared one by one (length first) instead of hashed:
    /// the small records (folders, items, name/value pairs) are read faster that way.
    const LINEAR: usize = 8;

    /// The field named by `key`, whatever its letter case.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<F> {
        if self.entries.len() <= Self::LINEAR {
            return self
                .entries
                .iter()
                .find(|e| e.matches(key))
                .map(|e| e.field);
        }
        let hash = case_fold_hash(key);
        let mask = self.slots.len() - 1;
        let mut at = Self::home(hash, self.shift);
        loop {
            let slot = self.slots[at] as usize;
            if slot == 0 {
                return None;
            }
            let entry = &self.entries[slot - 1];
            if entry.hash == hash && entry.matches(key) {
                return Some(entry.field);
            }
            at = (at + 1) & mask;
        }
    }
}

/// Equality of two short keys with `fold` or-ed into every byte (0: exact; [`FOLD`]: ASCII
/// case folded), without a call to `memcmp`: eight bytes at a time, the last word overlapping
/// the one before.
#[inline]
pub(crate) fn words_equal(a: &[u8], b: &[u8], fold: u64) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        let f = fold as u8;
        return a.iter().zip(b).all(|(x, y)| x | f == y | f);
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8])) | fold;
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// The keys of the last record read, position by position, with the field each named.
///
/// One source writes its records' keys in one order, so the key at position `i` is almost always
/// the key at position `i` of the record before: an exact comparison with it replaces the
/// case-folding hash lookup (which was 15% of decoding time). A miss looks the key up and
/// remembers it for the next record. Only the first [`KeyOrder::MAX_KEYS`] keys are remembered.
#[derive(Debug, Default)]
pub struct KeyOrder {
    slots: Vec<KeySlot>,
    pos: usize,
    hits: u64,
    misses: u64,
}

/// A remembered key.
#[derive(Debug)]
struct KeySlot {
    /// The key's bytes followed by the closing `"`.
    quoted: Box<[u8]>,
    field: Option<u16>,
    /// No byte of the key would be escaped in JSON (`"`, `\`, control characters), so the key
    /// is written in the input exactly as `quoted`.
    plain: bool,
}

impl KeyOrder {
    /// Keys remembered per record.
    pub const MAX_KEYS: usize = 256;

    /// Starts a record.
    pub fn start(&mut self) {
        self.pos = 0;
    }

    /// Slots looked ahead when the key is not the expected one: a key missing from this record
    /// shifts the ones after it.
    const RESYNC: usize = 4;

    /// The field of the next key: the remembered one when the key is the same (at this place,
    /// or a few places on when keys before it are missing from this record), else `lookup`'s,
    /// remembered at this place (inserted, so the keys after it keep their places for records
    /// of the other shape).
    #[inline]
    pub(crate) fn field(
        &mut self,
        key: &[u8],
        lookup: impl FnOnce(&[u8]) -> Option<u16>,
    ) -> Option<u16> {
        let pos = self.pos;
        let same = |slot: &KeySlot| words_equal(&slot.quoted[..slot.quoted.len() - 1], key, 0);
        let ahead = self.slots.iter().skip(pos).take(Self::RESYNC + 1);
        if let Some((d, slot)) = ahead.enumerate().find(|(_, slot)| same(slot)) {
            self.hits += 1;
            self.pos = pos + d + 1;
            return slot.field;
        }
        self.misses += 1;
        self.pos = pos + 1;
        let field = lookup(key);
        let slot = KeySlot {
            quoted: [key, b"\""].concat().into_boxed_slice(),
            field,
            plain: !key.iter().any(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f)),
        };
        if self.slots.len() < Self::MAX_KEYS {
            self.slots.insert(pos.min(self.slots.len()), slot);
        } else if let Some(old) = self.slots.get_mut(pos) {
            *old = slot;
        }
        field
    }

    /// The next key as the input would write it if it is the remembered one: its bytes and
    /// closing quote. `None` when nothing is remembered or the key needs escaping.
    #[inline]
    pub(crate) fn expected_raw(&self) -> Option<&[u8]> {
        self.slots
            .get(self.pos)
            .filter(|slot| slot.plain)
            .map(|slot| &*slot.quoted)
    }

    /// The field of the next key, found in the input as [`KeyOrder::expected_raw`].
    #[inline]
    pub(crate) fn take_expected(&mut self) -> Option<u16> {
        let field = self.slots.get(self.pos).and_then(|slot| slot.field);
        self.pos += 1;
        self.hits += 1;
        field
    }

    /// Keys predicted and keys looked up so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

/// Deserializes a map key straight into the index of the field it names (`None` for keys not
/// looked for), through the record's [`KeyOrder`] when it has one.
pub struct FieldSeed<'i> {
    /// Lower-case key → field index.
    pub index: &'i CaseFoldIndex<u16>,
    /// The key order of the records before, for top-level records of a stream.
    pub order: Option<&'i mut KeyOrder>,
}

impl<'de> de::DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<u16>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Option<u16>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let index = self.index;
        Ok(match self.order {
            Some(order) => order.field(v.as_bytes(), |k| index.get(k)),
            None => index.get(v.as_bytes()),
        })
    }
}

/// Declares a struct of optional fields whose JSON keys match case-insensitively; each field
/// lists the lower-case spellings it accepts. Unknown keys are skipped; a `null` value leaves a
/// field as it was.
///
/// The struct is read two ways that fill it alike: through serde (`Deserialize`, any parser)
/// and through the strict reader ([`StrictRecord`](crate::strict_json::StrictRecord),
/// `fill_strict`, `from_strict`), which reads the fields directly. Large records are read where
/// they live (`fill_strict` into the caller's record) or straight onto the heap
/// (`deserialize_boxed`, `from_strict`), so they are never copied as they are returned.
macro_rules! case_insensitive_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident<'a> {
            $( $(#[$fmeta:meta])* $($key:literal)|+ => $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name<'a> {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
            _borrow: std::marker::PhantomData<&'a ()>,
        }

        impl<'de: 'a, 'a> serde::Deserialize<'de> for $name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut record = Self::default();
                Self::deserialize_into(d, &mut record, None)?;
                Ok(record)
            }
        }

        impl<'de> $crate::strict_json::StrictRecord<'de> for $name<'de> {
            fn read_record(
                de: &mut $crate::strict_json::StrictJson<'de, '_>,
            ) -> Result<Self, $crate::strict_json::Refused> {
                let mut record = Self::default();
                Self::fill_strict(de, &mut record, None)?;
                Ok(record)
            }
        }

        #[allow(dead_code)]
        impl<'a> $name<'a> {
            /// Deserializes a top-level record of a stream, predicting its keys from the
            /// records before (see [`KeyOrder`](crate::loose_json::KeyOrder)).
            pub fn deserialize_in_order<'de: 'a, D: serde::Deserializer<'de>>(
                d: D,
                order: &mut $crate::loose_json::KeyOrder,
            ) -> Result<Box<Self>, D::Error> {
                let mut record = Box::<Self>::default();
                Self::deserialize_into(d, &mut record, Some(order))?;
                Ok(record)
            }

            /// Deserializes a record straight onto the heap.
            pub fn deserialize_boxed<'de: 'a, D: serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Box<Self>, D::Error> {
                let mut record = Box::<Self>::default();
                Self::deserialize_into(d, &mut record, None)?;
                Ok(record)
            }

            /// Reads a nested record onto the heap with the strict reader.
            pub fn from_strict(
                de: &mut $crate::strict_json::StrictJson<'a, '_>,
            ) -> Result<Box<Self>, $crate::strict_json::Refused> {
                let mut record = Box::<Self>::default();
                Self::fill_strict(de, &mut record, None)?;
                Ok(record)
            }

            /// Lower-case key → field number (the order of declaration).
            fn key_index() -> &'static $crate::loose_json::CaseFoldIndex<u16> {
                #[allow(non_camel_case_types)]
                enum Field { $($field),* }
                static INDEX: std::sync::OnceLock<$crate::loose_json::CaseFoldIndex<u16>> =
                    std::sync::OnceLock::new();
                INDEX.get_or_init(|| {
                    $crate::loose_json::CaseFoldIndex::new(&[$( $( ($key, Field::$field as u16), )+ )*])
                })
            }

            /// Fills `record` (a default one) with the strict reader; `order` predicts the keys
            /// of a top-level record of a stream. For a record read where it lives: no heap
            /// copy, and nothing moved.
            pub fn fill_strict(
                de: &mut $crate::strict_json::StrictJson<'a, '_>,
                record: &mut Self,
                order: Option<&mut $crate::loose_json::KeyOrder>,
            ) -> Result<(), $crate::strict_json::Refused> {
                if let Some(order) = order {
                    return Self::fill_strict_in_order(de, record, order);
                }
                // A nested record: the key order of the records of this type read before.
                let id = std::any::TypeId::of::<$name<'static>>();
                let mut order = de.take_nested_order(id);
                let filled = Self::fill_strict_in_order(de, record, &mut order);
                de.put_nested_order(id, order);
                filled
            }

            fn fill_strict_in_order(
                de: &mut $crate::strict_json::StrictJson<'a, '_>,
                record: &mut Self,
                order: &mut $crate::loose_json::KeyOrder,
            ) -> Result<(), $crate::strict_json::Refused> {
                #[allow(non_camel_case_types)]
                #[derive(Clone, Copy)]
                enum Field { $($field),* }
                const FIELDS: &[Field] = &[$(Field::$field),*];
                let index = Self::key_index();
                order.start();
                de.begin_object()?;
                let mut first = true;
                while let Some(field) = de.next_key(&mut first, order, index)? {
                    match field.map(|i| FIELDS[usize::from(i)]) {
                        $( Some(Field::$field) => {
                            if let Some(value) = de.field_value::<$ty>()? {
                                record.$field = Some(value);
                            }
                        } )*
                        None => de.skip_value()?,
                    }
                }
                Ok(())
            }

            fn deserialize_into<'de: 'a, D: serde::Deserializer<'de>>(
                d: D,
                record: &mut Self,
                order: Option<&mut $crate::loose_json::KeyOrder>,
            ) -> Result<(), D::Error> {
                #[allow(non_camel_case_types)]
                #[derive(Clone, Copy)]
                enum Field { $($field),* }
                const FIELDS: &[Field] = &[$(Field::$field),*];
                struct RecordVisitor<'a, 'r, 'o> {
                    record: &'r mut $name<'a>,
                    order: Option<&'o mut $crate::loose_json::KeyOrder>,
                }
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for RecordVisitor<'a, '_, '_> {
                    type Value = ();
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
                        let index = $name::key_index();
                        if let Some(order) = self.order.as_deref_mut() {
                            order.start();
                        }
                        while let Some(field) = map.next_key_seed($crate::loose_json::FieldSeed {
                            index,
                            order: self.order.as_deref_mut(),
                        })? {
                            match field.map(|i| FIELDS[usize::from(i)]) {
                                $( Some(Field::$field) => {
                                    let value: Option<$ty> = map.next_value()?;
                                    if value.is_some() {
                                        self.record.$field = value;
                                    }
                                } )*
                                None => { map.next_value::<serde::de::IgnoredAny>()?; }
                            }
                        }
                        Ok(())
                    }
                }
                d.deserialize_map(RecordVisitor { record, order })
            }
        }
    };
}
pub(crate) use case_insensitive_record;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pair<'a> {
        #[serde(alias = "Name", borrow)]
        name: Option<Loose<'a>>,
        #[serde(alias = "Value", borrow)]
        value: Option<Loose<'a>>,
    }
    borrowed_embedded_parse!(Pair);

    fn names(list: &List<Pair<'_>>) -> Vec<(Option<String>, Option<String>)> {
        list.values()
            .map(|p| {
                (
                    p.name.as_ref().and_then(|n| n.string()),
                    p.value.as_ref().and_then(|v| v.string()),
                )
            })
            .collect()
    }

    #[test]
    fn list_accepts_array_embedded_string_and_powershell() {
        let expected = vec![(Some("MailAccessType".into()), Some("Bind".into()))];
        let a: List<Pair> =
            serde_json::from_str(r#"[{"Name":"MailAccessType","Value":"Bind"}]"#).unwrap();
        assert_eq!(names(&a), expected);
        let b: List<Pair> =
            serde_json::from_str(r#""[{\"Name\":\"MailAccessType\",\"Value\":\"Bind\"}]""#)
                .unwrap();
        assert_eq!(names(&b), expected);
        let c: List<Pair> =
            serde_json::from_str(r#"["@{Value=Bind; Name=MailAccessType}"]"#).unwrap();
        assert_eq!(names(&c), expected);
        let d: List<Pair> = serde_json::from_str(r#""System.Object[]""#).unwrap();
        assert!(d.has_unreadable());
        let e: List<Pair> = serde_json::from_str("null").unwrap();
        assert_eq!(e, List::Empty);
        let f: List<Pair> = serde_json::from_str(r#"[42, {"Name":"x"}]"#).unwrap();
        assert!(f.has_unreadable());
        assert_eq!(names(&f), vec![(Some("x".into()), None)]);
    }

    #[test]
    fn loose_scalars_drift() {
        let v: Vec<Loose> =
            serde_json::from_str(r#"["50", 50, 50.0, "False", false, null, {"a":1}, [1]]"#)
                .unwrap();
        assert_eq!(v[0].as_count(), Some(50));
        assert_eq!(v[1].as_count(), Some(50));
        assert_eq!(v[2].as_count(), Some(50));
        assert_eq!(v[3].as_bool(), Some(false));
        assert_eq!(v[4].as_bool(), Some(false));
        assert_eq!(v[5].text(), None);
        assert!(v[6].is_complex());
        assert!(v[7].is_complex());
    }

    case_insensitive_record! {
        pub struct Probe<'a> {
            "clientip" | "client_ipaddress" => client_ip: Loose<'a>,
            "operationcount" => operation_count: Loose<'a>,
        }
    }

    #[test]
    fn keys_match_case_insensitively_and_strings_borrow() {
        let input = r#"{"ClientIP":"1.2.3.4","OPERATIONCOUNT":"7","Other":{"deep":[1,2]}}"#;
        let p: Probe = serde_json::from_str(input).unwrap();
        assert!(matches!(
            p.client_ip,
            Some(Loose::Str(Cow::Borrowed("1.2.3.4")))
        ));
        assert_eq!(p.operation_count.unwrap().as_count(), Some(7));
        let q: Probe = serde_json::from_str(r#"{"client_ipaddress":"5.6.7.8"}"#).unwrap();
        assert_eq!(q.client_ip.unwrap().string().as_deref(), Some("5.6.7.8"));
    }

    /// Reads a `Probe` with `order`: its client address and operation count.
    fn read(order: &mut KeyOrder, json: &str) -> (Option<String>, Option<u64>) {
        let mut de = serde_json::Deserializer::from_str(json);
        let p = Probe::deserialize_in_order(&mut de, order).unwrap();
        (
            p.client_ip.and_then(|v| v.string()),
            p.operation_count.and_then(|v| v.as_count()),
        )
    }

    #[test]
    fn key_order_prediction_never_changes_what_is_read() {
        let mut order = KeyOrder::default();
        for _ in 0..3 {
            let same = r#"{"ClientIP":"1.1.1.1","Other":1,"OperationCount":2}"#;
            assert_eq!(read(&mut order, same), (Some("1.1.1.1".into()), Some(2)));
        }
        assert_eq!(order.hits_and_misses(), (6, 3));
        // Swapped keys in another case; an unknown key where a known one was; a longer and a
        // shorter record.
        let swapped = r#"{"OPERATIONCOUNT":3,"clientip":"2.2.2.2"}"#;
        assert_eq!(read(&mut order, swapped), (Some("2.2.2.2".into()), Some(3)));
        let longer = r#"{"Other":"1.1.1.1","ClientIP":"3.3.3.3","X":9,"OperationCount":4}"#;
        assert_eq!(read(&mut order, longer), (Some("3.3.3.3".into()), Some(4)));
        let shorter = r#"{"ClientIP":"4.4.4.4"}"#;
        assert_eq!(read(&mut order, shorter), (Some("4.4.4.4".into()), None));
        // Keys found a few places on count as predicted (the swapped record's keys, in another
        // case, are not).
        assert_eq!(order.hits_and_misses(), (9, 7));
    }

    #[test]
    fn records_of_two_shapes_are_both_predicted_once_seen() {
        // One source writes two keys more in some records (Management API records with and
        // without a client address): after one record of each shape, none of either misses.
        let a = r#"{"Id":"a","ClientIP":"1.1.1.1","UserId":"u","OperationCount":2,"Z":1}"#;
        let b = r#"{"Id":"b","OperationCount":3,"Z":1}"#;
        let mut order = KeyOrder::default();
        assert_eq!(read(&mut order, a), (Some("1.1.1.1".into()), Some(2)));
        assert_eq!(read(&mut order, b), (None, Some(3)));
        let (_, misses) = order.hits_and_misses();
        for _ in 0..5 {
            assert_eq!(read(&mut order, a), (Some("1.1.1.1".into()), Some(2)));
            assert_eq!(read(&mut order, b), (None, Some(3)));
        }
        assert_eq!(order.hits_and_misses().1, misses);
    }

    #[test]
    fn case_fold_index_finds_every_spelling_and_nothing_else() {
        let keys = [
            ("clientip", 1),
            ("client_ipaddress", 2),
            ("clientipaddress", 3),
            ("serviceprincipalcredentialthumbprint", 4),
            ("id", 5),
            ("ipv4", 6),
        ];
        let fillers = ["aa", "bbb", "cccc", "ddddd", "eeeeee", "fffffffffff"].map(|k| (k, 0));
        // Six keys are compared one by one, twelve are hashed: both lookups, same answers.
        for keys in [
            keys.to_vec(),
            [keys.as_slice(), fillers.as_slice()].concat(),
        ] {
            let index = CaseFoldIndex::new(&keys);
            for &(key, field) in &keys {
                assert_eq!(index.get(key.as_bytes()), Some(field), "{key}");
                assert_eq!(
                    index.get(key.to_uppercase().as_bytes()),
                    Some(field),
                    "{key}"
                );
            }
            assert_eq!(index.get(b"ClientIPAddress"), Some(3));
            assert_eq!(index.get(b"Client_IPAddress"), Some(2));
            // The case bit folds `_` (0x5F) onto DEL (0x7F), `@` onto a backtick and `4` onto
            // DC4 (0x14); the confirming comparison tells them apart.
            assert_eq!(index.get(b"client\x7fipaddress"), None);
            assert_eq!(index.get(b"IPV\x14"), None);
            assert_eq!(index.get(b"clientip "), None);
            assert_eq!(index.get(b"clientI"), None);
            assert_eq!(index.get(b""), None);
            assert_eq!(index.get(b"Id\0"), None);
            // `)` (0x29) shares `i`'s (0x69) low bits but differs in more than the case bit.
            assert_eq!(index.get(b"clientIP"), Some(1));
            assert_eq!(index.get(b"cl)entip"), None);
            assert_eq!(index.get(b"clientip\x7f"), None);
            assert_eq!(index.get(b"CLIENTIPADDRESX"), None);
        }
    }

    #[test]
    fn powershell_hashtables() {
        assert_eq!(
            parse_powershell_hashtable("@{Id=LgAA; Path=\\Inbox; FolderItems=System.Object[]}"),
            Some(vec![
                ("Id".into(), "LgAA".into()),
                ("Path".into(), "\\Inbox".into()),
                ("FolderItems".into(), "System.Object[]".into())
            ])
        );
        assert_eq!(parse_powershell_hashtable("plain"), None);
    }
}
