//! Getting passwords: a file, the environment, or a prompt on the terminal.

use std::path::Path;

use anyhow::Context;

use crate::exit::usage;

/// The repository password: `--password-file`/`CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD`, or a
/// prompt when a terminal is there. `None` when there is no way to ask.
pub fn existing(file: Option<&Path>, location: &str) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(file) = file {
        return read_file(file).map(Some);
    }
    if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
        return Ok(Some(p.into_bytes()));
    }
    if !stdin_is_terminal() {
        return Ok(None);
    }
    let p =
        rpassword::prompt_password(format!("password for {location}: ")).context("reading the password")?;
    Ok(Some(p.into_bytes()))
}

/// A new password: from `file`, else `CAIRN_PASSWORD` (only when `allow_env`), else prompted twice.
pub fn new(file: Option<&Path>, allow_env: bool, what: &str) -> anyhow::Result<Vec<u8>> {
    let password = if let Some(file) = file {
        read_file(file)?
    } else if let (true, Ok(p)) = (allow_env, std::env::var("CAIRN_PASSWORD")) {
        p.into_bytes()
    } else if stdin_is_terminal() {
        let first = rpassword::prompt_password(format!("new password for {what}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        if first != again {
            return Err(usage("the two passwords differ; nothing was changed"));
        }
        first.into_bytes()
    } else {
        return Err(usage(format!(
            "no password for {what}: give --password-file (or --new-password-file), set CAIRN_PASSWORD, or run on a terminal"
        )));
    };
    if password.is_empty() {
        return Err(usage("an empty password is not allowed"));
    }
    Ok(password)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read password file {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(usage(format!("password file {} is empty", path.display())));
    }
    Ok(line.as_bytes().to_vec())
}

fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}
