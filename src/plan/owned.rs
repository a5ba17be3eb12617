//! The set of host paths plumb owns, as `state.json` holds it: checked when
//! the file is read, but built only when something looks at it. An
//! up-to-date run that the check index answers never does, and building
//! 10 000 paths (one allocation and a component-wise comparison each) took
//! a quarter of such a run.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Owned paths: a `BTreeSet<PathBuf>` to every reader.
#[derive(Default)]
pub struct Owned {
    /// The JSON array read, until the set is built from it.
    raw: Option<Box<RawValue>>,
    set: OnceLock<BTreeSet<PathBuf>>,
}

impl Deref for Owned {
    type Target = BTreeSet<PathBuf>;

    fn deref(&self) -> &BTreeSet<PathBuf> {
        self.set.get_or_init(|| match &self.raw {
            Some(raw) => serde_json::from_str::<Vec<PathBuf>>(raw.get())
                .map(BTreeSet::from_iter)
                .expect("checked to be an array of strings when read"),
            None => BTreeSet::new(),
        })
    }
}

impl DerefMut for Owned {
    fn deref_mut(&mut self) -> &mut BTreeSet<PathBuf> {
        let _ = &**self;
        self.raw = None;
        self.set.get_mut().expect("built above")
    }
}

impl From<BTreeSet<PathBuf>> for Owned {
    fn from(set: BTreeSet<PathBuf>) -> Owned {
        Owned {
            raw: None,
            set: OnceLock::from(set),
        }
    }
}

impl<'a> IntoIterator for &'a Owned {
    type Item = &'a PathBuf;
    type IntoIter = std::collections::btree_set::Iter<'a, PathBuf>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for Owned {
    type Item = PathBuf;
    type IntoIter = std::collections::btree_set::IntoIter<PathBuf>;

    fn into_iter(mut self) -> Self::IntoIter {
        std::mem::take(&mut *self).into_iter()
    }
}

impl Clone for Owned {
    fn clone(&self) -> Owned {
        Owned {
            raw: self.raw.clone(),
            set: self.set.clone(),
        }
    }
}

impl PartialEq for Owned {
    fn eq(&self, other: &Owned) -> bool {
        match (&self.raw, &other.raw) {
            (Some(a), Some(b)) if self.set.get().is_none() && a.get() == b.get() => true,
            _ => **self == **other,
        }
    }
}

impl fmt::Debug for Owned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Owned {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.set.get(), &self.raw) {
            (None, Some(raw)) => raw.serialize(serializer),
            _ => (**self).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Owned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Owned, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        serde_json::from_str::<Strings>(raw.get()).map_err(de::Error::custom)?;
        Ok(Owned {
            raw: Some(raw),
            set: OnceLock::new(),
        })
    }
}

/// An array of strings, checked without keeping them.
struct Strings;

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strings, D::Error> {
        deserializer.deserialize_seq(StringsVisitor)
    }
}

struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = Strings;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of paths")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
        while seq.next_element::<AString>()?.is_some() {}
        Ok(Strings)
    }
}

/// One string, not kept.
struct AString;

impl<'de> Deserialize<'de> for AString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AString, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AString, E> {
                Ok(AString)
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        owned: Owned,
    }

    #[test]
    fn is_read_checked_and_written_back_as_the_set_it_holds() {
        let json = r#"{"owned":["/etc/b","/etc/a","/etc/a/x","/etc/a-b"]}"#;
        let read: Holder = serde_json::from_str(json).unwrap();
        // Unread, it is written back exactly as it came.
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
        let want: BTreeSet<PathBuf> = ["/etc/a", "/etc/a-b", "/etc/a/x", "/etc/b"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(*read.owned, want);
        assert_eq!(read.owned, Owned::from(want.clone()));
        // Changed, it is written as a set.
        let mut changed = read;
        changed.owned.remove(&PathBuf::from("/etc/b"));
        assert_eq!(
            serde_json::to_string(&changed).unwrap(),
            r#"{"owned":["/etc/a","/etc/a/x","/etc/a-b"]}"#
        );
        for bad in [
            r#"{"owned":[1]}"#,
            r#"{"owned":"/etc/a"}"#,
            r#"{"owned":[null]}"#,
        ] {
            assert!(serde_json::from_str::<Holder>(bad).is_err(), "{bad}");
        }
    }
}
