//! `[providers.<id>]`: the kind named, the settings every kind shares, and the kind's own.

use std::sync::Arc;

use figment::value::Value;

use super::defaults::BUILT_IN;
use crate::provider::{registry, Common, KindSettings, RawCommon};
use crate::settings::Check;

/// One provider: the settings every kind shares, and its kind's own.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub id: String,
    pub common: Common,
    pub kind: Arc<dyn KindSettings>,
}

impl PartialEq for ProviderSpec {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.common == other.common && *self.kind == *other.kind
    }
}

/// One provider's table: `kind` picks the kind, the common fields are read over the built-in
/// defaults, and the kind reads the rest.
pub(super) fn provider(id: String, table: Value, check: &mut Check<'_>) -> Option<ProviderSpec> {
    let at = format!("providers.{id}");
    let Value::Dict(tag, mut fields) = table else {
        check.push(
            &at,
            "is not a table",
            format!("write it as [providers.{id}] with kind = \"...\" and its settings"),
        );
        return None;
    };
    let kinds = registry::names().join(", ");
    let kind = match fields.remove("kind") {
        None => {
            check.push(
                &at,
                "missing field `kind`",
                format!("add kind = \"...\", one of: {kinds}"),
            );
            None
        }
        Some(Value::String(_, name)) => match registry::kind(&name) {
            Some(kind) => Some(kind),
            None => {
                check.push(
                    format!("{at}.kind"),
                    format!("unknown kind `{name}`"),
                    format!("use one of: {kinds}"),
                );
                None
            }
        },
        Some(_) => {
            check.push(
                format!("{at}.kind"),
                "is not a string",
                format!("use one of: {kinds}"),
            );
            None
        }
    };
    let mut common = match Value::serialize(&BUILT_IN.provider) {
        Ok(Value::Dict(_, d)) => d,
        _ => unreachable!("the built-in provider defaults serialise to a table"),
    };
    let mut own = figment::value::Dict::new();
    for (name, value) in fields {
        if RawCommon::FIELDS.contains(&name.as_str()) {
            common.insert(name, value);
        } else {
            own.insert(name, value);
        }
    }
    let before = check.count();
    let common: Option<RawCommon> = check.read(&at, &Value::Dict(tag, common), &[]);
    let common = common.map(|c| c.validate(&at, &BUILT_IN.provider, check));
    let settings = kind.and_then(|k| k.settings(&at, &Value::Dict(tag, own), check));
    if check.count() > before {
        return None;
    }
    Some(ProviderSpec {
        id,
        common: common?,
        kind: settings?,
    })
}
