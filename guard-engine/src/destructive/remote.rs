//! `ssh HOST COMMAND...`: the command a remote shell will run, judged as a shell script.

/// ssh's options that take a value (`ssh -p 22`, `ssh -p22`, `ssh -i key`, `ssh -o Opt=v`).
const SSH_VALUE_OPTIONS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// `ssh [options] DESTINATION COMMAND...`: the destination and the command line the remote
/// shell parses (ssh joins the words with spaces). `None` without a command, for a
/// subsystem (`-s`) or when the options do not parse.
pub(super) fn ssh_command(args: &[String]) -> Option<(String, String)> {
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if arg == "--" {
            index += 1;
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|rest| !rest.is_empty()) else {
            break;
        };
        index += 1;
        for (position, letter) in cluster.char_indices() {
            if letter == 's' {
                return None;
            }
            if SSH_VALUE_OPTIONS.contains(letter) {
                // The value is the rest of the word, or the next word.
                if position + letter.len_utf8() == cluster.len() {
                    index += 1;
                }
                break;
            }
        }
    }
    let destination = args.get(index)?;
    let command: Vec<&str> = args[index + 1..].iter().map(String::as_str).collect();
    if command.is_empty() {
        return None;
    }
    Some((destination.clone(), command.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &[&str]) -> Vec<String> {
        line.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn options_with_values_are_skipped() {
        let parsed = ssh_command(&words(&[
            "-i",
            "key",
            "-p22",
            "-o",
            "StrictHostKeyChecking=no",
            "-l",
            "me",
            "-J",
            "jump",
            "-F",
            "cfg",
            "-vt",
            "stand-in",
            "rm",
            "-rf",
            "/srv/x",
        ]));
        assert_eq!(parsed, Some(("stand-in".into(), "rm -rf /srv/x".into())));
        assert_eq!(ssh_command(&words(&["host", "rm -rf /srv/x"])), Some(("host".into(), "rm -rf /srv/x".into())));
        assert_eq!(ssh_command(&words(&["-vp", "2222", "host", "ls"])), Some(("host".into(), "ls".into())));
    }

    #[test]
    fn no_command_or_a_subsystem_is_nothing_to_judge() {
        assert_eq!(ssh_command(&words(&["host"])), None);
        assert_eq!(ssh_command(&words(&["-s", "host", "sftp"])), None);
        assert_eq!(ssh_command(&words(&["-i"])), None);
        assert_eq!(ssh_command(&[]), None);
    }
}
