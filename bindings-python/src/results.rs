//! The core's results built as the Python package's result objects, natively.
//!
//! Each result class of `keyleash/results.py` (a frozen dataclass) registers itself
//! here at import ([`result_class`]) with its fields. A result is then built in one
//! pass over the core's own `Serialize` impl, with no JSON text in between: the
//! instance comes from the class's `tp_new` (as `object.__new__` makes it), its
//! `__dict__` is filled directly (as `_Result._own` did, since the frozen
//! dataclass's `__setattr__` refuses), `_raw` gets exactly the camelCase dict that
//! `json.loads` of the core's JSON would give (same keys, same order, the same
//! `null` for a non-finite number), and each attribute its value the Python way:
//! a timestamp as an aware `datetime`, a list or dict as a copy of its own.
//!
//! Invariants: what a class's `__dict__` gets is what `_Result._own` gave for the
//! same JSON (a key the class has no field for goes to `_raw` only, a field the
//! JSON lacks reads the class's default); the mapping from a JSON key to an
//! attribute is the Python layer's (`_attribute`), handed over once per class.
//!
//! [`Templates`] keeps the object built for each answer of the validation cache,
//! so that a cache hit copies it (a dict copy, plus a fresh copy of each list)
//! instead of building it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};
use serde::ser::{self, Serialize};

/// The result classes, in the order of their slots.
#[derive(Clone, Copy)]
pub enum Kind {
    ValidKey,
    InvalidKey,
    GrantedKey,
    Charged,
    ChargeRefused,
    Held,
    ReserveRefused,
    Settled,
    SettleRefused,
    CreatedKey,
    KeySummary,
    LedgerEntry,
    CacheStats,
}

const NAMES: [&str; 13] = [
    "ValidKey",
    "InvalidKey",
    "GrantedKey",
    "Charged",
    "ChargeRefused",
    "Held",
    "ReserveRefused",
    "Settled",
    "SettleRefused",
    "CreatedKey",
    "KeySummary",
    "LedgerEntry",
    "CacheStats",
];

/// One JSON key of a class: its interned name, and the attribute it fills (its
/// interned name, and whether it is a timestamp), if any.
struct Field {
    key: Box<str>,
    key_py: Py<PyString>,
    attribute: Option<(Py<PyString>, bool)>,
}

/// A registered result class.
struct Class {
    cls: Py<PyType>,
    /// The class's `tp_new` (`object.__new__` for a dataclass).
    new: ffi::newfunc,
    /// The JSON keys of the class's fields, in the order the core writes them.
    fields: Vec<Field>,
    /// `results._attribute(cls, key)`, asked for a key not in `fields`.
    attribute: Py<PyAny>,
}

static CLASSES: [PyOnceLock<Class>; 13] = [const { PyOnceLock::new() }; 13];

/// Registers a result class (`keyleash/results.py` and `granted.py` call it once
/// per class, at import): `fields` lists, per dataclass field, the JSON key that
/// fills it, its name and whether it is a timestamp; `attribute` is
/// `results._attribute`, asked about any other key.
#[pyfunction]
pub fn result_class(
    py: Python<'_>,
    name: &str,
    cls: Bound<'_, PyType>,
    fields: Vec<(String, String, bool)>,
    attribute: Bound<'_, PyAny>,
) -> PyResult<()> {
    let slot = NAMES
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| PyTypeError::new_err(format!("no result class is named {name:?}")))?;
    // SAFETY: `cls` is a live type object; Py_tp_new is a slot every type has
    // (inherited from `object` when the class defines no `__new__`).
    let new = unsafe { ffi::PyType_GetSlot(cls.as_type_ptr(), ffi::Py_tp_new) };
    if new.is_null() {
        return Err(PyTypeError::new_err(format!(
            "{name} cannot be instantiated"
        )));
    }
    // SAFETY: the Py_tp_new slot holds a `newfunc`.
    let new: ffi::newfunc = unsafe { std::mem::transmute(new) };
    let fields = fields
        .into_iter()
        .map(|(key, attr, time)| Field {
            key_py: PyString::intern(py, &key).unbind(),
            key: key.into(),
            attribute: Some((PyString::intern(py, &attr).unbind(), time)),
        })
        .collect();
    let class = Class {
        cls: cls.unbind(),
        new,
        fields,
        attribute: attribute.unbind(),
    };
    if CLASSES[slot].set(py, class).is_err() {
        // Registered already (the module was imported again): the first one stays.
    }
    Ok(())
}

