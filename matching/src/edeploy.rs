//! Converting an eDeploy configuration directory to HardwareProfile and Cmdb objects. Pure: the
//! files come in as text ([`crate::import`] reads them from disk).
//!
//! - `state` (`[('hp', 4), ('vm', '*')]`) gives the profiles, their order (priority 10, 20, …)
//!   and counts (`maxMachines`; `'*'` is unlimited).
//! - `<name>.specs` gives the rules, `<name>.cmdb` the Cmdb the profile refers to.
//! - `<name>.configure` is Python to run on the machine: noted, never executed.

use std::collections::{BTreeMap, BTreeSet};

use machinist_crds::cmdb::{GenerateBlock, is_variable_name};
use machinist_crds::{Cmdb, CmdbSpec, HardwareProfile, HardwareProfileSpec, LocalObjectRef, Quad};

use crate::generate::{self, Entry, MAX_ENTRIES};
use crate::pyliteral::{self, Node, Pos, Value};
use crate::rule::RuleSet;

/// Python's `_generate_values` repeats a non-string scalar this many times.
const PYTHON_REPEAT: u64 = 16_387_064;

/// What an import produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportResult {
    /// One per profile of `state`, in its order.
    pub profiles: Vec<HardwareProfile>,
    /// One per `.cmdb` of an imported profile.
    pub cmdbs: Vec<Cmdb>,
    /// What the user should know: files not executed or ignored, conversions made.
    pub notes: Vec<String>,
}

/// Why an eDeploy directory cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file is not a Python literal.
    #[error("{file}:{pos}: {message}")]
    Syntax {
        /// File name.
        file: String,
        /// Where.
        pos: Pos,
        /// What.
        message: String,
    },
    /// A file is a literal of the wrong shape.
    #[error("{file}:{pos}: {message}")]
    Invalid {
        /// File name.
        file: String,
        /// Where.
        pos: Pos,
        /// What.
        message: String,
    },
    /// The directory has no `state` file.
    #[error("{0}: no state file; not an eDeploy configuration directory")]
    NoState(String),
    /// A file cannot be read.
    #[error("{path}: {message}")]
    Read {
        /// Path.
        path: String,
        /// Why.
        message: String,
    },
    /// The objects do not serialize.
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

fn invalid(file: &str, pos: Pos, message: impl Into<String>) -> ImportError {
    ImportError::Invalid { file: file.to_owned(), pos, message: message.into() }
}

fn parse(file: &str, text: &str) -> Result<Node, ImportError> {
    pyliteral::parse(text).map_err(|e| ImportError::Syntax { file: file.to_owned(), pos: e.pos, message: e.message })
}

/// One line of `state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    /// Profile name as written.
    pub name: String,
    /// `None` for `'*'`.
    pub count: Option<i32>,
    /// Where it is written.
    pub pos: Pos,
}

/// Reads `state`: a list of `(name, count)`.
pub fn parse_state(text: &str) -> Result<Vec<StateEntry>, ImportError> {
    let file = "state";
    let node = parse(file, text)?;
    let (Value::List(items) | Value::Tuple(items)) = node.value else {
        return Err(invalid(
            file,
            node.pos,
            format!("expected a list of (profile, count), found {}", node.value.kind()),
        ));
    };
    items
        .into_iter()
        .map(|item| {
            let (Value::Tuple(pair) | Value::List(pair)) = &item.value else {
                return Err(invalid(file, item.pos, format!("expected (profile, count), found {}", item.value.kind())));
            };
            let [name, count] = &pair[..] else {
                return Err(invalid(
                    file,
                    item.pos,
                    format!("expected (profile, count), found {} elements", pair.len()),
                ));
            };
            let Value::Str(name_text) = &name.value else {
                return Err(invalid(
                    file,
                    name.pos,
                    format!("profile name must be a string, found {}", name.value.kind()),
                ));
            };
            let count_value =
                match &count.value {
                    Value::Str(s) if s == "*" => None,
                    Value::Int(n) | Value::Str(n) => Some(n.trim().parse::<i64>().map_err(|_| {
                        invalid(file, count.pos, format!("count must be an integer or '*', found {n:?}"))
                    })?),
                    other => {
                        return Err(invalid(
                            file,
                            count.pos,
                            format!("count must be an integer or '*', found {}", other.kind()),
                        ));
                    }
                };
            Ok(StateEntry {
                name: name_text.clone(),
                count: count_value.map(|n| n.clamp(0, 1_000_000) as i32),
                pos: item.pos,
            })
        })
        .collect()
}

