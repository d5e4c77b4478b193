//! `medic_allowlist`: the allowlist verifier of the Medic agent, as a Python module for the
//! server.
//!
//! An agent advertises its rules in its `Hello` (the protocol's `AllowlistSummary`); the server
//! keeps them as the dict `json_format.MessageToDict(summary, preserving_proto_field_name=True,
//! always_print_fields_with_no_presence=True)` gives, and checks every request against them
//! before sending it. This module turns that dict into a [`RuleSet`] and checks requests with
//! [`RuleSet::check`], the same code the agent runs, so the server and the agent never disagree
//! about what is allowed.
//!
//! # Design
//!
//! The module only translates between Python values and the crate's types; every rule and
//! limit lives in `medic-allowlist`:
//!
//! - **Summaries in** (`Rules.from_summary`): the dict is read with protobuf's rules (an
//!   absent key or `None` means the field's default: `""`, `0`, `[]`, no message), each entry is
//!   built with [`RuleSpec::build`] and [`ScriptRules::new`], the set with [`RuleSet::new`]. A
//!   dict of the wrong shape raises `SummaryError` with code `invalid_summary`; a rule that
//!   breaks the allowlist format raises it with the format's own code (`invalid_pattern`, …).
//!   Reading needs the GIL; building (compiling patterns: up to seconds for the largest
//!   summaries the format allows) runs without it, so the whole dict is read first and a shape
//!   error anywhere is reported before a format error.
//! - **Summaries out** (`summary_from_toml`, `Rules.to_summary`): the same dict shape, so
//!   `from_summary(summary_from_toml(text))` is the set the agent reading `text` advertises.
//! - **Requests**: text Python can hold but UTF-8 cannot (lone surrogates) could never travel
//!   in the protocol; such a value is replaced by one with a NUL byte, which no rule allows, so
//!   the crate refuses it at the right step, with the right code.

#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use medic_allowlist::{
    Allowlist, ArgumentRule, LoadError as CrateLoadError, Problem, Reason, Request, RestArguments,
    RulePosition, RuleSet, RuleSpec, ScriptRules, Sha256,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyMapping, PyString, PyTuple};

pyo3::create_exception!(
    medic_allowlist,
    SummaryError,
    PyValueError,
    "An advertised allowlist summary is invalid; `code` says how (`invalid_summary` for a dict \
     of the wrong shape, otherwise the allowlist format's code)."
);
pyo3::create_exception!(
    medic_allowlist,
    LoadError,
    PyValueError,
    "Allowlist text is invalid; `code` is the allowlist format's error code."
);

/// The codes `SummaryError.code` can take.
const SUMMARY_ERROR_CODES: [&str; 11] = [
    "invalid_summary",
    "invalid_sha256",
    "too_many_scripts",
    "duplicate_name",
    "invalid_name",
    "invalid_timeout",
    "invalid_rule",
    "invalid_pattern",
    "too_many_args",
    "invalid_env_name",
    "forbidden_env_name",
];

/// A Python exception of type `E` with a `code` attribute.
fn coded_error<E: pyo3::PyTypeInfo>(py: Python<'_>, code: &str, message: String) -> PyErr {
    let error = PyErr::new::<E, _>(message);
    if let Err(failure) = error.value(py).setattr("code", code) {
        return failure;
    }
    error
}

// ---- reading a summary --------------------------------------------------------------------------

/// Why a summary was refused, before it becomes a Python exception.
enum SummaryFault {
    /// Not the dict shape of an `AllowlistSummary`: where, and what is wrong.
    Shape(String, String),
    /// A hash that is not 64 hexadecimal digits: where.
    Sha256(String),
    /// An entry, or the set, breaks the allowlist format.
    Format(CrateLoadError),
}

impl SummaryFault {
    fn into_py(self, py: Python<'_>) -> PyErr {
        let (code, message) = match self {
            SummaryFault::Shape(path, problem) => (
                "invalid_summary",
                format!("invalid allowlist summary: {path}: {problem}"),
            ),
            SummaryFault::Sha256(path) => (
                "invalid_sha256",
                format!("invalid allowlist summary: {path}: a SHA-256 is 64 hexadecimal digits"),
            ),
            SummaryFault::Format(error) => {
                (error.code(), format!("invalid allowlist summary: {error}"))
            }
        };
        coded_error::<SummaryError>(py, code, message)
    }
}

type Read<T> = Result<T, SummaryFault>;

fn shape<T>(path: &str, problem: impl Into<String>) -> Read<T> {
    Err(SummaryFault::Shape(path.to_owned(), problem.into()))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
}

