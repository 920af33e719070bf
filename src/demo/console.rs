//! The demo's stdin console: one command per line (`kill NAME`, `revive NAME`, `slow NAME`,
//! `help`). Parsing is pure ([`Command::parse`]); [`execute`] applies a command to the
//! simulated backends and returns the one line to print.

use super::backend::Backend;

/// Printed at start and on `help`.
pub const HELP: &str =
    "Commands: kill NAME | revive NAME | slow NAME (again to undo) | help — Ctrl-D or Ctrl-C quits";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// An action on the backend named.
    On(Action, String),
    Help,
    /// A blank line: nothing to do.
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Revive,
    Slow,
}

impl Command {
    /// One input line; `Err` is the hint to print.
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => Ok(Command::Nothing),
            ["help" | "?"] => Ok(Command::Help),
            ["kill", name] => Ok(Command::On(Action::Kill, name.to_string())),
            ["revive", name] => Ok(Command::On(Action::Revive, name.to_string())),
            ["slow", name] => Ok(Command::On(Action::Slow, name.to_string())),
            ["kill" | "revive" | "slow"] => Err(format!("`{}` needs a backend name", words[0])),
            _ => Err(format!("unknown command `{}`; type help", line.trim())),
        }
    }
}

/// Applies `command` to the backend it names; the line to print.
pub async fn execute(command: Command, backends: &[Backend]) -> String {
    let (action, name) = match command {
        Command::Help => return HELP.to_string(),
        Command::Nothing => return String::new(),
        Command::On(action, name) => (action, name),
    };
    let Some(backend) = backends.iter().find(|b| b.name() == name) else {
        let names: Vec<&str> = backends.iter().map(Backend::name).collect();
        return format!("no backend `{name}`; try one of: {}", names.join(", "));
    };
    match action {
        Action::Kill if backend.kill().await => {
            format!("{name} killed: its port now refuses connections")
        }
        Action::Kill => format!("{name} is already down"),
        Action::Revive => match backend.revive().await {
            Ok(true) => format!("{name} revived on {}", backend.url()),
            Ok(false) => format!("{name} is up (and at normal speed)"),
            Err(e) => format!("{name} could not listen on {} again: {e}", backend.url()),
        },
        Action::Slow if backend.toggle_slow() => {
            format!("{name} is slow now (slow health answers and tokens); `slow {name}` undoes it")
        }
        Action::Slow => format!("{name} is back at normal speed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command() {
        assert_eq!(
            Command::parse("kill gpu-a"),
            Ok(Command::On(Action::Kill, "gpu-a".into()))
        );
        assert_eq!(
            Command::parse("  revive   gpu-b "),
            Ok(Command::On(Action::Revive, "gpu-b".into()))
        );
        assert_eq!(
            Command::parse("slow ollama-local"),
            Ok(Command::On(Action::Slow, "ollama-local".into()))
        );
        assert_eq!(Command::parse("help"), Ok(Command::Help));
        assert_eq!(Command::parse(""), Ok(Command::Nothing));
    }

    #[test]
    fn hints_at_bad_input() {
        assert_eq!(
            Command::parse("kill"),
            Err("`kill` needs a backend name".into())
        );
        assert_eq!(
            Command::parse("reboot gpu-a"),
            Err("unknown command `reboot gpu-a`; type help".into())
        );
    }
}
