//! System accounts: who a build, hook or check runs as.

use serde::{Deserialize, Serialize};

/// A user with its primary and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set on every process started as this user.
    pub groups: Vec<u32>,
}

impl Account {
    /// root, for files plumb takes back.
    pub fn root() -> Account {
        Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        }
    }

    /// The account this process runs as.
    pub fn current() -> Account {
        let uid = nix::unistd::Uid::effective();
        let gid = nix::unistd::Gid::effective();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        Account {
            name,
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            groups: Vec::new(),
        }
    }

    /// Look a user up in the system's user database (NSS).
    pub fn lookup(name: &str) -> Option<Account> {
        let user = nix::unistd::User::from_name(name).ok().flatten()?;
        let cname = std::ffi::CString::new(name).ok()?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|_| vec![user.gid.as_raw()]);
        Some(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Whether this process can switch users (it runs as root).
pub fn privileged() -> bool {
    nix::unistd::Uid::effective().is_root()
}