/// Reads a `.specs` file: a list of 4-tuples. Numbers become strings (noted).
pub fn parse_specs(file: &str, text: &str) -> Result<(Vec<Quad>, Vec<String>), ImportError> {
    let node = parse(file, text)?;
    let (Value::List(items) | Value::Tuple(items)) = node.value else {
        return Err(invalid(file, node.pos, format!("expected a list of rules, found {}", node.value.kind())));
    };
    let mut notes = Vec::new();
    let mut rules = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let (Value::Tuple(elements) | Value::List(elements)) = &item.value else {
            return Err(invalid(
                file,
                item.pos,
                format!("rule {index}: expected (class, type, name, value), found {}", item.value.kind()),
            ));
        };
        if elements.len() != 4 {
            return Err(invalid(
                file,
                item.pos,
                format!("rule {index}: expected 4 elements, found {}", elements.len()),
            ));
        }
        let mut texts = Vec::with_capacity(4);
        for element in elements {
            let text = match &element.value {
                Value::Str(s) => s.clone(),
                other => match other.scalar_text() {
                    Some(t) => {
                        notes.push(format!(
                            "{file}:{}: rule {index}: {} {t} written as the string {t:?} (hardware items are strings)",
                            element.pos,
                            other.kind()
                        ));
                        t
                    }
                    None => {
                        return Err(invalid(
                            file,
                            element.pos,
                            format!("rule {index}: elements must be strings, found {}", other.kind()),
                        ));
                    }
                },
            };
            texts.push(text);
        }
        rules.push(Quad::new(texts[0].clone(), texts[1].clone(), texts[2].clone(), texts[3].clone()));
    }
    for error in RuleSet::check(&rules) {
        notes.push(format!("{file}: {error}; the operator will report this profile as invalid until it is fixed"));
    }
    Ok((rules, notes))
}

/// A part of a CMDB file, in order.
enum Segment {
    Entries(Vec<Entry>),
    Generate(GenerateBlock, Pos),
}

/// Reads a `.cmdb` file: a list of dicts, `generate({...})`, or a sum of those.
pub fn parse_cmdb(file: &str, text: &str) -> Result<(CmdbSpec, Vec<String>), ImportError> {
    let node = parse(file, text)?;
    let mut notes = Vec::new();
    let mut segments = Vec::new();
    collect_segments(file, &node, &mut segments, &mut notes)?;
    let mut seen_generate = false;
    let mut interleaved = false;
    for segment in &segments {
        match segment {
            Segment::Generate(..) => seen_generate = true,
            Segment::Entries(_) if seen_generate => interleaved = true,
            Segment::Entries(_) => {}
        }
    }
    let mut spec = CmdbSpec { entries: Vec::new(), generate: Vec::new(), network: None };
    for segment in segments {
        match segment {
            Segment::Entries(entries) => spec.entries.extend(entries),
            Segment::Generate(block, pos) => {
                let expanded = generate::expand(&block).map_err(|e| invalid(file, pos, format!("generate(): {e}")))?;
                if interleaved {
                    spec.entries.extend(expanded);
                } else {
                    spec.generate.push(block);
                }
            }
        }
        if spec.entries.len() > MAX_ENTRIES {
            return Err(invalid(file, node.pos, format!("more than {MAX_ENTRIES} entries")));
        }
    }
    if interleaved {
        notes.push(format!(
            "{file}: written entries follow generate(): generated entries written out to keep eDeploy's order"
        ));
    }
    let total = generate::expand_cmdb(&spec).map_err(|e| invalid(file, node.pos, e.to_string()))?.len();
    let used = spec.entries.iter().filter(|e| e.contains_key(crate::cmdb::USED)).count();
    if used > 0 {
        notes.push(format!(
            "{file}: {used} of {total} entries already used by eDeploy: they keep their variables and 'used', \
             are given back to a machine whose variables they hold, and to no other"
        ));
    }
    Ok((spec, notes))
}

