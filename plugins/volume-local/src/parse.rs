//! Option values: parsing of sizes, octal modes, numeric ids and filesystem types, and
//! masking of secrets in mount options before a message shows them.
//!
//! Each parser returns the reason a value is wrong; the caller names the option.

/// A size in bytes from `512k`, `10M`, `1.5G`, `10MiB`, `2gb` or a plain number of bytes.
/// Units are powers of 1024 and case does not matter, as in Docker's `RAMInBytes`.
pub(crate) fn size(value: &str) -> Result<u64, String> {
    let not_a_size = || format!("{value:?} is not a size (use bytes or a number with a unit: 512k, 10M, 1G)");
    let trimmed = value.trim();
    let number_end = trimmed.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(not_a_size()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let fraction_ok = (fraction.is_empty() && !number.contains('.')) || (digits(fraction) && fraction.len() <= 18);
    if !digits(whole) || !fraction_ok {
        return Err(not_a_size());
    }
    let too_large = || format!("{value:?} is larger than {} bytes", u64::MAX);
    let unit_bytes = 1u128 << shift;
    let whole_bytes = whole.parse::<u128>().ok().and_then(|w| w.checked_mul(unit_bytes)).ok_or_else(too_large)?;
    let fraction_bytes = match fraction {
        "" => 0,
        f => f.parse::<u128>().map_err(|_| not_a_size())? * unit_bytes / 10u128.pow(f.len() as u32),
    };
    let bytes = u64::try_from(whole_bytes + fraction_bytes).map_err(|_| too_large())?;
    if bytes == 0 {
        return Err(format!("{value:?} is zero bytes, which is no limit"));
    }
    Ok(bytes)
}

/// Permission bits from octal `0755`, `755` or `0o755`, at most `07777`.
pub(crate) fn mode(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if octal && mode <= 0o7777 => Ok(mode),
        _ => Err(format!("{value:?} is not an octal mode between 0 and 07777")),
    }
}

/// A numeric user or group id. `4294967295` is left out: to the kernel it means "no change".
pub(crate) fn id(value: &str) -> Result<u32, String> {
    let decimal = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u32>() {
        Ok(id) if decimal && id != u32::MAX => Ok(id),
        _ => Err(format!("{value:?} is not a numeric id between 0 and {}", u32::MAX - 1)),
    }
}

/// A filesystem type name such as `ext4`, `nfs4` or `none`, among those core's plan policy
/// lets a mount use.
pub(crate) fn fstype(value: &str) -> Result<(), String> {
    let name_like = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    if value.is_empty() || !value.bytes().all(name_like) {
        return Err(format!("{value:?} is not a filesystem type"));
    }
    if !wharf_sdk::MOUNT_FSTYPES.contains(&value) {
        return Err(format!("{value:?} is not one of {}", wharf_sdk::MOUNT_FSTYPES.join(", ")));
    }
    Ok(())
}

/// The elements of a comma-separated mount option string, read as core's mount code reads
/// them ([`wharf_sdk::split_mount_options`]): a doubled comma inside a value is a literal
/// comma, as cifs reads it in a password; an empty item is refused.
pub(crate) fn mount_options(options: &str) -> Result<Vec<String>, String> {
    wharf_sdk::split_mount_options(options)
}

/// The options tmpfs takes besides the mount flags (Linux's `shmem_fs_parameters`), and the
/// security labels any filesystem takes.
const TMPFS_OPTIONS: [&str; 25] = [
    "size",
    "nr_blocks",
    "nr_inodes",
    "mode",
    "uid",
    "gid",
    "huge",
    "mpol",
    "inode32",
    "inode64",
    "noswap",
    "quota",
    "usrquota",
    "grpquota",
    "usrquota_block_hardlimit",
    "usrquota_inode_hardlimit",
    "grpquota_block_hardlimit",
    "grpquota_inode_hardlimit",
    "casefold",
    "strict_encoding",
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "seclabel",
];

/// Refuse an element tmpfs would refuse at mount, which happens long after create.
pub(crate) fn tmpfs_options(elements: &[String]) -> Result<(), String> {
    let unknown = elements
        .iter()
        .filter(|e| !wharf_sdk::is_mount_flag(e))
        .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
        .find(|k| !TMPFS_OPTIONS.contains(k));
    match unknown {
        Some(key) => Err(format!("tmpfs does not take the option {key:?}")),
        None => Ok(()),
    }
}

