//! A small file system mounted for the length of a test, for the full-disk tests: a tmpfs, or
//! where that is refused, an ext4 image on a loop device. Both need root; a test that cannot
//! mount one calls `prerequisite_missing` with the reason [`SmallDisk::mount`] gives (CI fails,
//! a developer's run prints the skip). The mount is undone when the guard drops, so a failing
//! test leaves no mount behind.

use std::path::{Path, PathBuf};
use std::process::Command;

const CANNOT_MOUNT: &str =
    "cannot mount a small file system (root and a tmpfs or a loop device are needed)";

/// A small file system mounted at a directory for the length of a test, unmounted on drop: a
/// tmpfs, or where that is refused, an ext4 image on a loop device. Both need root.
pub struct SmallDisk {
    mount_point: PathBuf,
}

impl SmallDisk {
    /// Makes the directory `scratch/name` and mounts about `mib` MiB there (`ext4_only`: an
    /// ext4 image, for what a tmpfs lacks); `None`, after `prerequisite_missing` (which fails
    /// the test under CI), when that is impossible.
    pub fn mount_or_skip(
        scratch: &Path,
        name: &str,
        mib: u64,
        ext4_only: bool,
    ) -> Option<(SmallDisk, PathBuf)> {
        let mount_point = scratch.join(name);
        std::fs::create_dir(&mount_point).expect("make the mount point");
        let mounted = if ext4_only {
            SmallDisk::mount_ext4(&mount_point, scratch, mib)
        } else {
            SmallDisk::mount(&mount_point, scratch, mib)
        };
        match mounted {
            Ok(disk) => Some((disk, mount_point)),
            Err(why) => {
                super::prerequisite_missing(&why);
                None
            }
        }
    }

    /// Mounts about `mib` MiB of free space at `mount_point`; a fallback image goes in
    /// `image_dir`. The error says what each way answered.
    pub fn mount(mount_point: &Path, image_dir: &Path, mib: u64) -> Result<SmallDisk, String> {
        let tmpfs = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(mount_point));
        let Err(tmpfs) = tmpfs else {
            eprintln!("small disk: a tmpfs at {}", mount_point.display());
            return Ok(SmallDisk {
                mount_point: mount_point.to_path_buf(),
            });
        };
        SmallDisk::mount_ext4(mount_point, image_dir, mib)
            .map_err(|loop_mount| format!("{CANNOT_MOUNT}: tmpfs: {tmpfs}; {loop_mount}"))
    }

    /// Mounts an ext4 image of about `mib` MiB free at `mount_point` (on a loop device; the
    /// image goes in `image_dir`): for tests that need what a tmpfs lacks, such as `chattr`.
    pub fn mount_ext4(mount_point: &Path, image_dir: &Path, mib: u64) -> Result<SmallDisk, String> {
        let image = image_dir.join("small-disk.img");
        // ext4 without reserved blocks keeps some 90% of the image free: 2 MiB more than
        // asked gives about what a tmpfs of `mib` MiB has.
        let loop_mount = std::fs::File::create(&image)
            .and_then(|f| f.set_len((mib + 2) << 20))
            .map_err(|e| format!("create {}: {e}", image.display()))
            .and_then(|()| {
                run(Command::new(tool("mkfs.ext4"))
                    .args(["-q", "-F", "-m", "0"])
                    .arg(&image))
            })
            .and_then(|()| {
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(mount_point))
            });
        match loop_mount {
            Ok(()) => {
                eprintln!(
                    "small disk: an ext4 image on a loop device at {}",
                    mount_point.display()
                );
                Ok(SmallDisk {
                    mount_point: mount_point.to_path_buf(),
                })
            }
            Err(loop_mount) => Err(format!("ext4 image on a loop device: {loop_mount}")),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // A plain unmount also frees the loop device; lazily if something still holds it.
        if run(Command::new("umount").arg(&self.mount_point)).is_err() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}

/// Runs `cmd` to completion; its stderr when it fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{:?}: {} {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{:?}: {e}", cmd.get_program())),
    }
}

/// `name` in the system directories (a user's PATH may leave them out), else from the PATH.
fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}