fn collect_segments(
    file: &str,
    node: &Node,
    out: &mut Vec<Segment>,
    notes: &mut Vec<String>,
) -> Result<(), ImportError> {
    match &node.value {
        Value::Sum(terms) => {
            for term in terms {
                collect_segments(file, term, out, notes)?;
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            let mut entries = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                entries.push(entry(file, index, item, notes)?);
            }
            out.push(Segment::Entries(entries));
        }
        Value::Call { name, args } if name == "generate" => {
            let [model] = &args[..] else {
                return Err(invalid(
                    file,
                    node.pos,
                    format!("generate() takes one dict, {} arguments given", args.len()),
                ));
            };
            out.push(Segment::Generate(generate_block(file, model, notes)?, node.pos));
        }
        Value::Call { name, .. } => {
            return Err(invalid(file, node.pos, format!("{name}() is not supported; only generate() is")));
        }
        other => {
            return Err(invalid(
                file,
                node.pos,
                format!("expected a list of entries or generate(), found {}", other.kind()),
            ));
        }
    }
    Ok(())
}

/// A dict key as a variable name; invalid characters become `_` (noted).
fn key(file: &str, node: &Node, notes: &mut Vec<String>) -> Result<String, ImportError> {
    let Value::Str(text) = &node.value else {
        return Err(invalid(file, node.pos, format!("keys must be strings, found {}", node.value.kind())));
    };
    if is_variable_name(text) {
        return Ok(text.clone());
    }
    let mut name: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    notes.push(format!("{file}:{}: variable {text:?} renamed {name:?} (letters, digits and _ only)", node.pos));
    Ok(name)
}

fn entry(file: &str, index: usize, node: &Node, notes: &mut Vec<String>) -> Result<Entry, ImportError> {
    let Value::Dict(pairs) = &node.value else {
        return Err(invalid(file, node.pos, format!("entry {index}: expected a dict, found {}", node.value.kind())));
    };
    let mut entry = Entry::new();
    for (k, v) in pairs {
        let name = key(file, k, notes)?;
        let Some(text) = v.value.scalar_text() else {
            return Err(invalid(
                file,
                v.pos,
                format!("entry {index}: {name}: {} cannot be a CMDB value (strings and numbers only)", v.value.kind()),
            ));
        };
        if entry.insert(name.clone(), text).is_some() {
            return Err(invalid(file, k.pos, format!("entry {index}: {name} given twice")));
        }
    }
    Ok(entry)
}

fn generate_block(file: &str, model: &Node, notes: &mut Vec<String>) -> Result<GenerateBlock, ImportError> {
    let Value::Dict(pairs) = &model.value else {
        return Err(invalid(file, model.pos, format!("generate() takes a dict, found {}", model.value.kind())));
    };
    let mut block = GenerateBlock::default();
    let mut generator = false;
    let mut scalar = false;
    let mut names = BTreeSet::new();
    for (k, v) in pairs {
        let name = key(file, k, notes)?;
        if !names.insert(name.clone()) {
            return Err(invalid(file, k.pos, format!("generate(): {name} given twice")));
        }
        match &v.value {
            Value::Str(s) => {
                generator |= generate::is_range(s);
                block.patterns.insert(name, s.clone());
            }
            Value::List(items) | Value::Tuple(items) => {
                if matches!(v.value, Value::Tuple(_)) {
                    notes.push(format!(
                        "{file}:{}: generate(): the tuple of {name} is taken element by element like a list, as eDeploy \
                         documents and did; hardware 0.33 would copy the whole tuple into every entry",
                        v.pos
                    ));
                }
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(item.value.scalar_text().ok_or_else(|| {
                        invalid(
                            file,
                            item.pos,
                            format!("generate(): {name}: {} cannot be a CMDB value", item.value.kind()),
                        )
                    })?);
                }
                generator = true;
                block.lists.insert(name, values);
            }
            other => match other.scalar_text() {
                Some(text) => {
                    scalar = true;
                    block.patterns.insert(name, text);
                }
                None => {
                    return Err(invalid(
                        file,
                        v.pos,
                        format!("generate(): {name}: {} cannot be a CMDB value", other.kind()),
                    ));
                }
            },
        }
    }
    if scalar && !generator {
        return Err(invalid(
            file,
            model.pos,
            format!(
                "generate() of a model with no range and no list but a non-string value repeats it {PYTHON_REPEAT} times \
                 in eDeploy; write the entry as a plain list instead"
            ),
        ));
    }
    Ok(block)
}

