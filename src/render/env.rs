//! The template environment: the repo's `templates/` over the built-ins,
//! strict undefined, filters for shell and unit files, and errors that
//! name the template and quote the line.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::HostFacts;
use crate::error::InvalidError;
use crate::render::templates;
use crate::spec::deploy::DeployInput;
use crate::spec::tree::Tree;

/// Where a deploy repo's own templates live.
pub(super) const TEMPLATE_DIR: &str = "templates";

/// A template environment: the repo's `templates/` first, then the built-ins.
pub(super) fn environment<'a>(
    tree: &Tree,
    input: &DeployInput,
    facts: &HostFacts,
) -> Result<Environment<'a>, InvalidError> {
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for path in tree.list(TEMPLATE_DIR) {
        let key = path.to_string_lossy();
        let text = tree.read_text(&key)?.ok_or_else(|| InvalidError::Repo {
            file: key.to_string(),
            message: "is a symlink to a directory or to a missing file".into(),
        })?;
        let name = path.strip_prefix(TEMPLATE_DIR).unwrap_or(path);
        sources.insert(name.to_string_lossy().into_owned(), text);
    }
    let sources = Arc::new(sources);
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Bounded time: a template that loops without end runs out of fuel.
    env.set_fuel(Some(super::FUEL));
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("default delimiters are valid");
    env.set_syntax(syntax);
    env.set_loader(move |name| {
        Ok(sources
            .get(name)
            .cloned()
            .or_else(|| templates::builtin(name).map(str::to_string)))
    });
    env.add_filter("sh", super::escape::sh);
    env.add_filter("unit", super::escape::unit);
    env.add_filter("unit_env", super::escape::unit_env);
    env.add_filter("unit_arg", super::escape::unit_arg);
    env.add_filter("nginx", super::escape::nginx);
    let state = facts.state_dir.display().to_string();
    env.add_global("host", input.hostname.clone());
    env.add_global("commit", facts.commit.to_string());
    env.add_global("vars", Value::from(Serde(&input.vars)));
    env.add_global(
        "plumb",
        context! { current => format!("{state}/current"), state_dir => state },
    );
    Ok(env)
}

pub(super) fn render_named(
    env: &Environment,
    name: &str,
    ctx: Value,
) -> Result<Vec<u8>, InvalidError> {
    let template = env
        .get_template(name)
        .map_err(|e| template_error(env, name, e))?;
    template
        .render(ctx)
        .map(String::into_bytes)
        .map_err(|e| template_error(env, name, e))
}

/// A template error naming the template, the line and quoting that line.
fn template_error(env: &Environment, name: &str, error: minijinja::Error) -> InvalidError {
    let template = error.name().unwrap_or(name).to_string();
    let line = error.line();
    let mut message = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if error.kind() == minijinja::ErrorKind::TemplateNotFound {
        message =
            format!("template {name:?} not found in {TEMPLATE_DIR}/ or the built-in templates");
    }
    let source_line = line.and_then(|l| {
        let source = env.get_template(&template).ok()?.source().to_string();
        source
            .lines()
            .nth(l.checked_sub(1)?)
            .map(|s| s.trim().to_string())
    });
    if let Some(text) = source_line {
        message = format!("{message}\n    | {text}");
    }
    InvalidError::Template {
        template: if templates::builtin(&template).is_some() {
            format!("{template} (built-in)")
        } else {
            format!("{TEMPLATE_DIR}/{template}")
        },
        line,
        message,
    }
}
