//! The `cgroup` containment: every execution in a cgroup v2 of its own.
//!
//! # Design
//!
//! The agent finds the cgroup v2 hierarchy in `/proc/self/mountinfo` (at `/sys/fs/cgroup` on
//! pure-v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones; never assumed) and its own group in
//! `/proc/self/cgroup` (the `0::` line). That group is the **base**, which systemd hands over
//! with `Delegate=yes`. As systemd's delegation rules ask, the base itself holds no process: the
//! agent moves itself into the leaf `<base>/agent`, and each execution gets a sibling leaf
//! `<base>/exec-<execution id>`. (When the agent already runs in a group named `agent`, e.g.
//! with systemd's `DelegateSubgroup=agent`, its parent is the base.)
//!
//! The child joins its group before any script code runs: the agent opens the group's
//! `cgroup.procs` and the child writes `0` to it between fork and exec ([`crate::sys`]). From
//! then on nothing the script starts can leave the group by forking, `setsid` or double forks
//! (only a write to another group's `cgroup.procs`, which needs privileges, moves a process).
//!
//! Ending a group: `SIGTERM` to every process in `cgroup.procs` (each through a pidfd, checked to
//! still be in the group: see [`super::procfs::signal_if`]), then `cgroup.kill` (Linux 5.14;
//! older kernels: `SIGKILL` to every listed process, repeated until `cgroup.events` says
//! `populated 0`), then `rmdir`.
//!
//! At start [`Base::enter`] proves the mode works before the agent relies on it: it creates and
//! removes a probe group, and moves the agent into its leaf.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Pid, Signal};

use super::procfs;

/// The leaf the agent moves itself into.
const AGENT_LEAF: &str = "agent";
/// The longest execution id used as is in a group's name (names are at most 255 bytes).
const MAX_NAME_ID: usize = 128;

/// Numbers the groups of executions whose id cannot be a directory name.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Where the cgroup v2 hierarchy is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The mount point, e.g. `/sys/fs/cgroup`.
    point: PathBuf,
    /// Which group the mount shows at its mount point (`/` unless bind-mounted from inside).
    root: String,
}

impl Mount {
    /// The directory of the group at `path` (a path as `/proc/*/cgroup` writes it).
    fn dir(&self, path: &str) -> Option<PathBuf> {
        let inside = path.strip_prefix(self.root.trim_end_matches('/'))?;
        if !(inside.is_empty() || inside.starts_with('/')) {
            return None;
        }
        Some(self.point.join(inside.trim_start_matches('/')))
    }

    /// The path (as `/proc/*/cgroup` writes it) of the group at `dir`.
    fn path(&self, dir: &Path) -> Option<String> {
        let inside = dir.strip_prefix(&self.point).ok()?.to_str()?;
        let root = self.root.trim_end_matches('/');
        Some(if inside.is_empty() {
            if root.is_empty() {
                "/".into()
            } else {
                root.into()
            }
        } else {
            format!("{root}/{inside}")
        })
    }
}

/// The cgroup v2 mounts listed in `mountinfo` text.
fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = left.split(' ').collect();
            Some(Mount {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
            })
        })
        .collect()
}

/// `mountinfo` writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 group this process is in: its path and its directory.
fn own_group() -> Result<(Mount, String), String> {
    let cgroup = fs::read_to_string("/proc/self/cgroup")
        .map_err(|error| format!("cannot read /proc/self/cgroup: {error}"))?;
    let path = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
        .ok_or("this process is in no cgroup v2 group (no `0::` line in /proc/self/cgroup)")?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|error| format!("cannot read /proc/self/mountinfo: {error}"))?;
    let mount = mounts(&mountinfo)
        .into_iter()
        .find(|mount| mount.dir(&path).is_some())
        .ok_or_else(|| format!("no cgroup v2 mount shows this process's group {path}"))?;
    Ok((mount, path))
}

/// The group under which executions get their groups.
#[derive(Debug)]
pub struct Base {
    mount: Mount,
    dir: PathBuf,
    /// Whether `cgroup.kill` exists (Linux 5.14).
    kill_file: bool,
}