fn class(py: Python<'_>, kind: Kind) -> PyResult<&'static Class> {
    CLASSES[kind as usize].get(py).ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "keyleash's result class {} is not registered: import keyleash",
            NAMES[kind as usize]
        ))
    })
}

/// `datetime.datetime.fromisoformat`.
fn fromisoformat(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FROMISOFORMAT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FROMISOFORMAT
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("datetime")?
                    .getattr("datetime")?
                    .getattr("fromisoformat")?
                    .unbind(),
            )
        })
        .map(|f| f.bind(py))
}

/// A new, empty instance of `class` (as `object.__new__(cls)`) and its `__dict__`.
fn instance<'py>(
    py: Python<'py>,
    class: &Class,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let args = PyTuple::empty(py);
    // SAFETY: `new` is the class's tp_new, called as `type.__call__` would call
    // it (the type, an argument tuple, no keywords); it returns a new reference or
    // NULL with an exception set.
    let obj = unsafe {
        let ptr = (class.new)(
            class.cls.as_ptr().cast(),
            args.as_ptr(),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, ptr)?
    };
    // SAFETY: `obj` is a live instance of a class with a `__dict__`; the function
    // returns a new reference (creating the dict if needed) or NULL with an error.
    let dict = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()),
        )?
    };
    Ok((obj, dict.cast_into::<PyDict>()?))
}

/// Builds one result: `_raw` and the attributes, entry by entry.
struct Builder<'py> {
    py: Python<'py>,
    class: &'static Class,
    obj: Bound<'py, PyAny>,
    attrs: Bound<'py, PyDict>,
    raw: Bound<'py, PyDict>,
    /// Where the next key is expected in `class.fields`.
    next: usize,
}

impl<'py> Builder<'py> {
    fn new(py: Python<'py>, kind: Kind) -> PyResult<Self> {
        let class = class(py, kind)?;
        let (obj, attrs) = instance(py, class)?;
        let raw = PyDict::new(py);
        attrs.set_item(pyo3::intern!(py, "_raw"), &raw)?;
        Ok(Self {
            py,
            class,
            obj,
            attrs,
            raw,
            next: 0,
        })
    }

    /// The field of `key`: the expected next one in the common case.
    fn field(&mut self, key: &str) -> Option<&'static Field> {
        let fields = &self.class.fields;
        let at = if fields.get(self.next).is_some_and(|f| &*f.key == key) {
            self.next
        } else {
            fields.iter().position(|f| &*f.key == key)?
        };
        self.next = at + 1;
        Some(&fields[at])
    }

    /// One entry of the core's JSON (`key` as [`Builder::field`] found it, or its
    /// text when the class has no field of that key): into `_raw` as is, and into
    /// its attribute.
    fn entry(
        &mut self,
        key: Result<&'static Field, String>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let py = self.py;
        match key {
            Ok(field) => {
                self.raw.set_item(field.key_py.bind(py), &value)?;
                if let Some((name, time)) = &field.attribute {
                    let value = attribute_value(py, value, *time)?;
                    self.attrs.set_item(name.bind(py), value)?;
                }
            }
            Err(key) => {
                let key = PyString::new(py, &key);
                self.raw.set_item(&key, &value)?;
                // A key the class registered no field for: the Python layer's rule.
                let attribute = self
                    .class
                    .attribute
                    .bind(py)
                    .call1((self.class.cls.bind(py), key))?;
                if !attribute.is_none() {
                    let (name, time): (Bound<'py, PyString>, bool) = attribute.extract()?;
                    self.attrs
                        .set_item(name, attribute_value(py, value, time)?)?;
                }
            }
        }
        Ok(())
    }

    /// `key`'s field, or its text.
    fn lookup(&mut self, key: &str) -> Result<&'static Field, String> {
        self.field(key).ok_or_else(|| key.to_owned())
    }

    fn finish(self) -> Bound<'py, PyAny> {
        self.obj
    }
}

/// What an attribute holds for a JSON value: a timestamp as a `datetime`, a list
/// or dict as a copy of its own (never shared with `_raw`), anything else as is.
fn attribute_value<'py>(
    py: Python<'py>,
    value: Bound<'py, PyAny>,
    time: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if time && value.is_exact_instance_of::<PyString>() {
        return fromisoformat(py)?.call1((value,));
    }
    fresh(value)
}