/// A mapping with string keys among `keys`; absent keys and `None` values read as defaults.
struct Message<'py> {
    path: String,
    fields: BTreeMap<String, Bound<'py, PyAny>>,
}

impl<'py> Message<'py> {
    fn read(value: &Bound<'py, PyAny>, path: &str, keys: &[&str]) -> Read<Self> {
        let Ok(mapping) = value.cast::<PyMapping>() else {
            return shape(
                path,
                format!("expected a mapping, got {}", type_name(value)),
            );
        };
        let Ok(items) = mapping.items() else {
            return shape(path, "cannot list the mapping's items");
        };
        let mut fields = BTreeMap::new();
        for item in items.iter() {
            let Ok((key, field)) = item.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>() else {
                return shape(path, "cannot read the mapping's items");
            };
            let Ok(key) = key.cast::<PyString>() else {
                return shape(
                    path,
                    format!("a key is a {}, not a string", type_name(&key)),
                );
            };
            let key = key.to_string_lossy().into_owned();
            if !keys.contains(&key.as_str()) {
                return shape(
                    path,
                    format!("unknown key {key:?} (expected one of {})", keys.join(", ")),
                );
            }
            if !field.is_none() {
                fields.insert(key, field);
            }
        }
        Ok(Self {
            path: path.to_owned(),
            fields,
        })
    }

    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    fn string(&self, key: &str) -> Read<String> {
        match self.fields.get(key) {
            None => Ok(String::new()),
            Some(value) => read_string(value, &self.path(key)),
        }
    }

    /// An integer, saturated to `i64` (the bounds the crate checks are far inside it).
    fn integer(&self, key: &str) -> Read<i64> {
        let Some(value) = self.fields.get(key) else {
            return Ok(0);
        };
        if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
            return shape(
                &self.path(key),
                format!("expected an integer, got {}", type_name(value)),
            );
        }
        Ok(value.extract::<i64>().unwrap_or_else(|_| {
            if value.lt(0).unwrap_or(false) {
                i64::MIN
            } else {
                i64::MAX
            }
        }))
    }

    fn list(&self, key: &str) -> Read<Vec<Bound<'py, PyAny>>> {
        let Some(value) = self.fields.get(key) else {
            return Ok(Vec::new());
        };
        let path = self.path(key);
        if let Ok(list) = value.cast::<PyList>() {
            return Ok(list.iter().collect());
        }
        if let Ok(tuple) = value.cast::<PyTuple>() {
            return Ok(tuple.iter().collect());
        }
        shape(&path, format!("expected a list, got {}", type_name(value)))
    }

    fn strings(&self, key: &str) -> Read<Vec<String>> {
        let path = self.path(key);
        self.list(key)?
            .iter()
            .enumerate()
            .map(|(index, value)| read_string(value, &format!("{path}[{index}]")))
            .collect()
    }

    fn message(&self, key: &str, keys: &[&str]) -> Read<Option<Message<'py>>> {
        self.fields
            .get(key)
            .map(|value| Message::read(value, &self.path(key), keys))
            .transpose()
    }
}

fn read_string(value: &Bound<'_, PyAny>, path: &str) -> Read<String> {
    let Ok(text) = value.cast::<PyString>() else {
        return shape(path, format!("expected a string, got {}", type_name(value)));
    };
    match text.to_str() {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => shape(path, "the string is not valid Unicode (a lone surrogate)"),
    }
}

const SUMMARY_KEYS: &[&str] = &["sha256", "scripts"];
const SCRIPT_KEYS: &[&str] = &["name", "sha256", "args", "rest", "env", "timeout_seconds"];
const RULE_KEYS: &[&str] = &["fixed", "one_of", "pattern"];
const VALUE_SET_KEYS: &[&str] = &["values"];
const PATTERN_KEYS: &[&str] = &["regex", "max_len"];
const REST_KEYS: &[&str] = &["rule", "max_count"];

fn read_sha256(message: &Message<'_>, key: &str) -> Read<Sha256> {
    message
        .string(key)?
        .parse()
        .map_err(|_| SummaryFault::Sha256(message.path(key)))
}

fn read_rule(message: &Message<'_>) -> Read<RuleSpec> {
    let one_of = message
        .message("one_of", VALUE_SET_KEYS)?
        .map(|set| set.strings("values"))
        .transpose()?;
    let pattern = message.message("pattern", PATTERN_KEYS)?;
    let (pattern, max_len) = match pattern {
        Some(pattern) => (
            Some(pattern.string("regex")?),
            Some(pattern.integer("max_len")?),
        ),
        None => (None, None),
    };
    Ok(RuleSpec {
        fixed: message
            .has("fixed")
            .then(|| message.string("fixed"))
            .transpose()?,
        one_of,
        pattern,
        max_len,
    })
}

