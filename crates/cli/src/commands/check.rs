//! `cairn check`: verify the repository.

use cairn_repo::{CheckOptions, CheckReport};

use crate::cli::{CheckArgs, Format};
use crate::exit::damaged;
use crate::output;

pub fn run(format: Format, args: &CheckArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let options = CheckOptions { read_data: args.read_data, channels: args.threads as usize };
    let report = cairn_repo::check(&repo, &options)?;
    output::print(format, &report, || render(&report, args.read_data));
    if report.is_ok() {
        Ok(())
    } else {
        Err(damaged(format!("check found {} error(s) in {}", report.errors.len(), repo.location())))
    }
}

fn render(r: &CheckReport, read_data: bool) -> String {
    let mut out = format!(
        "checked {} key(s), {} index object(s), {} pack(s), {} chunk(s), {} manifest(s), {} archived file(s){}\n",
        r.keys,
        r.index_objects,
        r.packs,
        r.chunks,
        r.manifests,
        r.files,
        if read_data { format!(", read {}", output::bytes(r.bytes_read)) } else { String::new() }
    );
    for (label, list) in [("warning", &r.warnings), ("error", &r.errors)] {
        for p in list {
            out += &format!("{label}: {}: {}\n", p.object, p.message);
            for a in &p.affects {
                out += &format!("  affects {a}\n");
            }
        }
    }
    if r.is_ok() {
        out += "no errors found\n";
    }
    out
}
