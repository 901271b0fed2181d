//! Every HTML template of the service, in one environment: the admin panel's
//! and the demo website's, compiled into the binary.
//!
//! Names ending in `.html` are autoescaped (event data is attacker input).
//! Undefined values are an error when printed or iterated, so a mistyped
//! variable fails loudly (a 500 and a log line, and the template tour in the
//! tests) instead of rendering as empty text. They may still be tested with
//! `{% if x %}`, which is how templates treat optional values (minijinja's
//! semi-strict mode).

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};

/// Every template, by name.
pub const SOURCES: &[(&str, &str)] = &[
    ("admin/base.html", include_str!("../templates/admin/base.html")),
    ("admin/login.html", include_str!("../templates/admin/login.html")),
    ("admin/dashboard.html", include_str!("../templates/admin/dashboard.html")),
    ("admin/message.html", include_str!("../templates/admin/message.html")),
    ("admin/events.html", include_str!("../templates/admin/events.html")),
    ("admin/event.html", include_str!("../templates/admin/event.html")),
    ("admin/session.html", include_str!("../templates/admin/session.html")),
    ("admin/confirm.html", include_str!("../templates/admin/confirm.html")),
    ("admin/password.html", include_str!("../templates/admin/password.html")),
    ("admin/errors.html", include_str!("../templates/admin/errors.html")),
    ("admin/error.html", include_str!("../templates/admin/error.html")),
    ("admin/categories.html", include_str!("../templates/admin/categories.html")),
    ("admin/category.html", include_str!("../templates/admin/category.html")),
    ("admin/event_type.html", include_str!("../templates/admin/event_type.html")),
    ("admin/applications.html", include_str!("../templates/admin/applications.html")),
    ("admin/application.html", include_str!("../templates/admin/application.html")),
    ("admin/log.html", include_str!("../templates/admin/log.html")),
    ("admin/tokens.html", include_str!("../templates/admin/tokens.html")),
    ("admin/pages.html", include_str!("../templates/admin/pages.html")),
    ("admin/period.html", include_str!("../templates/admin/period.html")),
    ("admin/macros.html", include_str!("../templates/admin/macros.html")),
    ("admin/event_filters.html", include_str!("../templates/admin/event_filters.html")),
    ("admin/live.html", include_str!("../templates/admin/live.html")),
    ("admin/sessions.html", include_str!("../templates/admin/sessions.html")),
    ("website/base.html", include_str!("../templates/website/base.html")),
    ("website/home.html", include_str!("../templates/website/home.html")),
    ("website/form.html", include_str!("../templates/website/form.html")),
    ("website/thanks.html", include_str!("../templates/website/thanks.html")),
];

/// Percent-encodes everything but ASCII letters, digits and `keep`.
pub fn percent_encode(value: &str, keep: &[u8]) -> String {
    value
        .bytes()
        .map(
            |b| {
                if b.is_ascii_alphanumeric() || keep.contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            },
        )
        .collect()
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // `urlencode` keeps `/` (right for query values); a path segment such as a
    // session id needs it encoded too, or `/admin/sessions/a/b/` is another route.
    env.add_filter("segment", |value: String| percent_encode(&value, b"-_.~"));
    env.add_filter("when", when);
    for (name, source) in SOURCES {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "template does not compile");
        }
    }
    env
});

/// A stored time as the admin pages show it: `<time>` with the full UTC
/// value on hover and a short form (the page's script turns it into the
/// reader's local time, or "3 min ago" for a recent one). Anything that is
/// not an RFC 3339 time is shown as it is, escaped.
fn when(value: String) -> minijinja::Value {
    use chrono::{DateTime, SecondsFormat, Utc};
    match DateTime::parse_from_rfc3339(&value) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            minijinja::Value::from_safe_string(format!(
                "<time datetime=\"{}\" title=\"{} UTC\">{}</time>",
                t.to_rfc3339_opts(SecondsFormat::Millis, true),
                t.format("%Y-%m-%d %H:%M:%S%.6f"),
                t.format("%d %b %H:%M:%S"),
            ))
        }
        Err(_) => minijinja::Value::from(value),
    }
}

/// Renders template `name` with `ctx`.
pub fn render(name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
    ENV.get_template(name)?.render(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, _) in SOURCES {
            assert!(ENV.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn a_mistyped_variable_is_an_error_not_empty_text() {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.add_template("t.html", "{{ usernme }}").unwrap();
        assert!(env.get_template("t.html").unwrap().render(minijinja::context! { username => "ada" }).is_err());
    }

    #[test]
    fn segments_encode_slashes() {
        assert_eq!(percent_encode("a/b c", b"-_.~"), "a%2Fb%20c");
    }
}