/// One entry as read from the dict, its rules not built yet: building compiles patterns, the
/// costly part, which runs without the GIL ([`build_summary`]).
struct EntrySpec {
    index: usize,
    name: String,
    sha256: Sha256,
    timeout: Duration,
    args: Vec<RuleSpec>,
    rest: Option<(RuleSpec, usize)>,
    env: Vec<String>,
}

impl EntrySpec {
    fn build(self) -> Read<ScriptRules> {
        let EntrySpec {
            index,
            name,
            sha256,
            timeout,
            args: specs,
            rest,
            env,
        } = self;
        let fault = |problem: Problem| {
            SummaryFault::Format(CrateLoadError::Entry {
                index: index + 1,
                name: name.clone(),
                problem,
            })
        };
        let mut args = Vec::with_capacity(specs.len());
        for (position, spec) in specs.into_iter().enumerate() {
            args.push(
                spec.build(RulePosition::Argument(position + 1))
                    .map_err(fault)?,
            );
        }
        let rest = match rest {
            None => None,
            Some((spec, max_count)) => Some(RestArguments {
                rule: spec.build(RulePosition::Rest).map_err(fault)?,
                max_count,
            }),
        };
        ScriptRules::new(name.clone(), sha256, args, rest, env, timeout).map_err(fault)
    }
}

fn read_script(message: &Message<'_>, index: usize) -> Read<EntrySpec> {
    let name = message.string("name")?;
    let sha256 = read_sha256(message, "sha256")?;
    let Ok(timeout) = u64::try_from(message.integer("timeout_seconds")?) else {
        return Err(SummaryFault::Format(CrateLoadError::Entry {
            index: index + 1,
            name,
            problem: Problem::InvalidTimeout,
        }));
    };
    let mut args = Vec::new();
    for (position, value) in message.list("args")?.iter().enumerate() {
        let rule = Message::read(
            value,
            &format!("{}[{position}]", message.path("args")),
            RULE_KEYS,
        )?;
        args.push(read_rule(&rule)?);
    }
    let rest = match message.message("rest", REST_KEYS)? {
        None => None,
        Some(rest) => {
            let rule = rest.message("rule", RULE_KEYS)?;
            let max_count = rest.integer("max_count")?;
            if max_count == 0 && rule.as_ref().is_none_or(|rule| rule.fields.is_empty()) {
                // The empty message: no further arguments, as when `rest` is absent.
                None
            } else {
                let spec = match rule {
                    Some(rule) => read_rule(&rule)?,
                    None => RuleSpec::default(),
                };
                // Negative: 0, which `ScriptRules::new` refuses.
                Some((spec, usize::try_from(max_count).unwrap_or(0)))
            }
        }
    };
    let env = message.strings("env")?;
    Ok(EntrySpec {
        index,
        name,
        sha256,
        timeout: Duration::from_secs(timeout),
        args,
        rest,
        env,
    })
}

/// Read the summary dict (with the GIL): its shape, its hashes, every entry's raw rules.
fn read_summary(summary: &Bound<'_, PyAny>) -> Read<(Sha256, Vec<EntrySpec>)> {
    let message = Message::read(summary, "summary", SUMMARY_KEYS)?;
    let sha256 = read_sha256(&message, "sha256")?;
    let mut scripts = Vec::new();
    for (index, value) in message.list("scripts")?.iter().enumerate() {
        let path = format!("{}[{index}]", message.path("scripts"));
        let script = Message::read(value, &path, SCRIPT_KEYS)?;
        scripts.push(read_script(&script, index)?);
    }
    Ok((sha256, scripts))
}

/// Build the rule set (no Python values: this runs without the GIL). Entries are built in
/// order, so the first entry that breaks the format is the one reported.
fn build_summary(sha256: Sha256, entries: Vec<EntrySpec>) -> Read<RuleSet> {
    let mut scripts = Vec::with_capacity(entries.len());
    for entry in entries {
        scripts.push(entry.build()?);
    }
    RuleSet::new(sha256, scripts).map_err(SummaryFault::Format)
}

// ---- writing a summary ----------------------------------------------------------------------