/// A deep copy of JSON data (lists and dicts copied, everything else shared).
fn fresh(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let py = value.py();
    if let Ok(list) = value.cast::<PyList>() {
        let copy = PyList::empty(py);
        for item in list.iter() {
            copy.append(fresh(item)?)?;
        }
        return Ok(copy.into_any());
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let copy = PyDict::new(py);
        for (k, v) in dict.iter() {
            copy.set_item(k, fresh(v)?)?;
        }
        return Ok(copy.into_any());
    }
    Ok(value)
}

/// A new result equal to `template` (built by [`Builder`]): the same class, a
/// copy of its `__dict__` (one `dict.copy()`), with lists and dicts copied again;
/// `_raw` is shared, which nothing can see (`to_dict()` returns a deep copy of it).
fn copy_of<'py>(template: &Template, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    let class = template.class;
    let args = PyTuple::empty(py);
    // SAFETY: as in `instance`.
    let obj = unsafe {
        let ptr = (class.new)(
            class.cls.as_ptr().cast(),
            args.as_ptr(),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, ptr)?
    };
    let attrs = template.attrs.bind(py).copy()?;
    for name in &template.mutable {
        let name = name.bind(py);
        if let Some(value) = attrs.get_item(name)? {
            attrs.set_item(name, fresh(value)?)?;
        }
    }
    // SAFETY: `obj` is a live instance whose class has a `__dict__`, `attrs` a
    // dict; the call takes its own reference and returns 0 or -1 with an error.
    if unsafe { ffi::PyObject_GenericSetDict(obj.as_ptr(), attrs.as_ptr(), std::ptr::null_mut()) }
        != 0
    {
        return Err(PyErr::fetch(py));
    }
    Ok(obj)
}

// ---------------------------------------------------------------- the results

/// A core result that crosses as its Python result object.
pub trait ToResult {
    /// The result object of `self`.
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
}

/// Builds one object of `kind` from a `Serialize` value that is a map or struct.
fn build<'py, T: Serialize + ?Sized>(
    py: Python<'py>,
    kind: Kind,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let mut builder = Builder::new(py, kind)?;
    value.serialize(Top(&mut builder)).map_err(|e| e.0)?;
    Ok(builder.finish())
}

impl ToResult for keyleash::Validation {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kind = if self.is_valid() {
            Kind::ValidKey
        } else {
            Kind::InvalidKey
        };
        build(py, kind, self)
    }
}

impl ToResult for keyleash::ChargeResult {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kind = if self.success() {
            Kind::Charged
        } else {
            Kind::ChargeRefused
        };
        build(py, kind, self)
    }
}

impl ToResult for keyleash::ReserveResult {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kind = if self.success() {
            Kind::Held
        } else {
            Kind::ReserveRefused
        };
        build(py, kind, self)
    }
}

impl ToResult for keyleash::SettleResult {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kind = if self.success() {
            Kind::Settled
        } else {
            Kind::SettleRefused
        };
        build(py, kind, self)
    }
}

impl ToResult for keyleash::CreatedKey {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        build(py, Kind::CreatedKey, self)
    }
}

impl ToResult for keyleash::CacheStats {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        build(py, Kind::CacheStats, self)
    }
}

impl ToResult for keyleash::KeySummary {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        build(py, Kind::KeySummary, self)
    }
}

impl ToResult for keyleash::LedgerEntry {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        build(py, Kind::LedgerEntry, self)
    }
}

impl<T: ToResult> ToResult for Vec<T> {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let list = PyList::empty(py);
        for item in self {
            list.append(item.to_result(py)?)?;
        }
        Ok(list.into_any())
    }
}

/// A valid key granted by `authenticate_key`, as a `keyleash.GrantedKey` (the
/// Python layer adds its handles).
pub struct Granted(pub keyleash::Validation);

impl ToResult for Granted {
    fn to_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        build(py, Kind::GrantedKey, &self.0)
    }
}

/// A value whose Python form is its result object (what the async methods resolve to).
pub struct Native<T>(pub T);

impl<'py, T: ToResult> IntoPyObject<'py> for Native<T> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.0.to_result(py)
    }
}

// ------------------------------------------------ the validation cache's answers

/// The object built for one of the cache's answers.
struct Template {
    class: &'static Class,
    attrs: Py<PyDict>,
    /// The attributes that hold a list or dict, copied again for each hit.
    mutable: Vec<Py<PyString>>,
}

