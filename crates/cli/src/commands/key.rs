//! `cairn key add|list|remove`: the passwords that open the repository.

use cairn_repo::KdfParams;

use crate::cli::{Format, KeyAddArgs, KeyListArgs, KeyRemoveArgs};
use crate::exit::usage;
use crate::output;
use crate::password;

pub fn add(format: Format, args: &KeyAddArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let new = password::new(args.new_password_file.as_deref(), false, "the new key")?;
    let kdf = if args.fast_kdf {
        // Against guessing, a fast derivation is only as strong as the password's randomness.
        if new.len() < 24 {
            return Err(usage(
                "--fast-kdf needs a password of at least 24 random characters (e.g. 'openssl rand -base64 32')",
            ));
        }
        KdfParams::FAST
    } else {
        KdfParams::default()
    };
    let id = repo.add_key(&new, kdf)?;
    output::print(format, &serde_json::json!({"added": id}), || format!("added key {}", id.short()));
    Ok(())
}

pub fn list(format: Format, args: &KeyListArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let keys = repo.list_keys()?;
    output::print(format, &keys, || {
        let mut out =
            format!("{:<2}{:<10} {:<20} {:<16} {:<14} {}\n", "", "ID", "CREATED", "USER", "KDF", "HOST");
        for k in &keys {
            let mark = if k.current { "*" } else { "" };
            let created = k.created.format("%Y-%m-%d %H:%M:%S");
            let kdf = format!("{} MiB x{}", k.kdf.memory_kib / 1024, k.kdf.iterations);
            out +=
                &format!("{mark:<2}{:<10} {created:<20} {:<16} {kdf:<14} {}\n", k.id.short(), k.user, k.host);
        }
        out
    });
    Ok(())
}

pub fn remove(format: Format, args: &KeyRemoveArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let id = repo.remove_key(&args.id)?;
    output::print(format, &serde_json::json!({"removed": id}), || format!("removed key {}", id.short()));
    Ok(())
}
