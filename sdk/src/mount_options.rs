//! Mount option strings (`o=` of a volume, the options of a mount step), read one way by
//! drivers and by core's mount code, so what a driver checked is what gets mounted.
//!
//! Options are comma-separated. A doubled comma inside a `key=value` element is a literal
//! comma in the value, as cifs reads a password; anywhere else it would be an empty item,
//! and an empty item is refused, as is a leading or trailing comma. Elements named in
//! [`MOUNT_FLAGS`] are mount flags; every other element is data for the filesystem.

/// Filesystem types a mount step may use: core's plan policy refuses any other, so a
/// driver refuses it too, by option, before planning. `none` is a bind mount.
pub const MOUNT_FSTYPES: [&str; 14] =
    ["none", "tmpfs", "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "nfs", "nfs4", "cifs", "smb3", "9p"];

/// Filesystem types an image step may make (core runs `mkfs.TYPE`).
pub const IMAGE_FSTYPES: [&str; 5] = ["ext2", "ext3", "ext4", "xfs", "btrfs"];

/// Element names that are mount flags rather than filesystem data: the VFS flags `mount(8)`
/// knows (each with its opposite), `bind`/`rbind`, and wharf's `loop`.
pub const MOUNT_FLAGS: [&str; 25] = [
    "ro",
    "rw",
    "defaults",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "sync",
    "async",
    "bind",
    "rbind",
    "loop",
    "silent",
];

/// The elements of `options`; empty options have none. The reason names what is wrong and
/// where, without repeating values (they may hold a password).
pub fn split_mount_options(options: &str) -> Result<Vec<String>, String> {
    if options.is_empty() {
        return Ok(Vec::new());
    }
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if current.contains('=') && chars.next_if_eq(&',').is_some() => current.push(','),
            ',' => elements.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    elements.push(current);
    if let Some(index) = elements.iter().position(String::is_empty) {
        return Err(format!(
            "item {} of {} is empty (a doubled comma is a literal comma only inside a value, as in password=a,,b)",
            index + 1,
            elements.len()
        ));
    }
    Ok(elements)
}

/// Join elements back into an option string, doubling the commas inside values.
pub fn join_mount_options<S: AsRef<str>>(elements: &[S]) -> String {
    elements.iter().map(|e| e.as_ref().replace(',', ",,")).collect::<Vec<_>>().join(",")
}

/// `options` fit to show in a message: the value of every element whose name starts with
/// `pass` (`pass=`, `password=`, `password2=`, `passwd=`) becomes `***`. Options that do
/// not parse are not shown at all.
pub fn mask_mount_secrets(options: &str) -> String {
    let Ok(elements) = split_mount_options(options) else { return "***".to_string() };
    let shown: Vec<String> = elements
        .into_iter()
        .map(|element| match element.split_once('=') {
            Some((key, _)) if key.trim().to_ascii_lowercase().starts_with("pass") => format!("{key}=***"),
            _ => element,
        })
        .collect();
    join_mount_options(&shown)
}

/// Whether `element` is a mount flag (see [`MOUNT_FLAGS`]) rather than filesystem data.
pub fn is_mount_flag(element: &str) -> bool {
    MOUNT_FLAGS.contains(&element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubled_comma_is_literal_only_inside_a_value() {
        assert_eq!(split_mount_options("").unwrap(), Vec::<String>::new());
        assert_eq!(split_mount_options("ro,bind").unwrap(), ["ro", "bind"]);
        assert_eq!(split_mount_options("password=se,,cret,uid=1").unwrap(), ["password=se,cret", "uid=1"]);
        assert_eq!(
            join_mount_options(&split_mount_options("password=se,,cret,uid=1").unwrap()),
            "password=se,,cret,uid=1"
        );
    }

    #[test]
    fn empty_items_are_refused() {
        for bad in ["ro,,bind", ",ro", "ro,", ",", "ro,,,bind"] {
            let reason = split_mount_options(bad).unwrap_err();
            assert!(reason.contains("is empty"), "{bad}: {reason}");
        }
    }

    #[test]
    fn flags_are_told_from_data() {
        assert!(is_mount_flag("suid") && is_mount_flag("noexec") && is_mount_flag("bind"));
        assert!(!is_mount_flag("size=64m") && !is_mount_flag("uid=1000"));
    }
}