/// The objects built for the answers of one connection's validation cache, keyed
/// by the answer's text as the core keeps it (an `Arc<str>`, one per cached
/// answer: held here, its address cannot be reused for another answer), and the
/// few refusals of the fast path by their text. At most `cap` of them (about
/// 2 KB each); when full, those the cache no longer holds go, and all go if that
/// is not enough.
pub struct Templates {
    by_answer: Mutex<ByAnswer>,
    by_text: Mutex<Vec<(Box<str>, Arc<Template>)>>,
    cap: usize,
}

/// Cached answers' templates by the address of their text, with the text.
type ByAnswer = HashMap<usize, (Arc<str>, Arc<Template>)>;

/// The most refusal texts kept (there are only a few: `invalid` and kin).
const TEXTS: usize = 8;

impl Templates {
    /// An empty set holding at most `cap` answers.
    pub fn new(cap: usize) -> Self {
        Self {
            by_answer: Mutex::new(HashMap::new()),
            by_text: Mutex::new(Vec::new()),
            cap: cap.max(1),
        }
    }

    /// The validation object of `text`, the core's JSON of a validation that needed
    /// no store (a cached answer, or the refusal of a malformed key).
    pub fn validation<'py>(&self, py: Python<'py>, text: Arc<str>) -> PyResult<Bound<'py, PyAny>> {
        // The cache holds a cached answer's text too; a refusal is made per call.
        let cached = Arc::strong_count(&text) > 1;
        let key = Arc::as_ptr(&text).cast::<u8>() as usize;
        let found = if cached {
            let map = self
                .by_answer
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner);
            map.get(&key).map(|(_, t)| Arc::clone(t))
        } else {
            let texts = self
                .by_text
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner);
            texts
                .iter()
                .find(|(t, _)| **t == *text)
                .map(|(_, t)| Arc::clone(t))
        };
        if let Some(template) = found {
            return copy_of(&template, py);
        }
        let template = Arc::new(template_of(py, &text)?);
        let obj = copy_of(&template, py)?;
        let evicted = if cached {
            let mut map = self
                .by_answer
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner);
            let mut evicted = Vec::new();
            if map.len() >= self.cap {
                // Drop what the cache has let go of (only this map holds its text).
                let dead: Vec<usize> = map
                    .iter()
                    .filter(|(_, (t, _))| Arc::strong_count(t) == 1)
                    .map(|(k, _)| *k)
                    .collect();
                evicted.extend(dead.iter().filter_map(|k| map.remove(k)));
                if map.len() >= self.cap {
                    evicted.extend(map.drain().map(|(_, entry)| entry));
                }
            }
            map.insert(key, (text, template));
            evicted
        } else {
            let mut texts = self
                .by_text
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner);
            if texts.len() < TEXTS {
                texts.push((Box::from(&*text), template));
            }
            Vec::new()
        };
        // Dropped with no lock held: releasing Python objects may run Python code.
        drop(evicted);
        Ok(obj)
    }
}

/// Builds the template of a validation from its JSON text.
fn template_of(py: Python<'_>, text: &str) -> PyResult<Template> {
    let entries: Entries =
        serde_json::from_str(text).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    let valid = entries
        .0
        .iter()
        .any(|(k, v)| k == "valid" && *v == serde_json::Value::Bool(true));
    let kind = if valid {
        Kind::ValidKey
    } else {
        Kind::InvalidKey
    };
    let built = build(py, kind, &entries)?;
    // SAFETY: as in `instance`.
    let attrs = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_GenericGetDict(built.as_ptr(), std::ptr::null_mut()),
        )?
    }
    .cast_into::<PyDict>()?;
    let mutable = attrs
        .iter()
        .filter(|(k, v)| {
            (v.is_instance_of::<PyList>() || v.is_instance_of::<PyDict>())
                && !k.is(pyo3::intern!(py, "_raw"))
        })
        .filter_map(|(k, _)| k.cast_into::<PyString>().ok().map(Bound::unbind))
        .collect();
    Ok(Template {
        class: class(py, kind)?,
        attrs: attrs.unbind(),
        mutable,
    })
}

