//! A process that appends to an audit log as fast as it can, for the crash test: it opens the
//! log in `argv[1]` (checkpoint key `argv[2]`, created if absent), then appends records, every
//! third one checkpointed, and prints each acknowledged index on its own line, flushed, only
//! after the append returned.

use std::io::Write as _;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: audit-writer DIR KEY");
        return std::process::ExitCode::from(2);
    };
    let mut audit = match broker::audit::Audit::open(dir.as_ref(), key.as_ref()) {
        Ok(audit) => audit,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout();
    for n in 0_u64.. {
        let body =
            serde_json::json!({ "n": n, "pad": "x".repeat(usize::try_from(n % 200).unwrap_or(0)) });
        let written = if n % 3 == 0 {
            audit.record_before_effect("test", body)
        } else {
            audit.record("test", body)
        };
        if let Err(e) = written {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
        if writeln!(stdout, "{n}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return std::process::ExitCode::from(1);
        }
    }
    std::process::ExitCode::SUCCESS
}
