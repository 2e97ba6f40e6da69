//! Checks against the Procfile: names of its types, and hkrun.toml's `[types.NAME]`
//! rules (`after` without a circle, a boot timeout for web alone).

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;
use super::procfile::Procfile;
use crate::plan::TypeRules;
use crate::plan::formation::{FormationError, Quantity};

use super::*;

/// Refuses a name that is not a process type of the Procfile.
pub fn known_types<'a>(
    procfile: &Procfile,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    for name in names {
        if procfile.types().all(|e| e.name != name) {
            let known = procfile
                .types()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(FormationError::UnknownType {
                name: name.to_owned(),
                known,
            }
            .into());
        }
    }
    Ok(())
}

/// hkrun.toml's `[types.NAME]` rules that need the Procfile to check: `after` names
/// types there are and makes no circle, and only web has a boot timeout.
pub fn check_rules(
    path: &Path,
    rules: &BTreeMap<String, TypeRules>,
    plans: &[Quantity],
) -> Result<(), ConfigError> {
    let bad = |key: String, reason: String| ConfigError::BadSetting {
        path: path.to_owned(),
        key,
        reason,
    };
    let known = || {
        plans
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, rule) in rules {
        if plans.iter().all(|p| &p.name != name) {
            return Err(bad(
                format!("[types.{name}]"),
                format!(
                    "no process type `{name}` in the Procfile (it has {})",
                    known()
                ),
            ));
        }
        if rule.boot_timeout.is_some() && name != WEB {
            return Err(bad(
                format!("[types.{name}] boot-timeout"),
                "only web has a boot timeout: other types are up once started".into(),
            ));
        }
        for other in &rule.after {
            if plans.iter().all(|p| &p.name != other) {
                return Err(bad(
                    format!("[types.{name}] after"),
                    format!(
                        "no process type `{other}` in the Procfile (it has {})",
                        known()
                    ),
                ));
            }
        }
    }
    // A circle: following `after` from a type leads back to it.
    for start in rules.keys() {
        let mut seen = vec![start.as_str()];
        let mut next: Vec<&str> = rules[start].after.iter().map(String::as_str).collect();
        while let Some(name) = next.pop() {
            if name == start {
                seen.push(start);
                return Err(bad(
                    format!("[types.{start}] after"),
                    format!("a circle: {}", seen.join(" waits for ")),
                ));
            }
            if !seen.contains(&name) {
                seen.push(name);
                next.extend(
                    rules
                        .get(name)
                        .into_iter()
                        .flat_map(|r| r.after.iter().map(String::as_str)),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::formation::DynoSize;

    fn types(names: &[&str]) -> Vec<Quantity> {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| Quantity {
                name: (*name).to_owned(),
                command: format!("run-{name}"),
                index,
                count: 1,
                size: DynoSize::default(),
            })
            .collect()
    }

    fn after(pairs: &[(&str, &[&str])]) -> BTreeMap<String, TypeRules> {
        pairs
            .iter()
            .map(|(name, after)| {
                let rule = TypeRules {
                    after: after.iter().map(|a| (*a).to_owned()).collect(),
                    ..TypeRules::default()
                };
                ((*name).to_owned(), rule)
            })
            .collect()
    }

    /// `check_rules`' refusal, as the user reads it.
    fn refusal(rules: &BTreeMap<String, TypeRules>, plans: &[Quantity]) -> Option<String> {
        check_rules(Path::new("hkrun.toml"), rules, plans)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn after_chains_pass_and_a_circle_is_named_step_by_step() {
        let plans = types(&["web", "worker", "db", "clock"]);
        let chain = after(&[("web", &["db"]), ("worker", &["db", "web"]), ("clock", &[])]);
        assert_eq!(refusal(&chain, &plans), None);
        let circle = after(&[("web", &["worker"]), ("worker", &["db"]), ("db", &["web"])]);
        assert_eq!(
            refusal(&circle, &plans).as_deref(),
            Some(
                "hkrun.toml: [types.db] after: a circle: db waits for web waits for worker waits for db"
            )
        );
        let itself = after(&[("web", &["web"])]);
        assert_eq!(
            refusal(&itself, &plans).as_deref(),
            Some("hkrun.toml: [types.web] after: a circle: web waits for web")
        );
    }

    #[test]
    fn rules_name_only_the_procfiles_types_and_only_web_has_a_boot_timeout() {
        let plans = types(&["web", "worker"]);
        assert_eq!(
            refusal(&after(&[("web", &["redis"])]), &plans).as_deref(),
            Some(
                "hkrun.toml: [types.web] after: no process type `redis` in the Procfile (it has web, worker)"
            )
        );
        assert_eq!(
            refusal(&after(&[("clock", &[])]), &plans).as_deref(),
            Some(
                "hkrun.toml: [types.clock]: no process type `clock` in the Procfile (it has web, worker)"
            )
        );
        let timed = |name: &str| {
            let rule = TypeRules {
                boot_timeout: Some(Duration::from_secs(5)),
                ..TypeRules::default()
            };
            BTreeMap::from([(name.to_owned(), rule)])
        };
        assert_eq!(refusal(&timed("web"), &plans), None);
        assert_eq!(
            refusal(&timed("worker"), &plans).as_deref(),
            Some(
                "hkrun.toml: [types.worker] boot-timeout: only web has a boot timeout: other types are up once started"
            )
        );
    }
}
