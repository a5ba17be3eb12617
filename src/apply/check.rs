//! The up-to-date check's index (`/run/plumb/check.idx`, tmpfs): what the
//! last full check found intact, so that later up-to-date runs look at a
//! bounded amount of the host whatever the release's size.
//!
//! - **Links**: a symlink cannot change in place; replacing or removing one
//!   changes its directory's ctime. The index holds the stamp (inode,
//!   ctime, mtime, size) of every directory holding plumb's links, taken
//!   before the links were read and kept only if it last changed before
//!   the check began (a later change then always moves it, even within one
//!   tick of the filesystem's clock). Equal stamps: every link as checked.
//! - **Release files** can change in place, which no directory shows. Each
//!   run `lstat`s the next [`SLICE`] of them against the stat recorded when
//!   they were written, rotating (`check.next` holds where it stands): a
//!   file edited by hand is seen within `files / SLICE` runs, and at once
//!   by `plumb status` and `status --verify`.
//! - The index is rebuilt by a full check when anything in it differs, when
//!   `state.json` changed, on another release, and once an hour. Deleting
//!   it is always safe: the next run checks everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::{Host, Kind, Stat};
use crate::plan::release::{FileEntry, FileStat, ReleaseInfo, SecretEntry};
use crate::plan::state::State;
use crate::render::desired::TlsPending;
use crate::spec::layout::Layout;

/// The index: one JSON header line, then one JSON line per release file.
pub const INDEX: &str = "/run/plumb/check.idx";
/// Where the rotating file check stands (a line number of the index).
pub const NEXT: &str = "/run/plumb/check.next";
/// Release files `lstat`ed by one up-to-date run once the index exists.
pub const SLICE: usize = 512;
/// The layout of the index this plumb writes.
const FORMAT: u32 = 1;
/// A full check at least this often (nanoseconds).
const MAX_AGE_NS: i64 = 3600 * 1_000_000_000;

/// What identifies one version of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    ino: u64,
    ctime_ns: i64,
    mtime_ns: i64,
    size: u64,
}

impl Stamp {
    fn of(stat: &Stat) -> Stamp {
        Stamp {
            ino: stat.ino,
            ctime_ns: stat.ctime_ns,
            mtime_ns: stat.mtime_ns,
            size: stat.size,
        }
    }

    /// Changed before `began` by a margin no later change can share: one
    /// tick of the kernel's coarse clock, or two seconds on a filesystem
    /// that keeps whole seconds.
    fn settled(&self, began: i64) -> bool {
        let margin = if self.ctime_ns % 1_000_000_000 == 0 {
            2_000_000_000
        } else {
            0
        };
        self.ctime_ns.saturating_add(margin) < began
    }
}

/// What a run needs of the live release besides its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub release: String,
    pub units: Vec<String>,
    pub secrets: BTreeMap<String, SecretEntry>,
    pub tls_pending: Vec<TlsPending>,
}

