//! Who may connect to a `--tty` dyno's terminal (`hkrun connect`), and who may resize
//! it: the rules alone, on what they are given (the core's dynos, the table of who is
//! attached). `runtime::terminals` carries out the answers. Pure: no I/O.

use std::collections::HashMap;
use std::fmt;

use super::core::Dyno;
use crate::dyno::Slot;

/// Why `hkrun connect` cannot attach to a dyno's terminal, or resize it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TerminalRefusal {
    /// No running dyno has that name or type.
    NotRunning { dyno: String },
    /// A type with several dynos running: the client must name one.
    Several { dyno: String, running: Vec<Slot> },
    /// The dyno runs on a pipe, not a terminal (no `--tty`).
    NoTerminal { slot: Slot },
    /// Another client holds the dyno's terminal.
    Taken { slot: Slot, holder: String },
    /// The terminal could not be opened for writing, or resized.
    Io {
        slot: Slot,
        doing: &'static str,
        error: String,
    },
    /// The dyno's run ended meanwhile.
    Ended { slot: Slot, just: bool },
    /// `[rows, columns]` with a zero.
    NoSize { rows: u16, cols: u16 },
    /// A client without a pid of its own cannot be told from others.
    Anonymous { who: String },
    /// A resize from a client that is not attached to that dyno.
    NotAttached { who: String, dyno: String },
}

impl fmt::Display for TerminalRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRunning { dyno } => write!(f, "no dyno {dyno} is running"),
            Self::Several { dyno, running } => {
                let names: Vec<String> = running.iter().map(ToString::to_string).collect();
                write!(f, "{dyno} runs {}: name one of them", names.join(", "))
            }
            Self::NoTerminal { slot } => write!(
                f,
                "{slot} is not on a terminal: start hkrun with --tty {kind} (or tty = true \
                 under [types.{kind}] in hkrun.toml) to connect to it",
                kind = slot.kind
            ),
            Self::Taken { slot, holder } => write!(
                f,
                "{slot} is attached already, by {holder}: one client at a time (Ctrl-] detaches)"
            ),
            Self::Io { slot, doing, error } => {
                write!(f, "cannot {doing} {slot}'s terminal: {error}")
            }
            Self::Ended { slot, just: true } => write!(f, "{slot}'s run has just ended"),
            Self::Ended { slot, just: false } => write!(f, "{slot}'s run has ended"),
            Self::NoSize { rows, cols } => write!(f, "{rows}x{cols} is no terminal size"),
            Self::Anonymous { who } => write!(f, "{who} cannot be told from other clients"),
            Self::NotAttached { who, dyno } => write!(f, "{who} is not attached to {dyno}"),
        }
    }
}

/// The client attached to a terminal dyno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Who it is (`pid 4242`).
    pub who: String,
    /// Which attachment this is: a late detach of an earlier one changes nothing.
    pub id: u64,
    /// The client's terminal size, `[rows, columns]`, which the dyno has meanwhile.
    pub size: Option<[u16; 2]>,
}

/// Who is attached to each terminal dyno that has a client: one at a time.
pub(crate) type Holders = HashMap<Slot, Holder>;

/// The dyno `name` means for `hkrun connect`: the running dyno of that name, or the one
/// running dyno of that type; with a preboot under way, its newer generation.
pub(crate) fn which(dynos: &[Dyno], name: &str) -> Result<Slot, TerminalRefusal> {
    which_running(
        dynos.iter().filter(|d| d.pid().is_some()).map(|d| d.slot()),
        name,
    )
}

/// `which`, among the running dynos' slots, in the core's order (a preboot's newer
/// generation after the older).
fn which_running<'a>(
    running: impl Iterator<Item = &'a Slot>,
    name: &str,
) -> Result<Slot, TerminalRefusal> {
    let named: Vec<&Slot> = running
        .filter(|s| s.to_string() == name || s.kind == name)
        .collect();
    match named.as_slice() {
        [] => Err(TerminalRefusal::NotRunning {
            dyno: name.to_owned(),
        }),
        // A preboot's two generations: the newer one.
        [.., last] if named.iter().all(|s| s.to_string() == last.to_string()) => {
            Ok((*last).clone())
        }
        several => Err(TerminalRefusal::Several {
            dyno: name.to_owned(),
            running: several.iter().map(|s| (*s).clone()).collect(),
        }),
    }
}

