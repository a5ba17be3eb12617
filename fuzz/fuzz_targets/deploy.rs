//! A deploy repo: `deploy.yaml`, a host overlay and a template of the repo's
//! own (the input's three parts, split at `\n--8<--\n`), loaded, merged,
//! validated and rendered through every built-in template its apps use —
//! an error or a desired state, never a panic, a hang or unbounded memory.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use plumb::render::{self, HostFacts};
use plumb::spec::deploy;
use plumb::spec::paths::AllowedRoots;
use plumb::spec::settings::Limits;
use plumb::spec::tree::{Blob, Entry, Tree};

fn file(bytes: &[u8]) -> Entry {
    Entry::File {
        blob: Blob::held(bytes.to_vec()),
        executable: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split_inner(b"\n--8<--\n");
    let mut tree = Tree::default();
    tree.insert(PathBuf::from("deploy.yaml"), file(parts.next().unwrap_or_default()));
    if let Some(overlay) = parts.next() {
        tree.insert(PathBuf::from("hosts/h.yaml"), file(overlay));
    }
    if let Some(template) = parts.next() {
        tree.insert(PathBuf::from("templates/t.j2"), file(template));
    }
    // An app source directory for `source: app`.
    tree.insert(PathBuf::from("app/run"), file(b"#!/bin/sh\n"));
    let Ok(input) = deploy::load(&tree, "h") else {
        return;
    };
    let roots = AllowedRoots::new(&[PathBuf::from("/srv")], Path::new("/var/lib/plumb"));
    // Half the inputs render their sites as if no certificate were issued.
    let missing: BTreeSet<PathBuf> = if data.len() % 2 == 1 {
        input
            .apps
            .values()
            .filter_map(|app| app.site.as_ref()?.tls.as_ref())
            .flat_map(|tls| [PathBuf::from(&tls.certificate), PathBuf::from(&tls.key)])
            .collect()
    } else {
        BTreeSet::new()
    };
    let facts = HostFacts {
        commit: "0123456789abcdef0123456789abcdef01234567",
        fingerprint: "fuzz",
        state_dir: Path::new("/var/lib/plumb"),
        roots: &roots,
        app_trees: &BTreeMap::new(),
        limits: &Limits::default(),
        missing: &missing,
    };
    let _ = render::render(&tree, &input, &facts);
});

/// `split` on a multi-byte separator.
trait SplitInner {
    fn split_inner<'a>(&'a self, sep: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a>;
}

impl SplitInner for [u8] {
    fn split_inner<'a>(&'a self, sep: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
        let mut rest = Some(self);
        Box::new(std::iter::from_fn(move || {
            let data = rest?;
            match data.windows(sep.len()).position(|w| w == sep) {
                Some(i) => {
                    rest = Some(&data[i + sep.len()..]);
                    Some(&data[..i])
                }
                None => {
                    rest = None;
                    Some(data)
                }
            }
        }))
    }
}