/// A JSON object's entries in the order of its text.
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some(entry) = m.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl Serialize for Entries {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

// ------------------------------------------------ serde into Python objects

/// A failure while building: a Python error, or a value JSON cannot hold.
pub struct Error(PyErr);

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(PyRuntimeError::new_err(msg.to_string()))
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error(e)
    }
}

/// The top level of a result: a map or struct whose entries go to a [`Builder`].
struct Top<'a, 'py>(&'a mut Builder<'py>);

/// The entries of the top level.
struct TopEntries<'a, 'py> {
    builder: &'a mut Builder<'py>,
    key: Option<Result<&'static Field, String>>,
}

fn not_an_object<T>() -> Result<T, Error> {
    Err(ser::Error::custom(
        "a keyleash result must be a JSON object",
    ))
}

macro_rules! refuse_top {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), Error> { not_an_object() })*
    };
}

impl<'a, 'py> ser::Serializer for Top<'a, 'py> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = TopEntries<'a, 'py>;
    type SerializeStruct = TopEntries<'a, 'py>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    refuse_top! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        not_an_object()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        not_an_object()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        not_an_object()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        not_an_object()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        not_an_object()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Ok(TopEntries {
            builder: self.0,
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Ok(TopEntries {
            builder: self.0,
            key: None,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        not_an_object()
    }
}

impl TopEntries<'_, '_> {
    fn found<K: Serialize + ?Sized>(
        &mut self,
        key: &K,
    ) -> Result<Result<&'static Field, String>, Error> {
        let builder = &mut *self.builder;
        key.serialize(KeyText(|k: &str| builder.lookup(k)))
    }

    fn put<T: Serialize + ?Sized>(
        &mut self,
        key: Result<&'static Field, String>,
        value: &T,
    ) -> Result<(), Error> {
        let value = value.serialize(Value(self.builder.py))?;
        Ok(self.builder.entry(key, value)?)
    }
}

impl ser::SerializeMap for TopEntries<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), Error> {
        let key = self.found(key)?;
        self.put(key, value)
    }
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(self.found(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("a value without a key"))?;
        self.put(key, value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl ser::SerializeStruct for TopEntries<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let key = self.builder.lookup(key);
        self.put(key, value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// A map key as JSON writes it (a string, or an integer as its digits), handed
/// to the closure.
struct KeyText<F>(F);

macro_rules! key_digits {
    ($($name:ident($t:ty);)*) => {
        $(fn $name(self, v: $t) -> Result<R, Error> { Ok((self.0)(&v.to_string())) })*
    };
}

macro_rules! refuse_key {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<R, Error> { not_a_key() })*
    };
}

fn not_a_key<T>() -> Result<T, Error> {
    Err(ser::Error::custom("a JSON object key must be a string"))
}

impl<R, F: FnOnce(&str) -> R> ser::Serializer for KeyText<F> {
    type Ok = R;
    type Error = Error;
    type SerializeSeq = ser::Impossible<R, Error>;
    type SerializeTuple = ser::Impossible<R, Error>;
    type SerializeTupleStruct = ser::Impossible<R, Error>;
    type SerializeTupleVariant = ser::Impossible<R, Error>;
    type SerializeMap = ser::Impossible<R, Error>;
    type SerializeStruct = ser::Impossible<R, Error>;
    type SerializeStructVariant = ser::Impossible<R, Error>;

    key_digits! {
        serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64);
        serialize_char(char);
    }
    refuse_key! {
        serialize_bool(bool); serialize_f32(f32); serialize_f64(f64);
        serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
    }

    fn serialize_str(self, v: &str) -> Result<R, Error> {
        Ok((self.0)(v))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<R, Error> {
        Ok((self.0)(variant))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<R, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<R, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<R, Error> {
        not_a_key()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        not_a_key()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        not_a_key()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        not_a_key()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        not_a_key()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        not_a_key()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        not_a_key()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        not_a_key()
    }
}

/// Any value, as `json.loads` of its serde_json text would give it: numbers as
/// int or float (a non-finite float as None, serde_json's `null`), enums
/// externally tagged, bytes as a list of ints.
struct Value<'py>(Python<'py>);

/// A list being filled (a sequence or tuple), or `{variant: [...]}`.
struct Seq<'py> {
    list: Bound<'py, PyList>,
    variant: Option<&'static str>,
}

/// A dict being filled (a map or struct), or `{variant: {...}}`.
struct Map<'py> {
    dict: Bound<'py, PyDict>,
    key: Option<Bound<'py, PyString>>,
    variant: Option<&'static str>,
}