/// The largest ext4 filesystem, 2^48 blocks of 4 KiB, which `mkfs.ext4` makes by default.
const EXT4_MAX_SIZE: u64 = 1 << 60;

/// Refuse an image `size` the filesystem holding the volumes cannot hold as one file (its
/// limit is `max_file`, when known) or that ext4 cannot fill.
pub(crate) fn image_size(size: u64, max_file: Option<u64>) -> Result<(), String> {
    let limit = max_file.unwrap_or(u64::MAX).min(EXT4_MAX_SIZE);
    if size > limit {
        return Err(format!("{size} bytes is more than the largest image this host can hold, {limit} bytes"));
    }
    Ok(())
}

/// `options` fit to show in a message: see [`wharf_sdk::mask_mount_secrets`].
pub(crate) fn mask_secrets(options: &str) -> String {
    wharf_sdk::mask_mount_secrets(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        let cases = [
            ("1048576", 1 << 20),
            ("512k", 512 << 10),
            ("512K", 512 << 10),
            ("10M", 10 << 20),
            ("10m", 10 << 20),
            ("10MiB", 10 << 20),
            ("10mb", 10 << 20),
            ("10 M", 10 << 20),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("2T", 2 << 40),
            ("100b", 100),
        ];
        for (text, bytes) in cases {
            assert_eq!(size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_why() {
        for text in ["", "ten", "10X", "-1", "1.", ".5G", "1.2.3M", "M", "10 MBs"] {
            let reason = size(text).unwrap_err();
            assert!(reason.contains("is not a size"), "{text}: {reason}");
        }
        assert!(size("0").unwrap_err().contains("no limit"));
        assert!(size("99999999999P").unwrap_err().contains("larger than"));
        assert!(size("99999999999999999999999999999999999999999").unwrap_err().contains("larger than"));
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(mode("0755"), Ok(0o755));
        assert_eq!(mode("755"), Ok(0o755));
        assert_eq!(mode("0o700"), Ok(0o700));
        assert_eq!(mode("1777"), Ok(0o1777));
        for bad in ["", "0999", "rwx", "+755", "17777", "0o"] {
            assert!(mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_numeric() {
        assert_eq!(id("0"), Ok(0));
        assert_eq!(id("1000"), Ok(1000));
        for bad in ["", "-1", "+1", "root", "4294967295", "4294967296"] {
            assert!(id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filesystem_types_are_names_core_lets_a_mount_use() {
        for good in ["ext4", "nfs4", "none", "9p"] {
            assert!(fstype(good).is_ok(), "{good}");
        }
        for bad in ["", "ext4,loop", "a b", "../x", "fuse.sshfs", "nilfs2"] {
            assert!(fstype(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_secrets("username=bob,pass=a,password=b,Password2=c,domain=corp,ro"),
            "username=bob,pass=***,password=***,Password2=***,domain=corp,ro"
        );
        assert_eq!(mask_secrets("addr=10.0.0.1,nfsvers=4"), "addr=10.0.0.1,nfsvers=4");
    }

    #[test]
    fn a_comma_in_a_password_stays_masked() {
        let shown = mask_secrets("password=se,,cret,uid=1000");
        assert_eq!(shown, "password=***,uid=1000");
        assert!(!shown.contains("cret"));
        assert_eq!(mount_options("a=x,,b,c"), Ok(vec!["a=x,b".to_string(), "c".to_string()]));
        assert!(mount_options("ro,,bind").is_err());
    }

    #[test]
    fn tmpfs_takes_its_own_options_and_the_flags() {
        let elements = |o: &str| mount_options(o).unwrap();
        assert_eq!(tmpfs_options(&elements("suid,dev,exec,size=64m,mode=1777,nr_inodes=1k")), Ok(()));
        assert!(tmpfs_options(&elements("size=64m,data=ordered")).unwrap_err().contains("\"data\""));
    }

    #[test]
    fn images_fit_the_host_and_ext4() {
        assert_eq!(image_size(1 << 40, Some(1 << 44)), Ok(()));
        assert!(image_size(1 << 45, Some(1 << 44)).is_err());
        assert!(image_size(1 << 61, None).is_err());
    }
}