impl Base {
    /// Find the agent's own group, prove that groups can be made under it, and move the agent
    /// into its leaf (`<base>/agent`). The error says why the mode cannot be used.
    pub fn enter() -> Result<Self, String> {
        let (mount, path) = own_group()?;
        let own = mount
            .dir(&path)
            .ok_or_else(|| format!("cannot place the group {path}"))?;
        let base = match own.file_name() {
            Some(name) if name == AGENT_LEAF && own != mount.point => {
                own.parent().map_or_else(|| own.clone(), Path::to_path_buf)
            }
            _ => own,
        };
        let base = Self::at_dir(mount, base)?;
        let leaf = base.dir.join(AGENT_LEAF);
        match fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(format!("cannot create {}: {error}", leaf.display())),
        }
        let me = rustix::process::getpid().as_raw_nonzero().to_string();
        OpenOptions::new()
            .write(true)
            .open(leaf.join("cgroup.procs"))
            .and_then(|mut procs| procs.write_all(me.as_bytes()))
            .map_err(|error| format!("cannot move the agent into {}: {error}", leaf.display()))?;
        Ok(base)
    }

    /// A new base `medic-test-<pid>-<name>` under this process's own group, which is not moved
    /// (tests). The caller removes the directory.
    #[cfg(test)]
    pub fn for_tests(name: &str) -> Result<Self, String> {
        let (mount, path) = own_group()?;
        let own = mount
            .dir(&path)
            .ok_or_else(|| format!("cannot place the group {path}"))?;
        let dir = own.join(format!(
            "medic-test-{}-{name}",
            rustix::process::getpid().as_raw_nonzero()
        ));
        fs::create_dir(&dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        Self::at_dir(mount, dir.clone()).inspect_err(|_| {
            let _ = fs::remove_dir(&dir);
        })
    }

    fn at_dir(mount: Mount, dir: PathBuf) -> Result<Self, String> {
        let probe = dir.join(format!(
            "probe-{}",
            rustix::process::getpid().as_raw_nonzero()
        ));
        fs::create_dir(&probe)
            .map_err(|error| format!("cannot create a cgroup in {}: {error}", dir.display()))?;
        let procs = probe.join("cgroup.procs").exists() && probe.join("cgroup.events").exists();
        let kill_file = probe.join("cgroup.kill").exists();
        let removed = fs::remove_dir(&probe);
        if !procs {
            return Err(format!("{} is not a cgroup v2 directory", dir.display()));
        }
        removed.map_err(|error| format!("cannot remove {}: {error}", probe.display()))?;
        Ok(Self {
            mount,
            dir,
            kill_file,
        })
    }

    /// The base's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create the group of execution `id`.
    pub fn create(&self, id: &str) -> io::Result<Group> {
        let unique = || {
            format!(
                "exec-{}-{}",
                rustix::process::getpid().as_raw_nonzero(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            )
        };
        let mut dir = self.dir.join(named_after(id).unwrap_or_else(unique));
        if let Err(error) = fs::create_dir(&dir) {
            // Another agent sharing this base (tests) runs the same id; never touch its group.
            if error.kind() != ErrorKind::AlreadyExists {
                return Err(error);
            }
            dir = self.dir.join(unique());
            fs::create_dir(&dir)?;
        }
        self.group(dir)
            .ok_or_else(|| io::Error::other("the group is outside the cgroup mount"))
    }

    fn group(&self, dir: PathBuf) -> Option<Group> {
        Some(Group {
            path: self.mount.path(&dir)?,
            dir,
            kill_file: self.kill_file,
            signalled: BTreeSet::new(),
            removed: false,
        })
    }

    /// Kill and remove what is left of the group of execution `id`, which was running when the
    /// agent last stopped without ending it (a crash outside systemd, which would have killed
    /// it with the service). How many processes were killed; `None` when there is no group.
    pub fn reclaim(&self, id: &str) -> Option<usize> {
        let dir = self.dir.join(named_after(id)?);
        if !dir.is_dir() {
            return None;
        }
        let mut group = self.group(dir)?;
        let deadline = std::time::Instant::now() + super::KILL_WAIT;
        while group.populated() && std::time::Instant::now() < deadline {
            group.kill();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = group.signalled();
        drop(group);
        Some(killed)
    }
}

/// The group name of execution `id`, when the id can be one.
fn named_after(id: &str) -> Option<String> {
    let safe = !id.is_empty()
        && id.len() <= MAX_NAME_ID
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    safe.then(|| format!("exec-{id}"))
}

/// The cgroup of one execution. Dropping it removes the directory (if the group is empty).
#[derive(Debug)]
pub struct Group {
    dir: PathBuf,
    /// As `/proc/<pid>/cgroup` names it.
    path: String,
    kill_file: bool,
    /// Every process signalled so far.
    signalled: BTreeSet<i32>,
    removed: bool,
}

impl Group {
    /// The group's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `cgroup.procs`, opened for the child to join by writing `0`.
    pub fn procs_for_child(&self) -> io::Result<OwnedFd> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(OwnedFd::from(file))
    }

    /// The processes in the group now.
    fn pids(&self) -> Vec<Pid> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| Pid::from_raw(line.trim().parse().ok()?))
            .collect()
    }

    /// Whether any process is still in the group (`false` once the group is gone).
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|line| line == "populated 1"))
    }

    /// Send `signal` to every process in the group, each only if it is still in the group.
    pub fn signal(&mut self, signal: Signal) {
        for pid in self.pids() {
            let path = &self.path;
            if procfs::signal_if(pid, signal, |pid| {
                procfs::cgroup_of(pid).as_deref() == Some(path.as_str())
            }) {
                self.signalled.insert(pid.as_raw_nonzero().get());
            }
        }
    }

    /// Kill everything in the group: `cgroup.kill` (atomic, forks included), or `SIGKILL` to
    /// each process where the kernel has no `cgroup.kill`.
    pub fn kill(&mut self) {
        if self.kill_file {
            // Count what is there; the kill itself takes everything, even what forks meanwhile.
            let pids = self.pids();
            self.signalled
                .extend(pids.iter().map(|pid| pid.as_raw_nonzero().get()));
            if fs::write(self.dir.join("cgroup.kill"), b"1").is_ok() {
                return;
            }
        }
        self.signal(Signal::KILL);
    }

    /// How many distinct processes were signalled.
    pub fn signalled(&self) -> usize {
        self.signalled.len()
    }

    /// Remove the (empty) group.
    pub fn remove(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => {
                self.removed = true;
                Ok(())
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                self.removed = true;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // A group that still holds processes cannot be removed (EBUSY): it stays, visible.
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_v2_mount_is_found_in_mountinfo_whatever_its_place() {
        assert_eq!(
            mounts(HYBRID),
            [Mount {
                point: PathBuf::from("/sys/fs/cgroup/unified"),
                root: "/".into()
            }]
        );
        let pure = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(mounts(pure)[0].point, PathBuf::from("/sys/fs/cgroup"));
        let spaced = "29 23 0:26 /a\\040b /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            mounts(spaced),
            [Mount {
                point: PathBuf::from("/mnt/c g"),
                root: "/a b".into()
            }]
        );
    }

    #[test]
    fn groups_map_to_directories_and_back() {
        let mount = Mount {
            point: PathBuf::from("/sys/fs/cgroup"),
            root: "/".into(),
        };
        let dir = mount.dir("/system.slice/medic-agent.service").unwrap();
        assert_eq!(
            dir,
            PathBuf::from("/sys/fs/cgroup/system.slice/medic-agent.service")
        );
        assert_eq!(
            mount.path(&dir).unwrap(),
            "/system.slice/medic-agent.service"
        );
        assert_eq!(mount.dir("/").unwrap(), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(mount.path(Path::new("/sys/fs/cgroup")).unwrap(), "/");
        let inner = Mount {
            point: PathBuf::from("/sys/fs/cgroup"),
            root: "/container".into(),
        };
        assert_eq!(
            inner.dir("/container/x").unwrap(),
            PathBuf::from("/sys/fs/cgroup/x")
        );
        assert_eq!(inner.dir("/containerx"), None);
        assert_eq!(inner.dir("/other"), None);
        assert_eq!(
            inner.path(Path::new("/sys/fs/cgroup/x")).unwrap(),
            "/container/x"
        );
    }
}