/// Whether a client may attach to `slot`, whose terminal is `terminal` (none when it is
/// not a `--tty` dyno): the terminal to attach to, or why not.
pub(crate) fn may_attach<T>(
    slot: &Slot,
    terminal: Option<T>,
    holders: &Holders,
) -> Result<T, TerminalRefusal> {
    let Some(terminal) = terminal else {
        return Err(TerminalRefusal::NoTerminal { slot: slot.clone() });
    };
    if let Some(holder) = holders.get(slot) {
        return Err(TerminalRefusal::Taken {
            slot: slot.clone(),
            holder: holder.who.clone(),
        });
    }
    Ok(terminal)
}

/// The size an attaching client's terminal gives the dyno while it is attached (as
/// `heroku run` gives a one-off dyno the user's terminal): only a real size.
pub(crate) fn client_size(size: Option<[u16; 2]>) -> Option<[u16; 2]> {
    size.filter(|[rows, cols]| *rows > 0 && *cols > 0)
}

/// The dyno whose terminal `who` may resize to `[rows, cols]`: the one of `dyno` (a
/// name or its type) it is attached to, if `who` is known by its own pid.
pub(crate) fn may_resize<'a>(
    holders: &'a Holders,
    dyno: &str,
    who: &str,
    [rows, cols]: [u16; 2],
) -> Result<&'a Slot, TerminalRefusal> {
    if rows == 0 || cols == 0 {
        return Err(TerminalRefusal::NoSize { rows, cols });
    }
    // Only a client known by its own pid: peers without one all look alike.
    if !who.starts_with("pid ") || who == "pid 0" {
        return Err(TerminalRefusal::Anonymous {
            who: who.to_owned(),
        });
    }
    holders
        .iter()
        .find(|(slot, holder)| holder.who == who && (slot.to_string() == dyno || slot.kind == dyno))
        .map(|(slot, _)| slot)
        .ok_or_else(|| TerminalRefusal::NotAttached {
            who: who.to_owned(),
            dyno: dyno.to_owned(),
        })
}

/// Whether attachment `id` still holds `slot`: a later one stays when an earlier one's
/// detach comes late.
pub(crate) fn holds(holders: &Holders, slot: &Slot, id: u64) -> bool {
    holders.get(slot).is_some_and(|h| h.id == id)
}