/// A Kubernetes object name (DNS label) for an eDeploy profile name.
pub fn object_name(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_owned();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// Converts the files of an eDeploy configuration directory (name → content).
pub fn convert(files: &BTreeMap<String, String>) -> Result<ImportResult, ImportError> {
    let state_text = files.get("state").ok_or_else(|| ImportError::NoState("the directory".into()))?;
    let state = parse_state(state_text)?;
    let mut result = ImportResult::default();
    let mut used_files: BTreeSet<String> = BTreeSet::from(["state".to_owned()]);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (index, line) in state.iter().enumerate() {
        let Some(name) = object_name(&line.name) else {
            return Err(invalid("state", line.pos, format!("{:?} cannot be made a Kubernetes name", line.name)));
        };
        if let Some(previous) = names.insert(name.clone(), line.name.clone()) {
            return Err(invalid("state", line.pos, format!("{:?} and {previous:?} both become {name:?}", line.name)));
        }
        if name != line.name {
            result.notes.push(format!("state: profile {:?} named {name:?}", line.name));
        }
        let specs_file = format!("{}.specs", line.name);
        let Some(specs_text) = files.get(&specs_file) else {
            result.notes.push(format!(
                "state lists {:?} but {specs_file} is missing: eDeploy never matches such a profile; not imported",
                line.name
            ));
            continue;
        };
        used_files.insert(specs_file.clone());
        let (rules, notes) = parse_specs(&specs_file, specs_text)?;
        result.notes.extend(notes);

        let cmdb_file = format!("{}.cmdb", line.name);
        let cmdb_ref = match files.get(&cmdb_file) {
            Some(text) => {
                used_files.insert(cmdb_file.clone());
                let (spec, notes) = parse_cmdb(&cmdb_file, text)?;
                result.notes.extend(notes);
                result.cmdbs.push(Cmdb::new(&name, spec));
                Some(LocalObjectRef { name: name.clone() })
            }
            None => None,
        };
        let configure_file = format!("{}.configure", line.name);
        if let Some(text) = files.get(&configure_file) {
            used_files.insert(configure_file.clone());
            let mut note =
                format!("{configure_file} present, not executed: describe its disk and network setup in spec.install");
            if let Some((role, version)) = set_role(text) {
                note.push_str(&format!(
                    "; it calls set_role({role:?}, {version:?}): set spec.role to a Role of that name and version"
                ));
            }
            result.notes.push(note);
        }
        let spec = HardwareProfileSpec {
            priority: (index as i32 + 1) * 10,
            max_machines: line.count,
            rules,
            cmdb_ref,
            role: None,
            install: None,
        };
        result.profiles.push(HardwareProfile::new(&name, spec));
    }
    let ignored: Vec<&str> = files.keys().map(String::as_str).filter(|f| !used_files.contains(*f)).collect();
    if !ignored.is_empty() {
        result.notes.push(format!("ignored (not used by a profile of state): {}", ignored.join(", ")));
    }
    Ok(result)
}

/// The role and version of a `set_role('mysql', 'D7-F.1.0.0', disk)` call in a configure script.
fn set_role(text: &str) -> Option<(String, String)> {
    static SET_ROLE: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"set_role\(\s*['"]([^'"]{1,128})['"]\s*,\s*['"]([^'"]{1,128})['"]"#).ok()
    });
    let caps = SET_ROLE.as_ref()?.captures(text)?;
    Some((caps.get(1)?.as_str().to_owned(), caps.get(2)?.as_str().to_owned()))
}

impl ImportResult {
    /// Puts every object in `namespace`.
    pub fn set_namespace(&mut self, namespace: &str) {
        for p in &mut self.profiles {
            p.metadata.namespace = Some(namespace.to_owned());
        }
        for c in &mut self.cmdbs {
            c.metadata.namespace = Some(namespace.to_owned());
        }
    }

    /// The objects as one multi-document YAML stream (Cmdbs, then HardwareProfiles in
    /// priority order), the notes as a leading comment.
    pub fn to_yaml(&self) -> Result<String, ImportError> {
        let mut out = String::from("# Imported from an eDeploy configuration directory by machinist.\n");
        for note in &self.notes {
            for (i, line) in note.lines().enumerate() {
                out.push_str(if i == 0 { "# note: " } else { "#   " });
                out.push_str(line);
                out.push('\n');
            }
        }
        let yaml = |value: Result<serde_json::Value, serde_json::Error>| -> Result<String, ImportError> {
            let value = value.map_err(|e| ImportError::Yaml(e.to_string()))?;
            serde_saphyr::to_string(&Styled(&value, false)).map_err(|e| ImportError::Yaml(e.to_string()))
        };
        for cmdb in &self.cmdbs {
            out.push_str("---\n");
            out.push_str(&yaml(serde_json::to_value(cmdb))?);
        }
        for profile in &self.profiles {
            out.push_str("---\n");
            out.push_str(&yaml(serde_json::to_value(profile))?);
        }
        Ok(out)
    }
}

/// A JSON value written as YAML with each rule of a `match` list on one line, as eDeploy's
/// files and machinist's examples write them: `- [disk, $disk, size, gt(4)]`.
struct Styled<'a>(&'a serde_json::Value, bool);

