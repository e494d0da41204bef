//! The vocabulary every component validates its own settings with: a problem names its field
//! and its fix, and the readers for numbers, URLs, secrets and header values report into it.

use std::fmt;
use std::path::{Path, PathBuf};

use axum::http::HeaderValue;
use serde::de::DeserializeOwned;

/// Durations are capped at a day: beyond that they are mistakes, and some (cache lifetimes,
/// deadlines added to the current time) would overflow.
pub const ONE_DAY_MS: u64 = 86_400_000;

/// One problem with one field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted path, e.g. `providers.agents.base_url`.
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigIssue {
    pub fn new(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n    fix: {}", self.field, self.problem, self.fix)
    }
}

/// Reads variables such as those named by `api_key_env`; tests pass a map rather than
/// touching the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What validation reads from outside the file, and the problems found so far: every
/// problem is reported at once, not only the first.
pub struct Check<'a> {
    pub issues: Vec<ConfigIssue>,
    env: EnvLookup<'a>,
    /// Relative paths in the file (a `static` provider's `path`) are relative to this.
    base_dir: PathBuf,
}

impl<'a> Check<'a> {
    pub fn new(env: EnvLookup<'a>, base_dir: PathBuf) -> Self {
        Self {
            issues: Vec::new(),
            env,
            base_dir,
        }
    }

    pub fn push(
        &mut self,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.issues.push(ConfigIssue::new(field, problem, fix));
    }

    /// How many problems so far: compare before and after to tell whether a part was valid.
    pub fn count(&self) -> usize {
        self.issues.len()
    }

    /// A number from the file (after the built-in defaults), checked against `range`.
    pub fn ranged(
        &mut self,
        field: &str,
        value: u64,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        if range.contains(&value) {
            return value;
        }
        self.push(
            field,
            format!("is {value}, outside {}..={}", range.start(), range.end()),
            format!("remove it for the default ({default}) or give a number in that range"),
        );
        default
    }

    /// `table` (one component's part of the file) read as `T`. The problems name fields
    /// under `prefix`; an unknown field's fix also lists `also_allowed`, the fields another
    /// part of the same table takes.
    pub fn read<T: DeserializeOwned>(
        &mut self,
        prefix: &str,
        table: &figment::value::Value,
        also_allowed: &[&str],
    ) -> Option<T> {
        match table.deserialize::<T>() {
            Ok(v) => Some(v),
            Err(errors) => {
                for e in errors {
                    let mut issue = issue_from_figment(e);
                    issue.field = if issue.field == "config" {
                        prefix.to_string()
                    } else {
                        format!("{prefix}.{}", issue.field)
                    };
                    if !also_allowed.is_empty() && issue.problem.starts_with("unknown field") {
                        issue.fix = format!("{}, {}", issue.fix, also_allowed.join(", "));
                    }
                    self.issues.push(issue);
                }
                None
            }
        }
    }

