//! Man pages and shell completions of both binaries, made from their clap
//! definitions so that they cannot drift from `--help`
//! (`unimirror generate <DIR>`, hidden; `packaging/build-deb` runs it).
//!
//! One man page per command and subcommand (`unimirror-update-sync.1`…);
//! each `after_help` paragraph headed `Examples:` or `Exit codes:` becomes
//! its own section.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Writes `<dir>/man/*.1` and `<dir>/completions/{bash,zsh,fish}/…`.
pub fn generate(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    for cmd in [super::daemon::command(), super::update::command()] {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        pages(&cmd, &man)?;
        let name = cmd.get_name().to_string();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let out = dir.join("completions").join(shell.to_string());
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            clap_complete::generate_to(shell, &mut cmd, &name, &out)
                .with_context(|| format!("writing {shell} completions of {name}"))?;
        }
    }
    Ok(())
}

/// The page of `cmd`, then those of its visible subcommands.
fn pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(after) = cmd.get_after_help() {
        page.extend_from_slice(sections(&after.to_string()).as_bytes());
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    let path = dir.join(man.get_filename());
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `after_help` as roff: each paragraph whose first line is `Title:` is a
/// section `TITLE` (`Example:` is `EXAMPLES`), its lines kept as written.
fn sections(text: &str) -> String {
    let mut out = String::new();
    for paragraph in text.split("\n\n") {
        let (first, rest) = paragraph.split_once('\n').unwrap_or((paragraph, ""));
        let (title, body) = match first.strip_suffix(':') {
            Some("Example") => ("EXAMPLES".to_string(), rest),
            Some(t) => (t.to_uppercase(), rest),
            None => match first.split_once(": ") {
                // `Exit codes: 0 done, …` on one line.
                Some((t, _)) => (t.to_uppercase(), paragraph),
                None => ("NOTES".to_string(), paragraph),
            },
        };
        out += &format!(".SH \"{title}\"\n.nf\n");
        for line in body.lines() {
            out += &roff_line(line.trim_start());
            out.push('\n');
        }
        out += ".fi\n";
    }
    out
}

/// One line of text as roff: backslashes and hyphens escaped, and a line
/// that would read as a request protected.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with('.') || escaped.starts_with('\'') {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_help_paragraphs_become_sections() {
        let roff = sections(
            "Examples:\n  unimirror-update sync pypi\n  .hidden --x\n\nExit codes: 0 done, 75 busy.",
        );
        assert_eq!(
            roff,
            ".SH \"EXAMPLES\"\n.nf\nunimirror\\-update sync pypi\n\\&.hidden \\-\\-x\n.fi\n\
             .SH \"EXIT CODES\"\n.nf\nExit codes: 0 done, 75 busy.\n.fi\n"
        );
        assert!(sections("Example:\n  a").starts_with(".SH \"EXAMPLES\""));
    }

    #[test]
    fn every_command_has_an_example_and_every_argument_a_description() {
        fn walk(cmd: &clap::Command, path: &str) {
            let here = format!("{path} {}", cmd.get_name());
            let after = cmd
                .get_after_help()
                .map(|a| a.to_string())
                .unwrap_or_default();
            assert!(after.contains("Example"), "`{here} --help` has no example");
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "`{here} --help` leaves {id} undescribed"
                );
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                if sub.has_subcommands() {
                    // A group (`cache`): its commands carry the examples.
                    sub.get_subcommands().for_each(|s| walk(s, &here));
                } else {
                    walk(sub, &here);
                }
            }
        }
        for cmd in [
            super::super::daemon::command(),
            super::super::update::command(),
        ] {
            // `help <command>` is clap's: its page is the command's.
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            walk(&cmd, "");
        }
    }
}