impl Summary {
    pub fn of(info: &ReleaseInfo) -> Summary {
        Summary {
            release: info.id.clone(),
            units: info.units.clone(),
            secrets: info.secrets.clone(),
            tls_pending: info.tls_pending.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    state_dir: PathBuf,
    /// `state.json` when the index was written: any change to it (a deploy,
    /// a repair, a new owned path) makes the index stale.
    state: Stamp,
    written_ns: i64,
    link_dirs: BTreeMap<PathBuf, Stamp>,
    files: usize,
    summary: Summary,
}

/// One release file: key, mode, size, mtime, inode.
type Line = (String, String, u64, i64, u64);

/// The coarse realtime clock, in nanoseconds: the clock the kernel stamps
/// files with, so a time read from it is never ahead of a later change.
pub fn coarse_now() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

/// The stamps of the directories of `state`'s owned links, taken before a
/// full check reads the links; `None` if one is missing, not a directory,
/// or changed too recently to be trusted (the next run tries again).
pub fn stamp_link_dirs(
    host: &dyn Host,
    state: &State,
    began: i64,
) -> Option<BTreeMap<PathBuf, Stamp>> {
    let dirs: BTreeSet<&Path> = state.owned.iter().filter_map(|p| p.parent()).collect();
    let mut stamps = BTreeMap::new();
    for dir in dirs {
        let stat = host.files().stat(dir).ok()?;
        let stamp = Stamp::of(&stat);
        if stat.kind != Kind::Dir || !stamp.settled(began) {
            return None;
        }
        stamps.insert(dir.to_path_buf(), stamp);
    }
    Some(stamps)
}

/// What a deploy saw of the host before it changed anything: the stamps of
/// its owned links' directories, taken (settled) before it read the links.
/// When the deploy succeeds, the new release and every link directory it
/// left untouched are as intact as a full check would find them: the
/// links were read (and anything else would have been relinked, which
/// moves the stamp) or vouched for by the index the deploy found, and the
/// release's files were written, their stats recorded, by this run. So the index is written without a second check,
/// and the next run, deploy or not, reads neither those links nor the
/// whole release.
///
/// Links the deploy did not read, because the index it found vouched for
/// their directory, rest on that index's check: the new index keeps its
/// age, so a full check still comes within the hour of the last one.
pub struct Seen {
    link_dirs: BTreeMap<PathBuf, Stamp>,
    checked_ns: i64,
}

impl Seen {
    /// Stamp the directories of `state`'s owned links; `None` when one is
    /// unsettled (then the next full check writes the index). Must come
    /// before the deploy reads any link.
    pub fn before(host: &dyn Host, layout: &Layout, state: &State) -> Option<Seen> {
        let began = coarse_now();
        let link_dirs = stamp_link_dirs(host, state, began)?;
        let vouched = state
            .deployed
            .as_ref()
            .and_then(|d| load(host, layout, &d.release))
            .map(|(header, _)| header.written_ns);
        Some(Seen {
            link_dirs,
            checked_ns: vouched.map_or(began, |at| at.min(began)),
        })
    }

    /// After a successful deploy to the new release `info` (`state` saved):
    /// write the index if every directory of an owned link is one stamped
    /// before and unchanged since.
    pub fn record(self, host: &dyn Host, layout: &Layout, state: &State, info: &ReleaseInfo) {
        if state.deployed.as_ref().map(|d| d.release.as_str()) != Some(info.id.as_str()) {
            return;
        }
        let dirs: BTreeSet<&Path> = state.owned.iter().filter_map(|p| p.parent()).collect();
        let mut link_dirs = BTreeMap::new();
        for dir in dirs {
            let Some(stamp) = self.link_dirs.get(dir) else {
                return;
            };
            if host.files().stat(dir).ok().map(|s| Stamp::of(&s)) != Some(*stamp) {
                return;
            }
            link_dirs.insert(dir.to_path_buf(), *stamp);
        }
        let checked = Checked {
            link_dirs,
            at_ns: self.checked_ns,
            restart_rotation: false,
        };
        if let Err(e) = write(host, layout, info, &BTreeSet::new(), checked) {
            tracing::warn!("cannot write the check index {INDEX}: {e}");
        }
    }
}

/// What a check found intact, to record in the index.
pub struct Checked {
    /// The stamps of the owned links' directories.
    pub link_dirs: BTreeMap<PathBuf, Stamp>,
    /// When the oldest of what it vouches for was checked: the index is
    /// dropped an hour after.
    pub at_ns: i64,
    /// Start the rotating file check over (a full check looked at every
    /// file); a deploy keeps the rotation where it stands.
    pub restart_rotation: bool,
}

/// Record a check that found `info` intact; the files in `restat` were
/// found so by their bytes, and are recorded with the stat they have.
pub fn write(
    host: &dyn Host,
    layout: &Layout,
    info: &ReleaseInfo,
    restat: &BTreeSet<String>,
    checked: Checked,
) -> std::io::Result<()> {
    let files = host.files();
    let state = Stamp::of(&files.stat(&layout.state_file())?);
    let entries: Vec<(&String, &FileEntry)> = info.manifest.iter().chain(&info.outputs).collect();
    let header = Header {
        format: FORMAT,
        state_dir: layout.state_dir.clone(),
        state,
        written_ns: checked.at_ns,
        link_dirs: checked.link_dirs,
        files: entries.len(),
        summary: Summary::of(info),
    };
    let mut out = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    for (key, entry) in entries {
        let Some(mut s) = entry.stat else {
            return Ok(()); // written by an older plumb: always checked in full
        };
        if restat.contains(key) {
            let now = files.stat(&layout.release_file(&info.id, key))?;
            (s.size, s.mtime_ns, s.ino) = (now.size, now.mtime_ns, now.ino);
        }
        out.push(b'\n');
        let line: Line = (key.clone(), entry.mode.clone(), s.size, s.mtime_ns, s.ino);
        serde_json::to_writer(&mut out, &line).map_err(std::io::Error::other)?;
    }
    out.push(b'\n');
    let path = Path::new(INDEX);
    if let Some(dir) = path.parent() {
        files.create_dir_all(dir)?;
    }
    files.replace(path, &out, 0o600)?;
    if checked.restart_rotation {
        files.replace(Path::new(NEXT), b"0", 0o600)?;
    }
    Ok(())
}

/// The index, if it describes `release` under the `state.json` on disk
/// and is younger than an hour: its header and the bytes after it.
fn load(host: &dyn Host, layout: &Layout, release: &str) -> Option<(Header, Vec<u8>)> {
    let files = host.files();
    let mut bytes = files.read(Path::new(INDEX)).ok()?;
    let end = memchr::memchr(b'\n', &bytes)?;
    let header: Header = serde_json::from_slice(&bytes[..end]).ok()?;
    let state = Stamp::of(&files.stat(&layout.state_file()).ok()?);
    if header.format != FORMAT
        || header.state_dir != layout.state_dir
        || header.summary.release != release
        || header.state != state
        || !(0..=MAX_AGE_NS).contains(&coarse_now().saturating_sub(header.written_ns))
    {
        return None;
    }
    bytes.drain(..=end);
    Some((header, bytes))
}

/// The directories of owned links unchanged since a full check found every
/// link in them pointing where it must (`release` live, `state.json` as
/// then): a deploy need not read those links again.
pub fn intact_link_dirs(host: &dyn Host, layout: &Layout, release: &str) -> BTreeSet<PathBuf> {
    let Some((header, _)) = load(host, layout, release) else {
        return BTreeSet::new();
    };
    header
        .link_dirs
        .into_iter()
        .filter(|(dir, stamp)| host.files().stat(dir).ok().map(|s| Stamp::of(&s)) == Some(*stamp))
        .map(|(dir, _)| dir)
        .collect()
}

/// The quick check from the index: the release summary when the links'
/// directories and the next slice of files are as recorded; `None` when
/// there is no usable index or anything differs (a full check follows).
pub fn accept(host: &dyn Host, layout: &Layout, release: &str) -> Option<Summary> {
    let files = host.files();
    let (header, body) = load(host, layout, release)?;
    for (dir, stamp) in &header.link_dirs {
        if files.stat(dir).ok().map(|s| Stamp::of(&s)) != Some(*stamp) {
            return None;
        }
    }
    let mut lines = Vec::with_capacity(header.files.min(body.len() / 2));
    let mut from = 0;
    for end in memchr::memchr_iter(b'\n', &body) {
        lines.push(&body[from..end]);
        from = end + 1;
    }
    if lines.len() != header.files || from != body.len() {
        return None;
    }
    // A release of at most SLICE files is looked at whole, from the start:
    // no place to keep.
    let rotates = lines.len() > SLICE;
    let start = rotates
        .then(|| files.read(Path::new(NEXT)).ok())
        .flatten()
        .and_then(|b| String::from_utf8(b).ok()?.trim().parse::<usize>().ok())
        .unwrap_or(0)
        % lines.len().max(1);
    let count = SLICE.min(lines.len());
    let slice = (0..count)
        .map(|i| serde_json::from_slice::<Line>(lines[(start + i) % lines.len()]).ok())
        .collect::<Option<Vec<Line>>>()?;
    let names: Vec<&str> = slice.iter().map(|line| line.0.as_str()).collect();
    let stats = files.stat_under(&layout.release(release), &names);
    if !slice
        .iter()
        .zip(stats)
        .all(|(line, stat)| unchanged(line, stat))
    {
        return None;
    }
    if rotates {
        let next = (start + count) % lines.len();
        let _ = files.replace(Path::new(NEXT), next.to_string().as_bytes(), 0o600);
    }
    Some(header.summary)
}

/// The file of `line` has the kind, mode and stat recorded for it.
fn unchanged(line: &Line, stat: std::io::Result<Stat>) -> bool {
    let (_, mode, size, mtime_ns, ino) = line;
    let recorded = FileStat {
        size: *size,
        mtime_ns: *mtime_ns,
        ino: *ino,
    };
    stat.is_ok_and(|stat| super::observe::as_recorded(mode, Some(recorded), &stat) == Some(true))
}