    /// An http(s) base URL without credentials, query or fragment.
    pub fn base_url(&mut self, field: &str, text: &str) -> Option<url::Url> {
        // Messages show the URL without user info, query or fragment: any of them may hold
        // a credential, and a malformed URL is no less secret than a valid one.
        let shown = redacted_url(text);
        let problem = match url::Url::parse(text) {
            Err(e) => format!("`{shown}` is not a URL ({e})"),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                format!("`{shown}` holds a user name or password, which would leak into logs")
            }
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                format!("`{shown}` is not an http or https URL")
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                format!("`{shown}` has a query or fragment")
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => format!("`{shown}` has no host"),
            Ok(u) => return Some(u),
        };
        self.push(
            field,
            problem,
            "give the server's address, such as \"http://127.0.0.1:9000\" or \"https://api.bland.ai\"",
        );
        None
    }

    /// The value of the environment variable named `var` (from the field `field`).
    pub fn secret_from_env(&mut self, field: &str, var: &str) -> Option<secrecy::SecretString> {
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Likely the key itself pasted where its variable's name belongs: don't show it.
            self.push(
                field,
                "is not an environment variable name (letters, digits and _ only); the value is not shown in case it is a key",
                "give the name of the variable that holds the key, e.g. \"ACME_API_KEY\", never the key itself",
            );
            return None;
        }
        // A name in lower case or mixed with digits may be the key itself (a Twilio auth
        // token is 32 hex digits): then the messages do not repeat it.
        let shown = if looks_like_a_variable_name(var) {
            var
        } else {
            "(named here; not repeated in case it is a key)"
        };
        match (self.env)(var) {
            Some(v) if !v.trim().is_empty() => Some(secrecy::SecretString::from(v)),
            Some(_) => {
                self.push(
                    field,
                    format!("environment variable {shown} is empty"),
                    "export it with the key",
                );
                None
            }
            None => {
                self.push(
                    field,
                    format!("environment variable {shown} is not set"),
                    "export it with the key before starting callmux, or if this is the key itself, \
                     put it in a variable and give that variable's name here",
                );
                None
            }
        }
    }

    /// A secret from the environment as a header value marked sensitive, so `Debug`
    /// redacts it.
    pub fn sensitive_header_from_env(&mut self, field: &str, var: &str) -> Option<HeaderValue> {
        self.header_from_env(field, var, "")
    }

    /// `Bearer <key>`, the key from the environment, as a header value marked sensitive.
    pub fn bearer_from_env(&mut self, field: &str, var: &str) -> Option<HeaderValue> {
        self.header_from_env(field, var, "Bearer ")
    }

    fn header_from_env(&mut self, field: &str, var: &str, prefix: &str) -> Option<HeaderValue> {
        use secrecy::ExposeSecret;
        let secret = self.secret_from_env(field, var)?;
        match HeaderValue::from_str(&format!("{prefix}{}", secret.expose_secret())) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Some(v)
            }
            Err(_) => {
                self.push(
                    field,
                    format!(
                        "environment variable {var} holds characters not allowed in an HTTP header"
                    ),
                    format!("export {var} with the key exactly as issued, without newlines"),
                );
                None
            }
        }
    }

    /// A kind's required field `{at}.{name}`: its value, or an issue saying kind `kind`
    /// needs it and how to set it.
    pub fn required<T>(
        &mut self,
        at: &str,
        name: &str,
        value: Option<T>,
        kind: &str,
        fix: &str,
    ) -> Option<T> {
        if value.is_none() {
            self.push(
                format!("{at}.{name}"),
                format!("is required for kind {kind}"),
                fix,
            );
        }
        value
    }

    /// A kind's `{at}.base_url`: as given, else the platform's own `default`.
    pub fn base_url_or(
        &mut self,
        at: &str,
        given: Option<&str>,
        default: &str,
    ) -> Option<url::Url> {
        self.base_url(&format!("{at}.base_url"), given.unwrap_or(default))
    }

    /// A non-empty text that can be sent as a header value.
    pub fn header_value(&mut self, field: &str, text: &str) -> Option<HeaderValue> {
        match HeaderValue::from_str(text) {
            Ok(v) if !text.is_empty() => Some(v),
            _ => {
                self.push(
                    field,
                    "is empty or holds characters not allowed in an HTTP header",
                    "use the id exactly as your dashboard shows it",
                );
                None
            }
        }
    }

    /// `path` as written in the file, made absolute against the file's own folder.
    pub fn path(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// A figment error as an issue naming its field (relative to the part that was read).
pub fn issue_from_figment(e: figment::Error) -> ConfigIssue {
    use figment::error::Kind;
    let source = match &e.metadata {
        Some(m) if m.name.contains("environment") => {
            let profile = e.profile.clone().unwrap_or_default();
            format!(" (set by {})", m.interpolate(&profile, &e.path))
        }
        Some(m) => m
            .source
            .as_ref()
            .map(|s| format!(" (in {s})"))
            .unwrap_or_default(),
        None => String::new(),
    };
    let field = if e.path.is_empty() {
        "config".to_string()
    } else {
        e.path.join(".")
    };
    let fix = match &e.kind {
        Kind::UnknownField(_, expected) => {
            format!("remove it, or use one of: {}", expected.join(", "))
        }
        Kind::MissingField(name) => format!("add `{name}`"),
        Kind::InvalidType(_, expected) => format!("give {expected}"),
        Kind::Message(_) => "correct the TOML syntax at the place named".to_string(),
        _ => "see the configuration reference in README.md".to_string(),
    };
    let problem = match &e.kind {
        Kind::UnknownField(name, _) => format!("unknown field `{name}`"),
        kind => kind.to_string(),
    };
    ConfigIssue::new(field, format!("{problem}{source}"), fix)
}

/// `text` with everything between the scheme and the last `@` replaced, and any query or
/// fragment cut, done on the text itself so that it works on URLs that do not parse. The
/// user info goes first: a password may hold `/`, `?` or `#`, which would otherwise end
/// the authority, or the URL, early and leave part of it shown.
pub fn redacted_url(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), text),
    };
    let (user, rest) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}{user}{rest}")
}

/// Whether `name` reads as an environment variable's name (upper case, digits, `_`) rather
/// than as a key pasted in its place, which is only ever named, never shown.
fn looks_like_a_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_a_redacted_url_whatever_it_holds() {
        for (url, shown) in [
            ("https://user:s3cr?t@host/p?q=1", "https://***@host/p"),
            ("https://u:pa/ss@host", "https://***@host"),
            ("https://u:p#w@host:8443/x", "https://***@host:8443/x"),
            ("http://127.0.0.1:9000/a?token=x", "http://127.0.0.1:9000/a"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_key_pasted_where_a_variable_name_belongs_is_not_repeated() {
        let env = |_: &str| None;
        let mut check = Check::new(&env, PathBuf::from("."));
        check.secret_from_env(
            "providers.t.auth_token_env",
            "0123456789abcdef0123456789abcdef",
        );
        check.secret_from_env("providers.t.api_key_env", "TWILIO_AUTH_TOKEN");
        let text = format!("{:?}", check.issues);
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("TWILIO_AUTH_TOKEN is not set"), "{text}");
    }
}