/// Whether `slot`'s terminal follows hkrun's own size: an attached client's size stays
/// until it detaches.
pub(crate) fn follows_hkrun(holders: &Holders, slot: &Slot) -> bool {
    holders.get(slot).is_none_or(|h| h.size.is_none())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::plan::formation::DynoSize;
    use crate::plan::policy::{MemoryLimit, RestartPolicy};
    use crate::plan::{AppPlan, ProcessType, Role, StopRule};
    use crate::supervisor::core::Supervisor;
    use crate::supervisor::input::Input;

    fn slot(name: &str) -> Slot {
        name.parse().expect("a dyno's name")
    }

    fn held(who: &str, id: u64, size: Option<[u16; 2]>) -> Holder {
        Holder {
            who: who.into(),
            id,
            size,
        }
    }

    #[test]
    fn a_name_or_a_type_of_one_running_dyno_means_that_dyno() {
        let running = [slot("web.1"), slot("web.2"), slot("repl.1")];
        assert_eq!(which_running(running.iter(), "web.2"), Ok(slot("web.2")));
        assert_eq!(which_running(running.iter(), "repl"), Ok(slot("repl.1")));
        assert_eq!(
            which_running(running.iter(), "web").map_err(|e| e.to_string()),
            Err("web runs web.1, web.2: name one of them".into())
        );
        assert_eq!(
            which_running(running.iter(), "worker").map_err(|e| e.to_string()),
            Err("no dyno worker is running".into())
        );
    }

    #[test]
    fn with_a_preboot_under_way_a_name_means_the_newer_generation() {
        let old = slot("web.1");
        let new = old.next_generation();
        let running = [old, new.clone()];
        for name in ["web.1", "web"] {
            let chosen = which_running(running.iter(), name).expect("one dyno");
            assert_eq!(chosen.generation, new.generation, "{name}");
        }
    }

    /// A plan of one `repl` dyno.
    fn repl() -> AppPlan {
        let repl = ProcessType {
            name: "repl".into(),
            command: "irb".into(),
            index: 0,
            role: Role::Other,
            size: DynoSize::default(),
            restart: RestartPolicy::Never,
            memory: MemoryLimit::Off,
            boot_timeout: None,
            stop: StopRule::default(),
            env: Vec::new(),
            after: Vec::new(),
            terminal: true,
            dyno_name: None,
        };
        AppPlan {
            release: None,
            postdeploy: None,
            scheduler: Vec::new(),
            dynos: vec![repl.dyno(1, 5000).expect("a port")],
            types: vec![repl],
            base_port: 5000,
            router: None,
            router_address: None,
            preboot: false,
            grace: Duration::from_secs(5),
            exit_on_crash: false,
            restart_cap: Duration::from_secs(300),
        }
    }

    #[test]
    fn only_a_dyno_whose_process_runs_can_be_connected_to() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(repl());
        sup.start(t0);
        assert_eq!(
            which(sup.dynos(), "repl.1").map_err(|e| e.to_string()),
            Err("no dyno repl.1 is running".into())
        );
        sup.handle(
            t0,
            Input::Spawned {
                slot: slot("repl.1"),
                pid: 4242,
            },
        );
        assert_eq!(which(sup.dynos(), "repl"), Ok(slot("repl.1")));
    }

    #[test]
    fn one_client_at_a_time_and_only_to_a_terminal() {
        let repl = slot("repl.1");
        let mut holders = Holders::new();
        assert_eq!(may_attach(&repl, Some("pty"), &holders), Ok("pty"));
        assert_eq!(
            may_attach(&repl, None::<()>, &holders).map_err(|e| e.to_string()),
            Err(
                "repl.1 is not on a terminal: start hkrun with --tty repl (or tty = true \
                 under [types.repl] in hkrun.toml) to connect to it"
                    .into()
            )
        );
        holders.insert(repl.clone(), held("pid 4242", 1, None));
        assert_eq!(
            may_attach(&repl, Some("pty"), &holders).map_err(|e| e.to_string()),
            Err(
                "repl.1 is attached already, by pid 4242: one client at a time (Ctrl-] detaches)"
                    .into()
            )
        );
        // Another dyno is free still.
        assert_eq!(
            may_attach(&slot("repl.2"), Some("pty"), &holders),
            Ok("pty")
        );
    }

    #[test]
    fn a_client_size_is_taken_only_when_it_is_a_size() {
        assert_eq!(client_size(Some([24, 80])), Some([24, 80]));
        assert_eq!(client_size(Some([0, 80])), None);
        assert_eq!(client_size(Some([24, 0])), None);
        assert_eq!(client_size(None), None);
    }

    #[test]
    fn only_the_attached_client_known_by_its_pid_resizes() {
        let repl = slot("repl.1");
        let mut holders = Holders::new();
        holders.insert(repl.clone(), held("pid 4242", 1, None));
        assert_eq!(
            may_resize(&holders, "repl.1", "pid 4242", [30, 100]),
            Ok(&repl)
        );
        assert_eq!(
            may_resize(&holders, "repl", "pid 4242", [30, 100]),
            Ok(&repl)
        );
        assert_eq!(
            may_resize(&holders, "repl", "pid 4242", [0, 100]).map_err(|e| e.to_string()),
            Err("0x100 is no terminal size".into())
        );
        for who in ["pid 0", "uid 1000"] {
            assert_eq!(
                may_resize(&holders, "repl", who, [30, 100]).map_err(|e| e.to_string()),
                Err(format!("{who} cannot be told from other clients"))
            );
        }
        assert_eq!(
            may_resize(&holders, "repl", "pid 7", [30, 100]).map_err(|e| e.to_string()),
            Err("pid 7 is not attached to repl".into())
        );
        assert_eq!(
            may_resize(&holders, "web", "pid 4242", [30, 100]).map_err(|e| e.to_string()),
            Err("pid 4242 is not attached to web".into())
        );
    }

    #[test]
    fn a_late_detach_of_an_earlier_attachment_changes_nothing() {
        let repl = slot("repl.1");
        let mut holders = Holders::new();
        assert!(!holds(&holders, &repl, 1));
        holders.insert(repl.clone(), held("pid 4242", 2, None));
        assert!(!holds(&holders, &repl, 1));
        assert!(holds(&holders, &repl, 2));
    }

    #[test]
    fn a_terminal_follows_hkruns_size_unless_a_client_gave_its_own() {
        let repl = slot("repl.1");
        let mut holders = Holders::new();
        assert!(follows_hkrun(&holders, &repl));
        holders.insert(repl.clone(), held("pid 4242", 1, None));
        assert!(follows_hkrun(&holders, &repl));
        holders.insert(repl.clone(), held("pid 4242", 1, Some([30, 100])));
        assert!(!follows_hkrun(&holders, &repl));
    }
}