fn rule_dict<'py>(py: Python<'py>, rule: &ArgumentRule) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    match rule {
        ArgumentRule::Fixed(value) => dict.set_item("fixed", value)?,
        ArgumentRule::OneOf(values) => {
            let set = PyDict::new(py);
            set.set_item("values", PyList::new(py, values)?)?;
            dict.set_item("one_of", set)?;
        }
        ArgumentRule::Pattern(pattern) => {
            let inner = PyDict::new(py);
            inner.set_item("regex", pattern.source())?;
            inner.set_item("max_len", pattern.max_len())?;
            dict.set_item("pattern", inner)?;
        }
        // `ArgumentRule` may grow kinds; an unknown one is an error, never an empty rule.
        #[allow(unreachable_patterns)]
        _ => return Err(PyValueError::new_err("an argument rule of an unknown kind")),
    }
    Ok(dict)
}

/// The summary dict of a rule set, in the shape (and key order) of `MessageToDict`.
fn summary_dict<'py>(py: Python<'py>, set: &RuleSet) -> PyResult<Bound<'py, PyDict>> {
    let scripts = PyList::empty(py);
    for rules in set.scripts() {
        let script = PyDict::new(py);
        script.set_item("name", rules.name())?;
        script.set_item("sha256", rules.sha256().to_string())?;
        let args = PyList::empty(py);
        for rule in rules.args() {
            args.append(rule_dict(py, rule)?)?;
        }
        script.set_item("args", args)?;
        if let Some(rest) = rules.rest() {
            let dict = PyDict::new(py);
            dict.set_item("rule", rule_dict(py, &rest.rule)?)?;
            dict.set_item("max_count", rest.max_count)?;
            script.set_item("rest", dict)?;
        }
        script.set_item("env", PyList::new(py, rules.env())?)?;
        script.set_item("timeout_seconds", rules.timeout().as_secs())?;
        scripts.append(script)?;
    }
    let summary = PyDict::new(py);
    summary.set_item("sha256", set.sha256().to_string())?;
    summary.set_item("scripts", scripts)?;
    Ok(summary)
}

// ---- requests -----------------------------------------------------------------------------------

/// The text of a Python string; one UTF-8 cannot hold becomes text with a NUL byte, which every
/// check refuses (see the module's documentation).
fn request_text(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    let text = value.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("{what} must be a str, not {}", type_name(value)))
    })?;
    Ok(match text.to_str() {
        Ok(text) => text.to_owned(),
        Err(_) => format!("{}\0", text.to_string_lossy()),
    })
}

/// A refused request: `reason` is the stable code, `detail` explains it for people and never
/// holds argument or environment values.
#[pyclass(module = "medic_allowlist", frozen, eq, hash)]
#[derive(PartialEq, Eq, Hash)]
struct Refusal {
    reason: String,
    detail: String,
}

#[pymethods]
impl Refusal {
    #[new]
    fn new(reason: String, detail: String) -> PyResult<Self> {
        reason
            .parse::<Reason>()
            .map_err(|error| PyValueError::new_err(error.to_string()))?;
        Ok(Self { reason, detail })
    }

    /// The stable reason code, e.g. `arg_not_allowed`.
    #[getter]
    fn reason(&self) -> &str {
        &self.reason
    }

    /// A human-readable explanation.
    #[getter]
    fn detail(&self) -> &str {
        &self.detail
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let reason = PyString::new(py, &self.reason).repr()?;
        let detail = PyString::new(py, &self.detail).repr()?;
        Ok(format!("Refusal(reason={reason}, detail={detail})"))
    }

    fn __str__(&self) -> String {
        format!("{}: {}", self.reason, self.detail)
    }
}

/// The rules an agent advertised, ready to check requests against.
#[pyclass(module = "medic_allowlist", frozen)]
struct Rules {
    set: RuleSet,
}

#[pymethods]
impl Rules {
    /// Build the rules from an advertised summary (the `MessageToDict` form of the protocol's
    /// `AllowlistSummary`); raises `SummaryError` when it is invalid.
    #[staticmethod]
    fn from_summary(py: Python<'_>, summary: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (sha256, entries) = read_summary(summary).map_err(|fault| fault.into_py(py))?;
        // Compiling the patterns of a large summary takes seconds of CPU: without the GIL, a
        // server calling this from a worker thread keeps serving meanwhile.
        py.detach(move || build_summary(sha256, entries))
            .map(|set| Self { set })
            .map_err(|fault| fault.into_py(py))
    }

    /// The SHA-256 of the allowlist the rules come from (lower-case hex).
    #[getter]
    fn sha256(&self) -> String {
        self.set.sha256().to_string()
    }

    /// The entry names, sorted.
    fn names(&self) -> Vec<String> {
        self.set
            .scripts()
            .map(|rules| rules.name().to_owned())
            .collect()
    }