impl serde::Serialize for Styled<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value as J;
        match self.0 {
            J::Null => serializer.serialize_unit(),
            J::Bool(b) => serializer.serialize_bool(*b),
            J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => serializer.serialize_i64(i),
                (_, Some(u), _) => serializer.serialize_u64(u),
                (_, _, f) => serializer.serialize_f64(f.unwrap_or(f64::NAN)),
            },
            J::String(s) => serializer.serialize_str(s),
            J::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    if self.1 {
                        seq.serialize_element(&serde_saphyr::FlowSeq(Styled(item, false)))?;
                    } else {
                        seq.serialize_element(&Styled(item, false))?;
                    }
                }
                seq.end()
            }
            J::Object(map) => {
                // Kubernetes' usual order first, then the rest alphabetically.
                const FIRST: [&str; 10] = [
                    "apiVersion",
                    "kind",
                    "metadata",
                    "name",
                    "namespace",
                    "spec",
                    "priority",
                    "maxMachines",
                    "match",
                    "entries",
                ];
                let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for k in keys {
                    out.serialize_entry(k, &Styled(&map[k], k == "match"))?;
                }
                out.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn state_entries() {
        let state = parse_state("[('hp', 4), ('vm', '*'), ['old', '2'], ('gone', -3)]").unwrap();
        assert_eq!(
            state.iter().map(|s| (s.name.as_str(), s.count)).collect::<Vec<_>>(),
            [("hp", Some(4)), ("vm", None), ("old", Some(2)), ("gone", Some(0))]
        );
        let e = parse_state("[('hp', 4), ('vm', 'many')]").unwrap_err();
        assert_eq!(e.to_string(), "state:1:20: count must be an integer or '*', found \"many\"");
        let e = parse_state("[('hp', 4, 5)]").unwrap_err();
        assert!(e.to_string().starts_with("state:1:2:"), "{e}");
    }

    #[test]
    fn specs_with_numbers_and_bad_rules_are_noted() {
        let (rules, notes) =
            parse_specs("x.specs", "[('cpu', 'logical', 'number', 8), ('disk', '$d', 'size', 'gtt(3)')]").unwrap();
        assert_eq!(rules[0], Quad::new("cpu", "logical", "number", "8"));
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("x.specs:1:31") && notes[0].contains("\"8\""), "{}", notes[0]);
        assert!(notes[1].contains("gtt"), "{}", notes[1]);
        let e = parse_specs("x.specs", "[('a', 'b', 'c')]").unwrap_err();
        assert_eq!(e.to_string(), "x.specs:1:2: rule 0: expected 4 elements, found 3");
        let e = parse_specs("x.specs", "[('a', 'b', 'c', ['d'])]").unwrap_err();
        assert!(e.to_string().starts_with("x.specs:1:18:"), "{e}");
    }

    #[test]
    fn cmdb_forms() {
        let (spec, notes) =
            parse_cmdb("vm.cmdb", "generate({'ip': '192.168.122.3-7', 'hostname': 'host03-07'})").unwrap();
        assert_eq!(spec.generate.len(), 1);
        assert!(spec.entries.is_empty() && notes.is_empty());

        let text = "[{'ip': '10.0.0.1', 'vlan': 100, 'used': 1, 'gateway-ipmi': '10.0.0.254'}] + generate({'tag': ('T1', 'T2'), 'ip': '10.0.0.2-3'})";
        let (spec, notes) = parse_cmdb("hp.cmdb", text).unwrap();
        assert_eq!(spec.entries[0].get("vlan").map(String::as_str), Some("100"));
        assert_eq!(spec.entries[0].get("gateway_ipmi").map(String::as_str), Some("10.0.0.254"));
        assert_eq!(spec.generate[0].lists.get("tag"), Some(&vec!["T1".to_owned(), "T2".to_owned()]));
        assert_eq!(notes.len(), 3, "{notes:?}");

        // Written entries after generated ones: all written out, in order.
        let (spec, notes) = parse_cmdb("c.cmdb", "generate({'ip': '10.0.0.2-3'}) + [{'ip': '10.0.0.9'}]").unwrap();
        let ips: Vec<&str> = spec.entries.iter().map(|e| e["ip"].as_str()).collect();
        assert_eq!(ips, ["10.0.0.2", "10.0.0.3", "10.0.0.9"]);
        assert!(spec.generate.is_empty() && notes[0].contains("order"));
    }

    #[test]
    fn cmdb_errors_point_at_the_value() {
        let e = parse_cmdb("c.cmdb", "[{'ip': '10.0.0.1'},\n {'disks': ['a']}]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.cmdb:2:12: entry 1: disks: a list cannot be a CMDB value (strings and numbers only)"
        );
        let e = parse_cmdb("c.cmdb", "generate({'ip': '1.2-3.3.-5'})").unwrap_err();
        assert!(e.to_string().starts_with("c.cmdb:1:1: generate(): pattern ip"), "{e}");
        let e = parse_cmdb("c.cmdb", "generate({'vlan': 5})").unwrap_err();
        assert!(e.to_string().contains("16387064"), "{e}");
        let e = parse_cmdb("c.cmdb", "__import__('os').system('x')").unwrap_err();
        assert!(matches!(e, ImportError::Syntax { .. }), "{e}");
        let e = parse_cmdb("c.cmdb", "eval('1')").unwrap_err();
        assert!(e.to_string().contains("eval() is not supported"), "{e}");
        let e = parse_cmdb("c.cmdb", "generate({'n': '0-99999'})").unwrap_err();
        assert!(e.to_string().contains("65536"), "{e}");
    }

    #[test]
    fn yaml_round_trips_awkward_rules() {
        let rules = vec![
            Quad::new("disk", "$disk", "size", "range(20, 25)"),
            Quad::new("disk", "$disk=in('sda', \"sdb\")", "vendor", "a: b # c"),
            Quad::new("memory", "bank:0", "description", "DIMM [empty], {x}"),
            Quad::new("system", "product", "name", "'quoted'"),
            Quad::new("cpu", "physical", "number", "2"),
            Quad::new("network", "$eth", "serial", "$$mac"),
        ];
        let spec = HardwareProfileSpec {
            priority: 10,
            max_machines: Some(1),
            rules,
            cmdb_ref: None,
            role: None,
            install: None,
        };
        let result = ImportResult { profiles: vec![HardwareProfile::new("p", spec)], ..ImportResult::default() };
        let yaml = result.to_yaml().unwrap();
        let back: HardwareProfile = serde_saphyr::from_str(yaml.split("---\n").nth(1).unwrap()).unwrap();
        assert_eq!(back, result.profiles[0], "{yaml}");
        assert!(yaml.contains("  priority: 10\n  maxMachines: 1\n  match:\n  - [disk, $disk, size,"), "{yaml}");
    }

    #[test]
    fn names() {
        assert_eq!(object_name("vm").as_deref(), Some("vm"));
        assert_eq!(object_name("HP_Gen9.big").as_deref(), Some("hp-gen9-big"));
        assert_eq!(object_name("__").as_deref(), None);
    }

    #[test]
    fn whole_directory() {
        let result = convert(&files(&[
            ("state", "[('hp', 4), ('vm', '*'), ('ghost', 1)]"),
            ("hp.specs", "[('system', 'product', 'serial', '$$tag')]"),
            ("vm.specs", "[('disk', '$disk', 'size', 'gt(4)')]"),
            ("vm.cmdb", "generate({'ip': '192.168.122.3-7', 'hostname': 'host03-07'})"),
            ("vm.configure", "set_role('mysql', 'D7-F.1.0.0', disk1)\n"),
            ("README", "hello"),
        ]))
        .unwrap();
        let profiles: Vec<(&str, i32, Option<i32>)> = result
            .profiles
            .iter()
            .map(|p| (p.metadata.name.as_deref().unwrap_or_default(), p.spec.priority, p.spec.max_machines))
            .collect();
        assert_eq!(profiles, [("hp", 10, Some(4)), ("vm", 20, None)]);
        assert_eq!(result.profiles[1].spec.cmdb_ref, Some(LocalObjectRef { name: "vm".into() }));
        assert_eq!(result.cmdbs.len(), 1);
        let notes = result.notes.join("\n");
        assert!(notes.contains("ghost.specs is missing"), "{notes}");
        assert!(notes.contains("vm.configure present, not executed") && notes.contains("\"mysql\""), "{notes}");
        assert!(notes.contains("ignored (not used by a profile of state): README"), "{notes}");
        assert!(matches!(convert(&files(&[("vm.specs", "[]")])), Err(ImportError::NoState(_))));
    }
}