fn tagged<'py>(
    variant: Option<&'static str>,
    value: Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>, Error> {
    Ok(match variant {
        None => value,
        Some(variant) => {
            let dict = PyDict::new(value.py());
            dict.set_item(variant, value)?;
            dict.into_any()
        }
    })
}

macro_rules! int_value {
    ($($name:ident($t:ty);)*) => {
        $(fn $name(self, v: $t) -> Result<Bound<'py, PyAny>, Error> {
            Ok(match v.into_pyobject(self.0) {
                Ok(v) => v.into_any(),
                Err(never) => match never {},
            })
        })*
    };
}

impl<'py> ser::Serializer for Value<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    type SerializeSeq = Seq<'py>;
    type SerializeTuple = Seq<'py>;
    type SerializeTupleStruct = Seq<'py>;
    type SerializeTupleVariant = Seq<'py>;
    type SerializeMap = Map<'py>;
    type SerializeStruct = Map<'py>;
    type SerializeStructVariant = Map<'py>;

    int_value! {
        serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64);
        serialize_i128(i128); serialize_u128(u128);
    }

    fn serialize_bool(self, v: bool) -> Result<Self::Ok, Error> {
        Ok(PyBool::new(self.0, v).to_owned().into_any())
    }
    fn serialize_f32(self, v: f32) -> Result<Self::Ok, Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Self::Ok, Error> {
        Ok(if v.is_finite() {
            PyFloat::new(self.0, v).into_any()
        } else {
            self.0.None().into_bound(self.0)
        })
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok, Error> {
        let mut buf = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Result<Self::Ok, Error> {
        Ok(PyString::new(self.0, v).into_any())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Self::Ok, Error> {
        Ok(PyList::new(self.0, v)?.into_any())
    }
    fn serialize_none(self) -> Result<Self::Ok, Error> {
        Ok(self.0.None().into_bound(self.0))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Self::Ok, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Self::Ok, Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Self::Ok, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Self::Ok, Error> {
        tagged(Some(variant), v.serialize(Value(self.0))?)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'py>, Error> {
        Ok(Seq {
            list: PyList::empty(self.0),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'py>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'py>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'py>, Error> {
        Ok(Seq {
            list: PyList::empty(self.0),
            variant: Some(variant),
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'py>, Error> {
        Ok(Map {
            dict: PyDict::new(self.0),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Map<'py>, Error> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Map<'py>, Error> {
        Ok(Map {
            dict: PyDict::new(self.0),
            key: None,
            variant: Some(variant),
        })
    }
}

impl<'py> Seq<'py> {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        Ok(self.list.append(v.serialize(Value(self.list.py()))?)?)
    }
    fn done(self) -> Result<Bound<'py, PyAny>, Error> {
        tagged(self.variant, self.list.into_any())
    }
}

macro_rules! seq_impl {
    ($($trait:ident::$method:ident;)*) => {
        $(impl<'py> ser::$trait for Seq<'py> {
            type Ok = Bound<'py, PyAny>;
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                self.push(v)
            }
            fn end(self) -> Result<Bound<'py, PyAny>, Error> {
                self.done()
            }
        })*
    };
}

seq_impl! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

impl<'py> Map<'py> {
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let py = self.dict.py();
        self.key = Some(key.serialize(KeyText(|k: &str| PyString::new(py, k)))?);
        Ok(())
    }
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("a value without a key"))?;
        Ok(self
            .dict
            .set_item(key, v.serialize(Value(self.dict.py()))?)?)
    }
    fn done(self) -> Result<Bound<'py, PyAny>, Error> {
        tagged(self.variant, self.dict.into_any())
    }
}

impl<'py> ser::SerializeMap for Map<'py> {
    type Ok = Bound<'py, PyAny>;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.value(v)
    }
    fn end(self) -> Result<Bound<'py, PyAny>, Error> {
        self.done()
    }
}

macro_rules! struct_impl {
    ($($trait:ident;)*) => {
        $(impl<'py> ser::$trait for Map<'py> {
            type Ok = Bound<'py, PyAny>;
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Error> {
                self.key(key)?;
                self.value(v)
            }
            fn end(self) -> Result<Bound<'py, PyAny>, Error> {
                self.done()
            }
        })*
    };
}

struct_impl! {
    SerializeStruct;
    SerializeStructVariant;
}