    /// The summary dict again (sorted by name), in `MessageToDict`'s shape.
    fn to_summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        summary_dict(py, &self.set)
    }

    /// Check a request; `None` when the rules allow it, otherwise the `Refusal`.
    #[pyo3(signature = (script, args, env, timeout_seconds=None, expected_sha256=None))]
    fn check(
        &self,
        script: &Bound<'_, PyAny>,
        args: &Bound<'_, PyAny>,
        env: &Bound<'_, PyAny>,
        timeout_seconds: Option<&Bound<'_, PyAny>>,
        expected_sha256: Option<&str>,
    ) -> PyResult<Option<Refusal>> {
        let request = Request {
            script: request_text(script, "script")?,
            args: request_args(args)?,
            env: request_env(env)?,
            timeout: request_timeout(timeout_seconds)?,
            expected_sha256: match expected_sha256 {
                None | Some("") => None,
                Some(text) => Some(text.parse().map_err(|_| {
                    PyValueError::new_err("expected_sha256 must be 64 hexadecimal digits")
                })?),
            },
        };
        Ok(self.set.check(&request).err().map(|refusal| Refusal {
            reason: refusal.reason().as_str().to_owned(),
            detail: refusal.detail().to_owned(),
        }))
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    fn __contains__(&self, name: &str) -> bool {
        self.set.get(name).is_some()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Rules sha256={} scripts={}>",
            self.set.sha256(),
            self.set.len()
        )
    }
}

fn request_args(args: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if args.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "args must be a sequence of str, not a str",
        ));
    }
    args.try_iter()?
        .enumerate()
        .map(|(index, arg)| request_text(&arg?, &format!("args[{index}]")))
        .collect()
}

fn request_env(env: &Bound<'_, PyAny>) -> PyResult<BTreeMap<String, String>> {
    let mapping = env.cast::<PyMapping>().map_err(|_| {
        PyTypeError::new_err(format!(
            "env must be a mapping of str to str, not {}",
            type_name(env)
        ))
    })?;
    let mut vars = BTreeMap::new();
    for item in mapping.items()?.iter() {
        let (name, value) = item.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()?;
        vars.insert(
            request_text(&name, "an env name")?,
            request_text(&value, "an env value")?,
        );
    }
    Ok(vars)
}

fn request_timeout(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    let Some(timeout) = timeout.filter(|timeout| !timeout.is_none()) else {
        return Ok(None);
    };
    if timeout.is_instance_of::<PyBool>() || !timeout.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "timeout_seconds must be an int, not {}",
            type_name(timeout)
        )));
    }
    if timeout.lt(0)? {
        return Err(PyValueError::new_err(
            "timeout_seconds must not be negative",
        ));
    }
    // Beyond u64: longer than any entry allows, refused as such.
    Ok(Some(Duration::from_secs(
        timeout.extract::<u64>().unwrap_or(u64::MAX),
    )))
}

// ---- the module -------------------------------------------------------------------------------

/// Parse allowlist text (no file checks) and return the summary its agent advertises, as a
/// dict; raises `LoadError` when the text is invalid.
#[pyfunction]
fn summary_from_toml<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let text = text.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("text must be a str, not {}", type_name(text)))
    })?;
    let Ok(text) = text.to_str() else {
        let error = CrateLoadError::Invalid("the text is not valid Unicode".into());
        return Err(coded_error::<LoadError>(
            py,
            error.code(),
            error.to_string(),
        ));
    };
    match Allowlist::from_toml(text) {
        Ok(allowlist) => summary_dict(py, &allowlist.rule_set()),
        Err(error) => Err(coded_error::<LoadError>(
            py,
            error.code(),
            error.to_string(),
        )),
    }
}

/// The Medic allowlist verifier (the agent's own Rust code), for the server: `Rules` built from
/// an agent's advertised summary check requests exactly as the agent will.
#[pymodule(name = "medic_allowlist")]
fn medic_allowlist_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<Rules>()?;
    module.add_class::<Refusal>()?;
    module.add("SummaryError", py.get_type::<SummaryError>())?;
    module.add("LoadError", py.get_type::<LoadError>())?;
    module.add_function(wrap_pyfunction!(summary_from_toml, module)?)?;
    module.add(
        "REASON_CODES",
        PyTuple::new(py, Reason::ALL.iter().map(|reason| reason.as_str()))?,
    )?;
    module.add(
        "CHECK_REASON_CODES",
        PyTuple::new(py, Reason::RULE_CHECKS.iter().map(|reason| reason.as_str()))?,
    )?;
    module.add("LOAD_ERROR_CODES", PyTuple::new(py, CrateLoadError::CODES)?)?;
    module.add(
        "SUMMARY_ERROR_CODES",
        PyTuple::new(py, SUMMARY_ERROR_CODES)?,
    )?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
