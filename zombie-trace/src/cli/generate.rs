//! `zombie-trace generate`: man pages and shell completions, rendered from
//! the same clap definitions that parse the command line and print
//! `--help`, so the three cannot drift apart. It is for packagers (`cargo
//! xtask dist` runs it), not for users: it is parsed beside the documented
//! commands ([`beside`]) rather than declared among them, because clap's
//! completion scripts offer even hidden subcommands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, Args, CommandFactory as _, FromArgMatches as _, Subcommand};
use clap_complete::Shell;

/// The program name every generated file speaks of.
const BIN_NAME: &str = "zombie-trace";

/// The subcommand's name.
const NAME: &str = "generate";

/// `documented` with the hidden `generate` subcommand added: what the binary
/// parses its arguments with.
pub fn beside(documented: clap::Command) -> clap::Command {
    documented.subcommand(GenerateArgs::augment_args(
        clap::Command::new(NAME)
            .about("Man pages and shell completions from the command-line definitions")
            .hide(true),
    ))
}

/// `generate`'s arguments, if that is the subcommand given.
pub fn requested(matches: &ArgMatches) -> Option<anyhow::Result<GenerateArgs>> {
    let (NAME, sub) = matches.subcommand()? else {
        return None;
    };
    Some(GenerateArgs::from_arg_matches(sub).map_err(anyhow::Error::from))
}

/// The shells completions are generated for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// One man page per command (`zombie-trace.1`, `zombie-trace-watch.1`,
    /// ...) into DIR.
    Man {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
    /// Completion scripts for bash (`zombie-trace.bash`), zsh
    /// (`_zombie-trace`) and fish (`zombie-trace.fish`) into DIR.
    Completions {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let written = match args.what {
        What::Man { dir } => man_pages(&dir)?,
        What::Completions { dir } => completions(&dir)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}: give a directory you may write to",
            dir.display()
        )
    })
}

/// Writes the man pages of the command and of each visible subcommand;
/// returns their paths, sorted.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    // As clap_mangen::generate_to does (building names the subcommands'
    // pages `zombie-trace-watch` and so on), but every page's footer says
    // which version it documents, not only the top one's.
    let mut command = super::Cli::command().disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    write_pages(&command, dir, &mut written)?;
    written.sort();
    Ok(written)
}

fn write_pages(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    let page = clap_mangen::Man::new(command.clone())
        .source(format!("{BIN_NAME} {}", zombie_trace::build_info::VERSION))
        .manual("zombie-trace manual");
    let path = page
        .generate_to(dir)
        .with_context(|| format!("writing a man page into {}", dir.display()))?;
    written.push(path);
    Ok(())
}

/// Writes a completion script for each of [`SHELLS`]; returns their paths.
pub fn completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use clap_complete::Generator as _;
    create_dir(dir)?;
    let mut command = super::Cli::command();
    SHELLS
        .into_iter()
        .map(|shell| {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, BIN_NAME, &mut script);
            let script = match shell {
                Shell::Bash => bash_dispatch_fixed(&String::from_utf8_lossy(&script)).into_bytes(),
                _ => script,
            };
            let path = dir.join(shell.file_name(BIN_NAME));
            std::fs::write(&path, script)
                .with_context(|| format!("writing the {shell} completion {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// clap_complete's bash script (4.6.12 and before) completes nothing after a
/// subcommand when the program's name has a hyphen: its loop over the words
/// sets the state `zombie__trace__subcmd__watch`, but it names the case arm
/// for that state `zombie__subcmd__trace__subcmd__watch`, escaping the
/// hyphen of the program's name as if it separated subcommands
/// (clap-rs/clap#6421). Spelling the arms as the loop does fixes it, and
/// does nothing to a script without the fault.
fn bash_dispatch_fixed(script: &str) -> String {
    const SEPARATOR: &str = "__subcmd__";
    let wrong = format!("{}{SEPARATOR}", BIN_NAME.replace('-', SEPARATOR));
    let right = format!("{}{SEPARATOR}", BIN_NAME.replace('-', "__"));
    script.replace(&wrong, &right)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed
    /// when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "zombie-trace-generate-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn the_command_line_is_consistent_and_generate_stays_hidden() -> anyhow::Result<()> {
        let command = beside(super::super::Cli::command());
        command.clone().debug_assert();
        let help = beside(super::super::Cli::command())
            .render_help()
            .to_string();
        assert!(help.contains("watch") && !help.contains(NAME), "{help}");
        let matches = command.try_get_matches_from(["zombie-trace", "generate", "man", "out"])?;
        assert!(matches!(
            requested(&matches),
            Some(Ok(GenerateArgs { what: What::Man { dir } })) if dir == Path::new("out")
        ));
        let matches = beside(super::super::Cli::command())
            .try_get_matches_from(["zombie-trace", "snapshot"])?;
        assert!(requested(&matches).is_none());
        Ok(())
    }

    #[test]
    fn a_man_page_per_visible_command() -> anyhow::Result<()> {
        let scratch = Scratch::new("man");
        let pages = names(&man_pages(&scratch.0)?);
        let mut expected: Vec<String> = super::super::Cli::command()
            .get_subcommands()
            .filter(|command| !command.is_hide_set())
            .map(|command| format!("zombie-trace-{}.1", command.get_name()))
            .chain(["zombie-trace.1".to_owned()])
            .collect();
        expected.sort();
        assert_eq!(pages, expected);
        for page in [
            "zombie-trace-watch.1",
            "zombie-trace-record.1",
            "zombie-trace-report.1",
        ] {
            assert!(pages.iter().any(|name| name == page), "{page} in {pages:?}");
        }
        assert!(!pages.iter().any(|name| name.contains("generate")));
        assert!(!pages.iter().any(|name| name.contains("help")));
        Ok(())
    }

    #[test]
    fn the_watch_page_documents_its_flags() -> anyhow::Result<()> {
        let scratch = Scratch::new("watch");
        man_pages(&scratch.0)?;
        let page = std::fs::read_to_string(scratch.0.join("zombie-trace-watch.1"))?;
        let title = format!(
            ".TH zombie-trace-watch 1  \"zombie-trace {}\" \"zombie-trace manual\"",
            zombie_trace::build_info::VERSION
        );
        assert!(page.contains(&title), "{title} missing from:\n{page}");
        // roff writes a literal dash as `\-`.
        for flag in [
            r"\-\-threshold",
            r"\-\-interval",
            r"\-\-record",
            r"\-\-unit",
        ] {
            assert!(page.contains(flag), "{flag} missing from:\n{page}");
        }
        let top = std::fs::read_to_string(scratch.0.join("zombie-trace.1"))?;
        assert!(top.contains("zombie\\-trace\\-watch(1)"), "{top}");
        Ok(())
    }

    #[test]
    fn completions_for_bash_zsh_and_fish_list_the_commands() -> anyhow::Result<()> {
        let scratch = Scratch::new("completions");
        let scripts = names(&completions(&scratch.0)?);
        assert_eq!(
            scripts,
            ["zombie-trace.bash", "_zombie-trace", "zombie-trace.fish"]
        );
        for script in &scripts {
            let text = std::fs::read_to_string(scratch.0.join(script))?;
            for word in ["record", "report", "watch", "--threshold"] {
                assert!(text.contains(word), "{word} missing from {script}");
            }
            assert!(
                !text.contains("generate"),
                "{script} offers the hidden generate command"
            );
            assert!(!text.contains("zombie__subcmd__trace"), "{script}");
        }
        Ok(())
    }
}
