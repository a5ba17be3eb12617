//! Built-in templates, compiled into the binary. A deploy repo overrides one by
//! committing a file of the same name under `templates/`.

/// (name, source) of every built-in template; the files live in `templates/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("service.j2", include_str!("../../templates/service.j2")),
    ("container.j2", include_str!("../../templates/container.j2")),
    ("site.j2", include_str!("../../templates/site.j2")),
    ("backup.sh.j2", include_str!("../../templates/backup.sh.j2")),
    (
        "restore.sh.j2",
        include_str!("../../templates/restore.sh.j2"),
    ),
    (
        "backup.service.j2",
        include_str!("../../templates/backup.service.j2"),
    ),
    (
        "backup.timer.j2",
        include_str!("../../templates/backup.timer.j2"),
    ),
];

/// The built-in template called `name`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
