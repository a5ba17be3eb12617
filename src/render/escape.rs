//! One escaping function per target, registered as template filters:
//! `unit` (a systemd unit setting), `unit_env` (inside `Environment="…"`),
//! `unit_arg` (one quoted `ExecStart=` argument),
//! `nginx` (a quoted nginx string) and `sh` (a POSIX shell word). Values
//! were validated at parse time too (`spec::validate`); these make each one
//! land as one literal token whatever it holds.

use minijinja::{Error, ErrorKind};

fn one_line(value: &str, target: &str) -> Result<(), Error> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "{value:?} contains the control character {c:?}; a {target} value must be one plain line"
            ),
        )),
        None => Ok(()),
    }
}

/// A value for a systemd unit setting: one line, and `%` taken literally
/// (not a specifier). systemd.syntax(7).
pub fn unit(value: String) -> Result<String, Error> {
    one_line(&value, "unit file")?;
    Ok(value.replace('%', "%%"))
}

/// A value inside `Environment="…"`: as `unit`, with `"` and `\` escaped.
pub fn unit_env(value: String) -> Result<String, Error> {
    unit(value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One argument of a unit's `ExecStart=`: double-quoted, with `"` and `\`
/// escaped, `%` not a specifier and `$` not a variable. systemd.service(5).
pub fn unit_arg(value: String) -> Result<String, Error> {
    let escaped = unit_env(value)?.replace('$', "$$");
    Ok(format!("\"{escaped}\""))
}

/// A quoted nginx string: `"…"` with `"` and `\` escaped, and no `$` (which
/// nginx would read as a variable) — `;`, `{` and `}` cannot break out of it.
pub fn nginx(value: String) -> Result<String, Error> {
    one_line(&value, "nginx")?;
    if value.contains('$') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{value:?} contains `$`, which nginx would read as a variable"),
        ));
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A POSIX shell word: `'…'` with embedded quotes escaped. Nothing in it is
/// expanded.
pub fn sh(value: String) -> Result<String, Error> {
    if value.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a shell word cannot hold a NUL byte",
        ));
    }
    Ok(format!("'{}'", value.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_gets_one_literal_token() {
        assert_eq!(unit("50% off".into()).unwrap(), "50%% off");
        assert!(unit("a\nExecStart=/bin/sh".into()).is_err());
        assert_eq!(
            unit_env("say \"hi\" \\o/".into()).unwrap(),
            r#"say \"hi\" \\o/"#
        );
        assert_eq!(nginx("/srv/a b;}".into()).unwrap(), r#""/srv/a b;}""#);
        assert_eq!(nginx(r#"/x"y"#.into()).unwrap(), r#""/x\"y""#);
        assert!(nginx("/srv/$host".into()).is_err());
        assert_eq!(sh("$(reboot)'x".into()).unwrap(), r"'$(reboot)'\''x'");
        assert_eq!(
            unit_arg("A=$HOME 100% \"x\" y".into()).unwrap(),
            r#""A=$$HOME 100%% \"x\" y""#
        );
        assert!(unit_arg("a\n--privileged".into()).is_err());
    }

    #[test]
    fn a_shell_word_survives_the_shell() {
        let nasty = "a'b\"c $(touch /tmp/pwned) `id` ;|&";
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh(nasty.into()).unwrap()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }
}
